/* sessiongraph chat widget: one script tag, no build step, no third-party requests.
 *
 *   <script src="https://chat.example/widget.js" data-key="pk_..." data-agent="support"
 *           data-title="Support" async></script>
 *
 * Adds a chat bubble. The visitor's session id and token stay in this site's localStorage,
 * so a reload restores the conversation; "New conversation" starts another. Replies stream
 * (Server-Sent Events over fetch); tool calls show as a compact line; refusals show their
 * message (origin not allowed, rate limited with the wait, server errors).
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.__sessiongraphWidget) return;
  window.__sessiongraphWidget = true;

  var KEY = script.getAttribute("data-key") || "";
  var TITLE = script.getAttribute("data-title") || "Chat";
  var BASE = new URL(script.src, location.href).origin;
  var STORE = "sessiongraph:" + KEY;

  var css =
    ".sgw-bubble{position:fixed;right:20px;bottom:20px;z-index:2147483000;border:0;border-radius:28px;" +
    "padding:14px 20px;background:#1f4fd1;color:#fff;font:600 15px system-ui,sans-serif;cursor:pointer;" +
    "box-shadow:0 4px 14px rgba(0,0,0,.25)}" +
    ".sgw-bubble:focus-visible,.sgw-panel button:focus-visible,.sgw-panel textarea:focus-visible" +
    "{outline:3px solid #ffb000;outline-offset:2px}" +
    ".sgw-panel{position:fixed;right:20px;bottom:84px;z-index:2147483000;width:360px;max-width:calc(100vw - 40px);" +
    "height:480px;max-height:calc(100vh - 120px);display:flex;flex-direction:column;background:#fff;color:#111;" +
    "border-radius:12px;box-shadow:0 8px 30px rgba(0,0,0,.3);font:14px/1.4 system-ui,sans-serif;overflow:hidden}" +
    ".sgw-panel[hidden]{display:none}" +
    ".sgw-head{display:flex;align-items:center;justify-content:space-between;padding:10px 12px;background:#1f4fd1;color:#fff}" +
    ".sgw-head h2{margin:0;font-size:15px}" +
    ".sgw-head button{background:transparent;color:#fff;border:1px solid rgba(255,255,255,.6);border-radius:6px;" +
    "padding:4px 8px;cursor:pointer;font:inherit;font-size:12px;margin-left:6px}" +
    ".sgw-log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:8px}" +
    ".sgw-msg{padding:8px 10px;border-radius:10px;max-width:85%;white-space:pre-wrap;word-wrap:break-word}" +
    ".sgw-user{align-self:flex-end;background:#1f4fd1;color:#fff}" +
    ".sgw-assistant{align-self:flex-start;background:#eef1f7}" +
    ".sgw-tool{align-self:flex-start;font-size:12px;color:#555;font-style:italic}" +
    ".sgw-error{margin:0 12px 8px;padding:8px 10px;border-radius:8px;background:#fde8e8;color:#8a1111}" +
    ".sgw-error:empty{display:none}" +
    ".sgw-form{display:flex;gap:6px;padding:10px;border-top:1px solid #ddd}" +
    ".sgw-form textarea{flex:1;resize:none;font:inherit;padding:6px 8px;border:1px solid #bbb;border-radius:8px}" +
    ".sgw-form button{border:0;border-radius:8px;padding:0 14px;background:#1f4fd1;color:#fff;font:inherit;cursor:pointer}" +
    ".sgw-form button[disabled]{opacity:.5;cursor:default}" +
    ".sgw-sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}";

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var name in attrs || {}) node.setAttribute(name, attrs[name]);
    if (text) node.textContent = text;
    return node;
  }

  var style = el("style");
  style.textContent = css;
  var bubble = el("button", {
    class: "sgw-bubble", type: "button", "aria-expanded": "false", "aria-controls": "sgw-panel",
  }, TITLE);
  var panel = el("section", {
    class: "sgw-panel", id: "sgw-panel", role: "dialog", "aria-label": TITLE, hidden: "",
  });
  var head = el("div", { class: "sgw-head" });
  var heading = el("h2", {}, TITLE);
  var actions = el("div");
  var fresh = el("button", { type: "button", class: "sgw-new" }, "New conversation");
  var close = el("button", { type: "button", "aria-label": "Close chat" }, "Close");
  var log = el("div", { class: "sgw-log", role: "log", "aria-live": "polite", "aria-label": "Conversation" });
  var error = el("div", { class: "sgw-error", role: "alert" });
  var form = el("form", { class: "sgw-form" });
  var label = el("label", { for: "sgw-input", class: "sgw-sr" }, "Your message");
  var input = el("textarea", { id: "sgw-input", rows: "2", placeholder: "Type a message…" });
  var send = el("button", { type: "submit" }, "Send");
  actions.append(fresh, close);
  head.append(heading, actions);
  form.append(label, input, send);
  panel.append(head, log, error, form);

  function saved() {
    try { return JSON.parse(localStorage.getItem(STORE) || "null"); } catch (e) { return null; }
  }
  function save(value) {
    if (value) localStorage.setItem(STORE, JSON.stringify(value));
    else localStorage.removeItem(STORE);
  }

  function add(role, text) {
    var node = el("div", { class: "sgw-msg sgw-" + role }, text || "");
    log.appendChild(node);
    log.scrollTop = log.scrollHeight;
    return node;
  }
  function toolLine(call) {
    var node = el("div", { class: "sgw-tool" }, "Using " + call.name + "…");
    log.appendChild(node);
    return node;
  }
  function show(message) { error.textContent = message || ""; }

  async function failure(response) {
    var body = {};
    try { body = await response.json(); } catch (e) { /* not JSON */ }
    if (response.status === 429) {
      var wait = response.headers.get("Retry-After") || (body.details && body.details.retry_after);
      return "Too many messages right now. Please try again in " + (wait || "a few") + " seconds.";
    }
    if (response.status === 403) return body.message || "This website may not use this chat.";
    return body.message || "The chat service refused the request (" + response.status + ").";
  }

  async function call(method, path, session, body, accept) {
    var headers = { "X-Widget-Key": KEY, Accept: accept || "application/json" };
    if (session) headers["X-Session-Token"] = session.token;
    if (body) headers["Content-Type"] = "application/json";
    var response = await fetch(BASE + path, {
      method: method, headers: headers, body: body ? JSON.stringify(body) : undefined,
      credentials: "omit", mode: "cors",
    });
    if (!response.ok) {
      var err = new Error(await failure(response));
      err.status = response.status;
      throw err;
    }
    return response;
  }

  async function session() {
    var current = saved();
    if (current) return current;
    var created = await (await call("POST", "/v1/widget/sessions")).json();
    current = { session_id: created.session_id, token: created.token };
    save(current);
    return current;
  }

  async function restore() {
    var current = saved();
    log.textContent = "";
    if (!current) return;
    try {
      var path = "/v1/widget/sessions/" + encodeURIComponent(current.session_id) + "/messages";
      var page = await (await call("GET", path, current)).json();
      page.items.forEach(function (m) {
        if (m.role === "user" || (m.role === "assistant" && m.content)) {
          add(m.role, typeof m.content === "string" ? m.content : "[attachment]");
        }
      });
    } catch (e) {
      if (e.status === 404) save(null); else show(e.message);
    }
  }

  async function readEvents(response, onEvent) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    for (;;) {
      var chunk = await reader.read();
      if (chunk.done) break;
      buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n/g, "\n");
      var parts = buffer.split("\n\n");
      buffer = parts.pop();
      parts.forEach(function (part) {
        var name = "message", data = "";
        part.split("\n").forEach(function (line) {
          if (line.indexOf("event:") === 0) name = line.slice(6).trim();
          else if (line.indexOf("data:") === 0) data += line.slice(5).trim();
        });
        if (data) onEvent(name, JSON.parse(data));
      });
    }
  }

  async function submit(text) {
    show("");
    add("user", text);
    send.disabled = true;
    var reply = null;
    try {
      var current = await session();
      var path = "/v1/widget/sessions/" + encodeURIComponent(current.session_id) + "/messages";
      var response = await call("POST", path, current, { content: text }, "text/event-stream");
      await readEvents(response, function (name, data) {
        if (name === "token") {
          reply = reply || add("assistant", "");
          reply.textContent += data.content;
          log.scrollTop = log.scrollHeight;
        } else if (name === "tool_call") {
          toolLine(data);
          reply = null;
        } else if (name === "error") {
          show(data.message || "The reply failed.");
        }
      });
    } catch (e) {
      if (e.status === 404) save(null);
      show(e.message || "Could not reach the chat service.");
    } finally {
      send.disabled = false;
      input.focus();
    }
  }

  function toggle(open) {
    panel.hidden = !open;
    bubble.setAttribute("aria-expanded", String(open));
    if (open) input.focus(); else bubble.focus();
  }

  bubble.addEventListener("click", function () { toggle(panel.hidden); });
  close.addEventListener("click", function () { toggle(false); });
  panel.addEventListener("keydown", function (e) { if (e.key === "Escape") toggle(false); });
  fresh.addEventListener("click", function () {
    save(null);
    log.textContent = "";
    show("");
    input.focus();
  });
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var text = input.value.trim();
    if (!text || send.disabled) return;
    input.value = "";
    submit(text);
  });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
  });

  function mount() {
    document.head.appendChild(style);
    document.body.append(bubble, panel);
    restore();
  }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
