"""The Studio path: ``langgraph dev`` serves the project's ``langgraph.json`` offline.

Starts the real LangGraph dev server (in-memory runtime, its own persistence) on the
project's config, with no OpenAI key so the default agent uses the offline model, and
drives it with ``langgraph_sdk`` as LangGraph Studio would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_client

from tests.support.studio import langgraph_dev

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "langgraph.json"
RUN_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def studio_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running ``langgraph dev`` on the project's own langgraph.json."""
    with langgraph_dev(CONFIG, tmp_path_factory.mktemp("studio") / "langgraph-dev.log") as url:
        yield url


def _user(content: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}]}


async def _run(client: Any, thread_id: str, content: str) -> list[dict[str, Any]]:
    """One run of the agent graph on a thread; the thread's messages afterwards."""
    state = await client.runs.wait(thread_id, "react", input=_user(content))
    assert isinstance(state, dict), state
    messages: list[dict[str, Any]] = state["messages"]
    return messages


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content or "")


class TestStudio:
    """`langgraph dev` loads the `react` graph and runs it offline, with memory per thread."""

    @pytest.mark.timeout(240)
    async def test_assistant_for_the_agent_graph_is_listed(self, studio_url: str) -> None:
        """The dev server lists an assistant for graph_id "react"."""
        client = get_client(url=studio_url)
        assistants = await client.assistants.search()
        assert "react" in {a["graph_id"] for a in assistants}

    @pytest.mark.timeout(240)
    async def test_arithmetic_uses_the_calculator_tool(self, studio_url: str) -> None:
        """A run asking 6 * 7 goes through a tool message and answers 42."""
        client = get_client(url=studio_url, timeout=RUN_TIMEOUT)
        thread = await client.threads.create()
        messages = await _run(client, thread["thread_id"], "what is 6 * 7?")
        assert messages[0]["type"] == "human"
        assert any(m["type"] == "tool" for m in messages), messages
        assert messages[-1]["type"] == "ai"
        assert "42" in _text(messages[-1]), messages[-1]

    @pytest.mark.timeout(240)
    async def test_thread_remembers_across_runs(self, studio_url: str) -> None:
        """Two runs on one thread: the second answers from the first ("Alice")."""
        client = get_client(url=studio_url, timeout=RUN_TIMEOUT)
        thread = await client.threads.create()
        thread_id = thread["thread_id"]
        first = await _run(client, thread_id, "what is 6 * 7?")
        assert "42" in _text(first[-1])

        second = await _run(client, thread_id, "my name is Alice")
        assert "Alice" in _text(second[-1])

        messages = await _run(client, thread_id, "what is my name?")
        assert "Alice" in _text(messages[-1]), messages[-1]
        # All three runs accumulated on the server's own checkpointer for this thread.
        humans = [_text(m) for m in messages if m["type"] == "human"]
        assert humans == ["what is 6 * 7?", "my name is Alice", "what is my name?"]

        state = await client.threads.get_state(thread_id)
        values = state["values"]
        assert isinstance(values, dict), values
        assert _text(values["messages"][-1]) == _text(messages[-1])

    @pytest.mark.timeout(240)
    async def test_an_assistants_configurable_configures_the_graph(self, studio_url: str) -> None:
        """Under langgraph dev the built-in graph reads its fields from configurable, as
        sessiongraph's agents set them."""
        client = get_client(url=studio_url, timeout=RUN_TIMEOUT)
        assistant = await client.assistants.create(
            graph_id="react", config={"configurable": {"system_prompt": "Be terse."}}
        )
        thread = await client.threads.create()
        state = await client.runs.wait(
            thread["thread_id"],
            assistant["assistant_id"],
            input=_user("what are your instructions?"),
        )
        assert isinstance(state, dict)
        assert _text(state["messages"][-1]) == "My instructions are: Be terse."
