"""The Studio path: ``langgraph dev`` serves the project's ``langgraph.json`` offline.

Starts the real LangGraph dev server (in-memory runtime, its own persistence) on the
project's config, with no OpenAI key so the default agent uses the offline model, and
drives it with ``langgraph_sdk`` as LangGraph Studio would.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "langgraph.json"
LANGGRAPH = Path(sys.executable).with_name("langgraph")
START_TIMEOUT = 90.0
RUN_TIMEOUT = 60.0
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def studio_env() -> dict[str, str]:
    """The environment minus model keys and database settings, with telemetry off."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SESSIONGRAPH_", "LANGSMITH_", "LANGCHAIN_"))
        and k not in {"DATABASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL"}
    }
    env.update(
        {
            "LANGGRAPH_CLI_NO_ANALYTICS": "1",
            "LANGGRAPH_NO_VERSION_CHECK": "true",
            "LANGSMITH_TRACING": "false",
            "LANGCHAIN_TRACING_V2": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _tail(path: Path, chars: int = 6000) -> str:
    text = path.read_text(errors="replace") if path.exists() else "(no log)"
    return _ANSI.sub("", text)[-chars:]


@pytest.fixture(scope="module")
def studio_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running ``langgraph dev`` on a free port; its whole process group ends afterwards."""
    if not LANGGRAPH.exists():
        pytest.fail(f"the langgraph CLI is not installed next to {sys.executable}")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("studio") / "langgraph-dev.log"
    # The in-memory runtime keeps its state in ./.langgraph_api (git-ignored); remove it
    # afterwards unless it was there already.
    state_dir = ROOT / ".langgraph_api"
    had_state_dir = state_dir.exists()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                str(LANGGRAPH),
                "dev",
                "--no-browser",
                # The reloader would restart the server whenever anyone edits the project.
                "--no-reload",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--config",
                str(CONFIG),
            ],
            cwd=ROOT,
            env=studio_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"langgraph dev exited with {proc.returncode}:\n{_tail(log_path)}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/ok", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"langgraph dev not up after {START_TIMEOUT}s:\n{_tail(log_path)}")
            time.sleep(0.5)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        else:
            # The server may have left children behind in its group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        if not had_state_dir:
            shutil.rmtree(state_dir, ignore_errors=True)
        print(f"langgraph dev log tail:\n{_tail(log_path, 3000)}")


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
    """`langgraph dev` loads the `agent` graph and runs it offline, with memory per thread."""

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
