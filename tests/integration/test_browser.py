"""A real browser (Debian's Chromium driven by Playwright) on a page of another origin, using
the LangGraph API with plain ``fetch`` calls shaped as ``@langchain/langgraph-sdk``'s: create a
thread, stream a resumable run and read ``Content-Location`` from JS, reload the page
mid-run and rejoin the stream with ``Last-Event-ID``, regenerate the last answer; the same
reload and rejoin for a ``/v1`` SSE turn. The server has no CORS setting: a dev server (auth
off, loopback) allows any origin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from api.app import create_app
from runtime import Settings
from tests.integration.test_compat_runs import make_agent, make_registry
from tests.support.browser import chromium
from tests.support.server import running_server

# The page's client: what the SDK's fetch calls do, in a few lines.
PAGE = """<!doctype html><html><body><script>
const api = new URLSearchParams(location.search).get("api");
const json = {"Content-Type": "application/json"};

function parse(text) {  // SSE -> [{id, event, data}]
  return text.replace(/\\r\\n/g, "\\n").split("\\n\\n").filter(b => b.trim()).map(block => {
    const e = {id: null, event: "message", data: ""};
    for (const line of block.split("\\n")) {
      if (line.startsWith("id:")) e.id = line.slice(3).trim();
      else if (line.startsWith("event:")) e.event = line.slice(6).trim();
      else if (line.startsWith("data:")) e.data += line.slice(5).trim();
    }
    e.data = e.data ? JSON.parse(e.data) : null;
    return e;
  }).filter(e => e.data !== null || e.event === "end");
}

async function createThread() {
  const r = await fetch(`${api}/threads`, {method: "POST", headers: json, body: "{}"});
  return (await r.json()).thread_id;
}

// Stream a resumable run; leave after `keep` events, as a page being reloaded does.
async function streamThenLeave(threadId, assistantId, text, keep) {
  const body = {assistant_id: assistantId, input: {messages: [{role: "user", content: text}]},
    stream_mode: ["values", "messages-tuple"], stream_resumable: true,
    on_disconnect: "continue"};
  const r = await fetch(`${api}/threads/${threadId}/runs/stream`,
    {method: "POST", headers: json, body: JSON.stringify(body)});
  const runPath = r.headers.get("Content-Location");
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let text_ = "";
  while (true) {
    const {value, done} = await reader.read();
    if (done) break;
    text_ += decoder.decode(value, {stream: true});
    const complete = text_.replace(/\\r\\n/g, "\\n").lastIndexOf("\\n\\n");
    if (parse(text_.replace(/\\r\\n/g, "\\n").slice(0, complete)).length >= keep) break;
  }
  await reader.cancel();
  const complete = text_.replace(/\\r\\n/g, "\\n").lastIndexOf("\\n\\n");
  const seen = parse(text_.replace(/\\r\\n/g, "\\n").slice(0, complete)).slice(0, keep);
  sessionStorage.setItem("run", JSON.stringify({runPath, seen}));
  return {runPath, seen};
}

// After the reload: rejoin the run's stream from the last event seen.
async function rejoin() {
  const {runPath, seen} = JSON.parse(sessionStorage.getItem("run"));
  const last = seen[seen.length - 1].id;
  const r = await fetch(`${api}${runPath}/stream`, {headers: {"Last-Event-ID": last}});
  return {seen, rest: parse(await r.text())};
}

// A /v1 streamed turn: read the turn's stream from Content-Location, leave after `keep`
// events; after the reload, rejoin it with Last-Event-ID (as EventSource would).
async function v1StreamThenLeave(sessionId, agentId, text, keep) {
  const r = await fetch(`${api}/v1/sessions/${sessionId}/messages`, {method: "POST",
    headers: {...json, "Accept": "text/event-stream"},
    body: JSON.stringify({content: text, agent_id: agentId})});
  const turnPath = r.headers.get("Content-Location");
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let text_ = "", seen = [];
  while (seen.length < keep) {
    const {value, done} = await reader.read();
    if (done) break;
    text_ += decoder.decode(value, {stream: true});
    const normal = text_.replace(/\\r\\n/g, "\\n");
    seen = parse(normal.slice(0, normal.lastIndexOf("\\n\\n"))).slice(0, keep);
  }
  await reader.cancel();
  sessionStorage.setItem("turn", JSON.stringify({turnPath, seen}));
  return {turnPath, seen};
}

async function v1Rejoin() {
  const {turnPath, seen} = JSON.parse(sessionStorage.getItem("turn"));
  const last = seen[seen.length - 1].id;
  const r = await fetch(`${api}${turnPath}`, {headers: {"Last-Event-ID": last}});
  return {seen, rest: parse(await r.text())};
}

// useStream's regenerate: run with no input from the answer's parent checkpoint.
async function regenerate(threadId, assistantId) {
  const history = await (await fetch(`${api}/threads/${threadId}/history`,
    {method: "POST", headers: json, body: JSON.stringify({limit: 10})})).json();
  const messages = history[0].values.messages;
  const answer = messages[messages.length - 1];
  const firstSeen = history.filter(s => s.values.messages.some(m => m.id === answer.id)).pop();
  const r = await fetch(`${api}/threads/${threadId}/runs/wait`, {method: "POST", headers: json,
    body: JSON.stringify({assistant_id: assistantId, input: null,
                          checkpoint: firstSeen.parent_checkpoint})});
  const values = await r.json();
  return {before: answer, after: values.messages[values.messages.length - 1],
          count: values.messages.length, runPath: r.headers.get("Content-Location")};
}
</script></body></html>"""


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with chromium() as instance:
        yield instance


def page_app() -> FastAPI:
    app = FastAPI()

    @app.get("/")
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE)

    return app


@asynccontextmanager
async def paced_page(settings: Settings, browser: Any) -> AsyncIterator[tuple[Any, str]]:
    """The API and the page on two origins, the page loaded, and an agent whose model takes
    a second per answer (so a reload lands mid-turn): the page and the agent's id."""
    async with (
        running_server(create_app(settings, tools=make_registry())) as api_url,
        running_server(page_app()) as page_url,
        httpx.AsyncClient(base_url=api_url, timeout=30) as http,
    ):
        agent = await make_agent(
            http,
            name="paced",
            tools=["calculator"],
            model={"provider": "offline", "params": {"delay_seconds": 1}},
        )
        page = await browser.new_page()
        await page.goto(f"{page_url}/?api={api_url}")
        yield page, agent


class TestBrowser:
    async def test_chat_reload_rejoin_and_regenerate(
        self, settings: Settings, browser: Any
    ) -> None:
        """From another origin with no CORS setting: create, stream, read the run id from
        Content-Location, reload mid-run and rejoin with Last-Event-ID, regenerate."""
        async with paced_page(settings, browser) as (page, agent):
            thread_id = await page.evaluate("createThread()")
            first = await page.evaluate(
                "([t, a]) => streamThenLeave(t, a, 'what is 6 * 7?', 2)", [thread_id, agent]
            )
            assert first["runPath"].startswith(f"/threads/{thread_id}/runs/")
            await page.reload()
            joined = await page.evaluate("rejoin()")
            seen, rest = joined["seen"], joined["rest"]
            ids = [int(e["id"]) for e in seen + rest if e["id"]]
            assert ids == list(range(1, len(ids) + 1)), ids  # every event once, in order
            assert rest[-1]["event"] == "end"
            final = [e["data"] for e in rest if e["event"] == "values"][-1]
            assert final["messages"][-1]["content"] == "The result is 42."
            regenerated = await page.evaluate("([t, a]) => regenerate(t, a)", [thread_id, agent])
            assert regenerated["after"]["content"] == "The result is 42."
            assert regenerated["after"]["id"] != regenerated["before"]["id"]
            assert regenerated["count"] == len(final["messages"])
            print(
                f"\nbrowser: run {first['runPath']} read from Content-Location; "
                f"{len(seen)} events before the reload, {len(rest) - 1} after rejoining "
                f"(ids {ids[0]}..{ids[-1]}, none twice); regenerated "
                f"{regenerated['before']['id'][-8:]} -> {regenerated['after']['id'][-8:]}: "
                f"{regenerated['after']['content']!r}"
            )

    async def test_v1_turn_reload_and_rejoin(self, settings: Settings, browser: Any) -> None:
        """A /v1 SSE turn from another origin: the page reads the turn's stream from
        Content-Location, reloads mid-turn and rejoins it with Last-Event-ID: every event
        once, in order, ending with done."""
        async with paced_page(settings, browser) as (page, agent):
            first = await page.evaluate(
                "([a]) => v1StreamThenLeave('browser-1', a, 'what is 6 * 7?', 2)", [agent]
            )
            assert first["turnPath"].startswith("/v1/sessions/browser-1/turns/")
            assert [e["event"] for e in first["seen"]] == ["turn", "tool_call"]
            await page.reload()
            joined = await page.evaluate("v1Rejoin()")
            events = joined["seen"] + joined["rest"]
            ids = [int(e["id"]) for e in events]
            assert ids == list(range(1, len(ids) + 1)), ids  # every event once, in order
            assert events[-1]["event"] == "done"
            assert events[-1]["data"]["reply"] == "The result is 42."
            print(
                f"\nbrowser /v1: turn {first['turnPath']} read from Content-Location; "
                f"{len(joined['seen'])} events before the reload, {len(joined['rest'])} after "
                f"rejoining (ids {ids[0]}..{ids[-1]}, none twice)"
            )
