"""Failures a turn must survive: model faults, tool errors, and a context window to fit.

Model faults come from the OpenAI-compatible test server (timeouts, 429, 500, garbage,
malformed completions) through the real ``ChatOpenAI`` client: each one must surface as a
clear, retryable model error (never a generic 500), leave the session exactly as it was,
and let a resend succeed; retries below the limit must make the turn succeed. Tools that
raise or run too long become error tool results and the model carries on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import httpx
import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.tools import tool

from api.app import create_app
from graphs.react import model_input
from runtime import Runtime, Settings
from runtime.agents import ModelSpec, TemplateSpec
from runtime.errors import ModelBadResponse, ModelRateLimited, ModelUnavailable
from runtime.tools import ToolRegistry, ToolSpec, default_registry
from tests.support.checks import read_sse
from tests.support.openai_server import OpenAICompatServer
from tests.support.server import running_server

SSE = {"Accept": "text/event-stream"}
PROMPT = "You are terse."
# The model client's timeout: long enough that a loaded machine's stalls never time out an
# answer the test server gives at once; the ``timeout`` fault answers far later than it.
CLIENT_TIMEOUT = 3.0
TIMEOUT_FAULT_SECONDS = 60
# Tools past this time out; the quick tools (calculator, explode) never come near it.
TOOL_TIMEOUT = 2.0


def uid(prefix: str = "gf") -> str:
    return f"{prefix}-{uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def openai_module_server() -> Iterator[OpenAICompatServer]:
    with OpenAICompatServer() as server:
        yield server


@pytest.fixture
def openai_server(openai_module_server: OpenAICompatServer) -> OpenAICompatServer:
    openai_module_server.reset()
    return openai_module_server


def openai_model(server: OpenAICompatServer, **params: Any) -> dict[str, Any]:
    return {
        "provider": "openai",
        "name": "gpt-test",
        "params": {"base_url": server.base_url, **params},
    }


async def openai_agent(
    rt: Runtime, server: OpenAICompatServer, *, max_context_tokens: int | None = None, **params: Any
) -> str:
    template = await rt.templates.create(
        TemplateSpec(
            name="openai-guards",
            system_prompt=PROMPT,
            model=ModelSpec.model_validate(openai_model(server, **params)),
            tools=["calculator"],
            max_context_tokens=max_context_tokens,
        ),
        owner="local",
    )
    return template.agent_id


async def snapshot(rt: Runtime, sid: str) -> tuple[Any, ...]:
    """Everything a failed turn must leave untouched: history, counters, checkpoint."""
    s = await rt.sessions.get("local", sid)
    counters = (s.turns, s.messages, s.tokens_in, s.tokens_out, s.awaiting_approval)
    return await rt.history(sid), counters, s.committed_checkpoint_id


@dataclass(frozen=True)
class Fault:
    kind: str
    opts: dict[str, Any]
    count: int  # faults needed to exhaust the retries (client: 0; guard: settings' 2)
    error: type[ModelUnavailable]
    code: str
    status: int


FAULTS = {
    "429": Fault("429", {"retry_after": "7"}, 1, ModelRateLimited, "model_rate_limited", 429),
    "500": Fault("500", {}, 1, ModelUnavailable, "model_unavailable", 503),
    "timeout": Fault(
        "timeout", {"seconds": TIMEOUT_FAULT_SECONDS}, 1, ModelUnavailable, "model_unavailable", 503
    ),
    "garbage": Fault("garbage", {}, 3, ModelBadResponse, "model_bad_response", 502),
    "malformed": Fault("malformed", {}, 3, ModelBadResponse, "model_bad_response", 502),
}


def inject(server: OpenAICompatServer, fault: Fault) -> None:
    for _ in range(fault.count):
        server.enqueue_fault(fault.kind, **fault.opts)


class TestModelFaults:
    @pytest.mark.parametrize("mode", ["chat", "stream"])
    @pytest.mark.parametrize("name", list(FAULTS))
    async def test_exhausted_retries_leave_the_session_unchanged(
        self, runtime: Runtime, openai_server: OpenAICompatServer, name: str, mode: str
    ) -> None:
        """A fault past the retries is a retryable model error; nothing is stored; resend works."""
        fault = FAULTS[name]
        agent = await openai_agent(runtime, openai_server, max_retries=0, timeout=CLIENT_TIMEOUT)
        sid = uid()
        await runtime.session(sid, agent_id=agent)
        assert (await runtime.chat(sid, "my name is Alice")).reply == "Nice to meet you, Alice."
        before = await snapshot(runtime, sid)
        sent = len(openai_server.requests)
        inject(openai_server, fault)

        if mode == "chat":
            with pytest.raises(ModelUnavailable) as raised:
                await runtime.chat(sid, "what is my name?")
            error = raised.value
            assert type(error) is fault.error
            assert error.code == fault.code and error.details["retryable"] is True
            if name == "429":
                assert error.details["retry_after"] == "7"
        else:
            events = [e async for e in runtime.stream(sid, "what is my name?")]
            assert events[-1].type == "error" and "done" not in [e.type for e in events]
            assert events[-1].data["error"] == fault.code
            assert events[-1].data["details"]["retryable"] is True

        assert len(openai_server.requests) == sent + fault.count
        assert openai_server.pending_faults == []
        assert await snapshot(runtime, sid) == before
        retry = await runtime.chat(sid, "what is my name?")
        assert retry.reply == "Your name is Alice."
        history = await runtime.history(sid)
        assert [m["content"] for m in history] == [
            "my name is Alice",
            "Nice to meet you, Alice.",
            "what is my name?",
            "Your name is Alice.",
        ]

    async def test_failure_after_a_tool_call_rolls_back_the_whole_turn(
        self, runtime: Runtime, openai_server: OpenAICompatServer
    ) -> None:
        """A fault on the model step after a tool ran discards the call and its result too."""
        agent = await openai_agent(runtime, openai_server, max_retries=0)
        sid = uid()
        await runtime.session(sid, agent_id=agent)
        await runtime.chat(sid, "hello")
        before = await snapshot(runtime, sid)
        openai_server.enqueue_fault("pass")
        openai_server.enqueue_fault("429", retry_after="3")
        with pytest.raises(ModelRateLimited):
            await runtime.chat(sid, "what is 6 * 7?")
        assert await snapshot(runtime, sid) == before
        assert (await runtime.chat(sid, "what is 6 * 7?")).reply == "The result is 42."


class TestRetries:
    @pytest.mark.parametrize(
        ("kind", "opts", "faults"),
        [
            pytest.param("500", {}, 2, id="500"),
            pytest.param("429", {"retry_after": "1"}, 1, id="429-retry-after"),
            pytest.param("timeout", {"seconds": TIMEOUT_FAULT_SECONDS}, 1, id="timeout"),
        ],
    )
    async def test_client_retries_then_succeeds(
        self,
        runtime: Runtime,
        openai_server: OpenAICompatServer,
        kind: str,
        opts: dict[str, Any],
        faults: int,
    ) -> None:
        """With max_retries=2 the client retries 5xx, 429 and timeouts and the turn succeeds."""
        agent = await openai_agent(runtime, openai_server, max_retries=2, timeout=CLIENT_TIMEOUT)
        sid = uid()
        await runtime.session(sid, agent_id=agent)
        for _ in range(faults):
            openai_server.enqueue_fault(kind, **opts)
        result = await runtime.chat(sid, "hello there")
        assert result.status == "completed" and result.reply == "echo: hello there"
        assert len(openai_server.requests) == faults + 1
        assert openai_server.pending_faults == []
        session = await runtime.sessions.get("local", sid)
        assert (session.turns, session.messages) == (1, 2)

    @pytest.mark.parametrize("mode", ["chat", "stream"])
    @pytest.mark.parametrize("kind", ["garbage", "malformed"])
    async def test_guard_retries_malformed_responses(
        self, runtime: Runtime, openai_server: OpenAICompatServer, kind: str, mode: str
    ) -> None:
        """Two unusable answers are retried by the guard (model_retries=2); the third works."""
        agent = await openai_agent(runtime, openai_server, max_retries=0)
        sid = uid()
        await runtime.session(sid, agent_id=agent)
        openai_server.enqueue_fault(kind)
        openai_server.enqueue_fault(kind)
        if mode == "chat":
            reply = (await runtime.chat(sid, "hello there")).reply
        else:
            events = [e async for e in runtime.stream(sid, "hello there")]
            assert events[-1].type == "done"
            reply = events[-1].data["reply"]
            assert "".join(e.data["content"] for e in events if e.type == "token") == reply
        assert reply == "echo: hello there"
        assert len(openai_server.requests) == 3
        assert [m["role"] for m in await runtime.history(sid)] == ["user", "assistant"]


@dataclass
class Api:
    client: httpx.AsyncClient
    agent: str


@pytest.fixture
async def api(settings: Settings, openai_server: OpenAICompatServer) -> AsyncIterator[Api]:
    async with (
        running_server(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        response = await client.post(
            "/v1/agents",
            json={
                "name": "openai-http",
                "model": openai_model(openai_server, max_retries=0, timeout=CLIENT_TIMEOUT),
                "tools": ["calculator"],
            },
        )
        assert response.status_code == 201, response.text
        yield Api(client, response.json()["id"])


async def http_snapshot(api: Api, sid: str) -> tuple[Any, ...]:
    session = (await api.client.get(f"/v1/sessions/{sid}")).json()
    items = (await api.client.get(f"/v1/sessions/{sid}/messages")).json()["items"]
    keys = ("turns", "messages", "tokens_in", "tokens_out", "awaiting_approval")
    return items, tuple(session[k] for k in keys)


async def http_session_with_one_turn(api: Api) -> str:
    sid = uid("gh")
    first = await api.client.post(
        f"/v1/sessions/{sid}/messages", json={"content": "my name is Bob", "agent_id": api.agent}
    )
    assert first.status_code == 200, first.text
    return sid


class TestModelFaultsOverHTTP:
    @pytest.mark.parametrize("name", ["429", "500", "timeout", "garbage"])
    async def test_json_status_and_body(
        self, api: Api, openai_server: OpenAICompatServer, name: str
    ) -> None:
        """Each fault maps to its status and code with retryable true, and stores nothing."""
        fault = FAULTS[name]
        sid = await http_session_with_one_turn(api)
        before = await http_snapshot(api, sid)
        inject(openai_server, fault)
        failed = await api.client.post(
            f"/v1/sessions/{sid}/messages", json={"content": "what is my name?"}
        )
        assert failed.status_code == fault.status, failed.text
        body = failed.json()
        assert body["error"] == fault.code and body["details"]["retryable"] is True
        if name == "429":
            assert failed.headers["retry-after"] == "7"
        else:
            assert "retry-after" not in failed.headers
        assert await http_snapshot(api, sid) == before
        retry = await api.client.post(
            f"/v1/sessions/{sid}/messages", json={"content": "what is my name?"}
        )
        assert retry.status_code == 200 and retry.json()["reply"] == "Your name is Bob."

    @pytest.mark.parametrize("name", ["429", "500"])
    async def test_sse_error_event(
        self, api: Api, openai_server: OpenAICompatServer, name: str
    ) -> None:
        """A streamed turn that fails ends with an error event carrying the code."""
        fault = FAULTS[name]
        sid = await http_session_with_one_turn(api)
        before = await http_snapshot(api, sid)
        inject(openai_server, fault)
        async with api.client.stream(
            "POST",
            f"/v1/sessions/{sid}/messages",
            json={"content": "what is my name?"},
            headers=SSE,
        ) as response:
            events = await read_sse(response)
        kinds = [kind for kind, _ in events]
        assert kinds[-1] == "error" and "done" not in kinds
        error = events[-1][1]
        assert error["error"] == fault.code and error["details"]["retryable"] is True
        assert await http_snapshot(api, sid) == before
        retry = await api.client.post(
            f"/v1/sessions/{sid}/messages", json={"content": "what is my name?"}
        )
        assert retry.status_code == 200 and retry.json()["reply"] == "Your name is Bob."


@tool
def explode(reason: str) -> str:
    """Always fails with the given reason."""
    raise RuntimeError(f"boom: {reason}")


@tool
async def dawdle(seconds: float) -> str:
    """Waits for a while before answering."""
    await asyncio.sleep(seconds)
    return "finally done"


def failing_registry() -> ToolRegistry:
    registry = default_registry()
    registry.register(ToolSpec(explode))
    registry.register(ToolSpec(dawdle))
    return registry


@pytest.fixture
def quick_tools(settings: Settings) -> Settings:
    return settings.model_copy(update={"tool_timeout_seconds": TOOL_TIMEOUT})


@pytest.fixture
async def tool_rt(quick_tools: Settings) -> AsyncIterator[Runtime]:
    async with Runtime.open(quick_tools, tools=failing_registry()) as rt:
        yield rt


async def tools_agent(rt: Runtime) -> str:
    template = await rt.templates.create(
        TemplateSpec(name="fragile", tools=["explode", "dawdle", "calculator"]), owner="local"
    )
    return template.agent_id


class TestToolErrors:
    async def test_raising_tool_becomes_an_error_result(self, tool_rt: Runtime) -> None:
        """A tool that raises gives an error tool result; the model answers; the next turn works."""
        sid = uid()
        await tool_rt.session(sid, agent_id=await tools_agent(tool_rt))
        result = await tool_rt.chat(sid, 'use tool explode with {"reason": "disk full"}')
        assert result.status == "completed"
        assert result.reply.startswith("The tool explode failed:") and "disk full" in result.reply
        history = await tool_rt.history(sid)
        assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant"]
        assert history[2]["status"] == "error" and "disk full" in history[2]["content"]
        assert history[2]["tool_call_id"] == history[1]["tool_calls"][0]["id"]
        assert (await tool_rt.chat(sid, "what is 2 + 3?")).reply == "The result is 5."

    async def test_slow_tool_times_out(self, tool_rt: Runtime) -> None:
        """A tool past tool_timeout_seconds gives a 'did not finish' result; the turn completes."""
        sid = uid()
        await tool_rt.session(sid, agent_id=await tools_agent(tool_rt))
        result = await tool_rt.chat(sid, 'use tool dawdle with {"seconds": 60}')
        assert result.status == "completed"
        history = await tool_rt.history(sid)
        assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant"]
        assert history[2]["status"] == "error"
        assert history[2]["content"] == "error: dawdle did not finish within 2 s"
        assert result.reply == "The tool dawdle failed: dawdle did not finish within 2 s."
        assert (await tool_rt.chat(sid, "hello")).reply == "You said: hello"

    async def test_tool_errors_over_http_are_not_server_errors(self, quick_tools: Settings) -> None:
        """Over HTTP, a raising tool and a slow tool both answer 200 with a completed turn."""
        async with (
            running_server(create_app(quick_tools, tools=failing_registry())) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):
            created = await client.post(
                "/v1/agents", json={"name": "fragile", "tools": ["explode", "dawdle"]}
            )
            assert created.status_code == 201, created.text
            sid = uid("gh")
            for content, failed in (
                ('use tool explode with {"reason": "disk full"}', "explode"),
                ('use tool dawdle with {"seconds": 60}', "dawdle"),
            ):
                response = await client.post(
                    f"/v1/sessions/{sid}/messages",
                    json={"content": content, "agent_id": created.json()["id"]},
                )
                assert response.status_code == 200, response.text
                body = response.json()
                assert body["status"] == "completed"
                assert body["reply"].startswith(f"The tool {failed} failed:")
            items = (await client.get(f"/v1/sessions/{sid}/messages")).json()["items"]
            assert [m["role"] for m in items] == ["user", "assistant", "tool", "assistant"] * 2


def assert_whole_units(messages: list[dict[str, Any]]) -> None:
    """OpenAI-format messages: each tool call has all its results right after it, no orphans."""
    i = 0
    while i < len(messages):
        message = messages[i]
        assert message["role"] != "tool", f"orphan tool message at {i}: {message}"
        i += 1
        calls = message.get("tool_calls") or []
        if message["role"] == "assistant" and calls:
            results: list[str] = []
            while i < len(messages) and messages[i]["role"] == "tool":
                results.append(messages[i]["tool_call_id"])
                i += 1
            assert sorted(results) == sorted(c["id"] for c in calls)


LONG = (
    "Here is a long paragraph about the weather in the mountains, where the wind is cold "
    "and the clouds hang low over the valleys for most of the autumn, and the people who "
    "live there keep warm by the fire while they tell stories about the old days"
)


class TestContextWindow:
    async def test_model_sees_whole_recent_units_and_history_stays_complete(
        self, runtime: Runtime, openai_server: OpenAICompatServer
    ) -> None:
        """A small context window trims the model's input to whole units; history keeps all."""
        agent = await openai_agent(runtime, openai_server, max_retries=0, max_context_tokens=300)
        sid = uid()
        await runtime.session(sid, agent_id=agent)
        sent: list[str] = []
        expected_roles: list[str] = []
        for n in range(1, 11):
            if n % 2:
                content = f"what is {n} * {n + 10}?"
                expected_roles += ["user", "assistant", "tool", "assistant"]
                answer = f"The result is {n * (n + 10)}."
            else:
                content = f"note {n}: {LONG}"
                expected_roles += ["user", "assistant"]
                answer = f"echo: {content}"
            sent.append(content)
            assert (await runtime.chat(sid, content)).reply == answer
        # The last turn is a tool call: the final request ends on its results.
        content = "and what is 123 + 456?"
        sent.append(content)
        expected_roles += ["user", "assistant", "tool", "assistant"]
        assert (await runtime.chat(sid, content)).reply == "The result is 579."

        history = await runtime.history(sid)
        assert [m["role"] for m in history] == expected_roles
        assert [m["content"] for m in history if m["role"] == "user"] == sent
        for request in openai_server.requests:
            messages = request["messages"]
            assert messages[0] == {"role": "system", "content": PROMPT}
            assert messages[1]["role"] == "user"
            assert_whole_units(messages[1:])
        last = openai_server.requests[-1]["messages"]
        assert len(last) - 1 < len(history) - 1
        assert [m["role"] for m in last[-3:]] == ["user", "assistant", "tool"]
        assert last[-3]["content"] == content and last[-1]["content"] == "579"
        # What the model saw is exactly the most recent stretch of the stored history.
        tail = history[-len(last) : -1]
        assert [m["role"] for m in last[1:]] == [m["role"] for m in tail]
        assert [m["content"] for m in last[1:] if m["role"] == "user"] == [
            m["content"] for m in tail if m["role"] == "user"
        ]

    def _history(self) -> list[BaseMessage]:
        pad = " filler" * 60
        return [
            HumanMessage("first question" + pad, id="h0"),
            AIMessage(
                "",
                id="c",
                tool_calls=[
                    {"id": "call_a", "name": "calculator", "args": {"expression": "1+1"}},
                    {"id": "call_b", "name": "calculator", "args": {"expression": "2+2"}},
                ],
            ),
            ToolMessage("2", tool_call_id="call_a", id="ta"),
            ToolMessage("4" + pad, tool_call_id="call_b", id="tb"),
            AIMessage("The results are 2 and 4.", id="r"),
            HumanMessage("thanks", id="h1"),
            AIMessage("You are welcome.", id="r1"),
            HumanMessage("one more", id="h2"),
        ]

    def test_cut_inside_a_tool_unit_drops_it_whole(self) -> None:
        """When the budget ends between a tool call and its results, the pair is dropped."""
        history = self._history()
        by_id = {m.id: m for m in history}
        system = count_tokens_approximately([model_input(PROMPT, [], None)[0]])
        after = count_tokens_approximately(history[4:])  # r, h1, r1, h2
        results = count_tokens_approximately([by_id["ta"], by_id["tb"]])
        unit = count_tokens_approximately(history[1:4])
        assert results < unit  # the budget below reaches into the unit, not past it
        kept = model_input(PROMPT, history, system + after + results)
        ids = [m.id for m in kept[1:]]
        assert not {"c", "ta", "tb"} & set(ids)
        assert ids == ["h1", "r1", "h2"]  # starts on a user message

        whole = model_input(PROMPT, history, system + after + unit)
        assert [m.id for m in whole[1:]] == ["h1", "r1", "h2"]  # no user message before it
        everything = model_input(PROMPT, history, system + count_tokens_approximately(history))
        assert [m.id for m in everything[1:]] == [m.id for m in history]

    def test_newest_unit_is_kept_whole(self) -> None:
        """The in-flight tool unit is always kept with all its results, however small the budget."""
        history = self._history()[:4]  # h0, c, ta, tb: the model answers the results next
        for budget in (64, 100, 200):
            kept = model_input(PROMPT, history, budget)
            assert [m.id for m in kept[1:]] in (["c", "ta", "tb"], ["h0", "c", "ta", "tb"])

    def test_every_budget_gives_a_valid_input(self) -> None:
        """Across budgets, the input is the system prompt plus whole units, user first."""
        history = self._history()
        total = count_tokens_approximately(history) + 50
        for budget in range(64, total, 7):
            kept = model_input(PROMPT, history, budget)
            assert kept[0].type == "system" and kept[0].text == PROMPT
            rest = kept[1:]
            assert rest == history[len(history) - len(rest) :]  # a suffix of the history
            assert isinstance(rest[0], HumanMessage)
            i = 0
            while i < len(rest):
                assert not isinstance(rest[i], ToolMessage)
                calls = getattr(rest[i], "tool_calls", None) or []
                i += 1
                got = []
                while i < len(rest) and isinstance(rest[i], ToolMessage):
                    got.append(rest[i].tool_call_id)  # type: ignore[attr-defined]
                    i += 1
                assert got == [c["id"] for c in calls]
