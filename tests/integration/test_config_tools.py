"""Configured tools end to end: real MCP servers (stdio and streamable HTTP) and Python tools,
loaded by ``load_config_tools`` and called through LangGraph's ``ToolNode``.

The servers are ``tests/support/mcp_server.py`` processes; nothing is mocked.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, ToolMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode

from runtime.agents import Budgets
from runtime.errors import ConfigError
from runtime.tools import ToolRegistry, default_registry, load_config_tools
from runtime.turns.constants import CONFIG_KEY_GUARD
from runtime.turns.guards import TurnGuard, guarded_tool_call
from tests.support.processes import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "tests" / "support" / "mcp_server.py"
MODULE = "tests.support.config_tools"
TOKEN = "s3cret-token-value"


@dataclass
class HttpServer:
    """A streamable-HTTP MCP server process that a test may kill and start again."""

    folder: Path
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> None:
        command = [sys.executable, str(SERVER), "--root", str(self.folder)]
        command += ["--transport", "streamable-http", "--port", str(self.port)]
        command += ["--require-header", f"authorization=Bearer {TOKEN}"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text(errors="replace")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.2)
        raise AssertionError(f"MCP server not listening:\n{self.log_path.read_text()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "files"
    root.mkdir()
    (root / "a.txt").write_text("alpha")
    (root / "b.txt").write_text("beta")
    return root


@pytest.fixture
def http_server(folder: Path, tmp_path: Path) -> Iterator[HttpServer]:
    server = HttpServer(folder, free_port(), tmp_path / "mcp-http.log")
    server.start()
    try:
        yield server
    finally:
        server.kill()


def section(folder: Path, http_url: str) -> dict[str, Any]:
    """A sessiongraph section with a Python tool and both kinds of MCP server."""
    return {
        "tools": {
            "refund": {"import": f"{MODULE}:refund", "writes": True, "roles": ["ops"]},
            "whose_session": {"import": f"{MODULE}:whose_session"},
        },
        "mcp_servers": {
            "files": {
                "transport": "stdio",
                "command": sys.executable,
                "args": [str(SERVER), "--root", str(folder)],
                "env": {"SG_TEST_WHO": "${SG_TEST_WHO_SOURCE}"},
                "roles": ["ops"],
                "timeout_seconds": 60,
                "tools": {"delete_file": {"writes": True, "requires_approval": True}},
            },
            "search": {
                "transport": "streamable_http",
                "url": http_url,
                "headers": {"authorization": "Bearer ${SG_TEST_SEARCH_TOKEN}"},
                "timeout_seconds": 60,
            },
        },
    }


@pytest.fixture
async def registry(
    folder: Path, http_server: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> ToolRegistry:
    monkeypatch.setenv("SG_TEST_WHO_SOURCE", "the-files-server")
    monkeypatch.setenv("SG_TEST_SEARCH_TOKEN", TOKEN)
    registry = default_registry()
    async with AsyncExitStack() as stack:
        await load_config_tools(section(folder, http_server.url), ROOT, registry, stack)
    return registry


async def call_tools(
    registry: ToolRegistry, calls: list[tuple[str, dict[str, Any]]], **configurable: Any
) -> list[ToolMessage]:
    """Run the calls through a one-node graph: ToolNode as the built-in graph builds it."""
    specs = registry.resolve(sorted({name for name, _ in calls}))
    node = ToolNode(
        [s.tool for s in specs], handle_tool_errors=True, awrap_tool_call=guarded_tool_call
    )
    builder = StateGraph(MessagesState)
    builder.add_node("tools", node)
    builder.add_edge(START, "tools")
    builder.add_edge("tools", END)
    tool_calls = [
        {"id": f"call-{i}", "name": name, "args": args, "type": "tool_call"}
        for i, (name, args) in enumerate(calls)
    ]
    state = await builder.compile().ainvoke(
        {"messages": [AIMessage("", tool_calls=tool_calls)]},
        {"configurable": configurable},
    )
    results = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    return sorted(results, key=lambda m: m.tool_call_id)


class TestRegistration:
    async def test_python_and_mcp_tools_are_registered_with_policy_and_source(
        self, registry: ToolRegistry
    ) -> None:
        """Both servers' tools are <server>_<tool>, with server policy and per-tool overrides."""
        names = set(registry.names())
        assert {"refund", "whose_session", "calculator"} <= names
        for tool in ("list_files", "read_file", "delete_file", "whoami"):
            assert {f"files_{tool}", f"search_{tool}"} <= names
        read = registry.get("files_read_file")
        assert (read.source, read.writes, read.requires_approval) == ("mcp:files", False, False)
        assert read.roles == frozenset({"ops"})
        delete = registry.get("files_delete_file")
        assert (delete.writes, delete.requires_approval, delete.idempotent) == (True, True, True)
        assert delete.roles == frozenset({"ops"})  # not overridden: the server's
        search = registry.get("search_delete_file")
        assert (search.source, search.writes, search.roles) == ("mcp:search", False, frozenset())
        assert registry.get("refund").source == f"python:{MODULE}:refund"


class TestCalls:
    async def test_each_kind_of_tool_runs_through_tool_node(self, registry: ToolRegistry) -> None:
        """A Python tool, a stdio tool (with its env) and an HTTP tool (with its header) answer."""
        results = await call_tools(
            registry,
            [
                ("refund", {"order_id": "A1", "amount": 5}),
                ("files_read_file", {"name": "a.txt"}),
                ("files_whoami", {}),
                ("search_list_files", {}),
            ],
        )
        assert [r.status for r in results] == ["success"] * 4
        assert [r.text for r in results[:3]] == ["refunded 5 on A1", "alpha", "the-files-server"]
        assert "a.txt" in results[3].text and "b.txt" in results[3].text

    async def test_a_tool_reads_the_calling_session_from_its_config(
        self, registry: ToolRegistry
    ) -> None:
        """A RunnableConfig parameter receives the turn's configurable session_id and owner."""
        [result] = await call_tools(
            registry, [("whose_session", {})], session_id="s-42", owner="alice"
        )
        assert result.text == "session s-42 of alice"

    async def test_a_tool_error_is_an_error_result(self, registry: ToolRegistry) -> None:
        """A tool that fails on the server gives the model an error result, the turn goes on."""
        [result] = await call_tools(registry, [("search_read_file", {"name": "nope.txt"})])
        assert result.status == "error" and "nope.txt" in result.text

    async def test_guarded_calls_apply_the_configured_policy(
        self, registry: ToolRegistry, folder: Path
    ) -> None:
        """Through the turn's guard, roles from the config decide who may call a tool."""
        specs = {s.name: s for s in registry.specs()}
        viewer = TurnGuard(budgets=Budgets(), specs=specs, roles=frozenset({"viewer"}))
        results = await call_tools(
            registry,
            [("files_delete_file", {"name": "b.txt"}), ("search_read_file", {"name": "b.txt"})],
            **{CONFIG_KEY_GUARD: viewer},
        )
        assert results[0].status == "error" and "not permitted" in results[0].text
        assert results[1].text == "beta" and (folder / "b.txt").exists()
        ops = TurnGuard(budgets=Budgets(), specs=specs, roles=frozenset({"ops"}))
        results = await call_tools(
            registry, [("files_delete_file", {"name": "b.txt"})], **{CONFIG_KEY_GUARD: ops}
        )
        assert results[0].text == "deleted b.txt" and not (folder / "b.txt").exists()
        assert ops.write_calls == 1


class TestServerFailure:
    async def test_a_killed_server_is_an_error_result_then_reconnected(
        self, registry: ToolRegistry, http_server: HttpServer
    ) -> None:
        """Killed mid-way: the call is an error ToolMessage; restarted: the next call works."""
        [before] = await call_tools(registry, [("search_read_file", {"name": "a.txt"})])
        assert before.text == "alpha"
        http_server.kill()
        [down] = await call_tools(registry, [("search_read_file", {"name": "a.txt"})])
        assert down.status == "error"
        assert "MCP server 'search'" in down.text and TOKEN not in down.text
        http_server.start()
        [after] = await call_tools(registry, [("search_read_file", {"name": "a.txt"})])
        assert (after.status, after.text) == ("success", "alpha")

    async def test_an_unreachable_server_at_start_up_is_a_config_error(
        self, folder: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Nothing listening at start-up: a ConfigError naming the server, no secret in it."""
        monkeypatch.setenv("SG_TEST_WHO_SOURCE", "x")
        monkeypatch.setenv("SG_TEST_SEARCH_TOKEN", TOKEN)
        config = section(folder, f"http://127.0.0.1:{free_port()}/mcp?key=${{SG_TEST_WHO_SOURCE}}")
        with pytest.raises(ConfigError) as caught:
            async with AsyncExitStack() as stack:
                await load_config_tools(config, ROOT, default_registry(), stack)
        assert caught.value.entry == "sessiongraph.mcp_servers.search"
        assert "cannot be started or reached" in caught.value.message
        assert TOKEN not in caught.value.message

    async def test_a_refused_header_at_start_up_is_a_config_error(
        self, folder: Path, http_server: HttpServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A wrong token: the server refuses, start-up names the server, not the token."""
        monkeypatch.setenv("SG_TEST_WHO_SOURCE", "x")
        monkeypatch.setenv("SG_TEST_SEARCH_TOKEN", "wrong-token-value")
        with pytest.raises(ConfigError) as caught:
            async with AsyncExitStack() as stack:
                await load_config_tools(
                    section(folder, http_server.url), ROOT, default_registry(), stack
                )
        assert caught.value.entry == "sessiongraph.mcp_servers.search"
        assert "403 Forbidden" in caught.value.message
        assert "wrong-token-value" not in caught.value.message

    async def test_an_override_for_a_tool_the_server_lacks(
        self, folder: Path, http_server: HttpServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A per-tool override naming no tool of the server is a typo, refused."""
        monkeypatch.setenv("SG_TEST_WHO_SOURCE", "x")
        monkeypatch.setenv("SG_TEST_SEARCH_TOKEN", TOKEN)
        config = section(folder, http_server.url)
        config["mcp_servers"]["search"]["tools"] = {"delete_files": {"writes": True}}
        with pytest.raises(ConfigError, match="delete_files") as caught:
            async with AsyncExitStack() as stack:
                await load_config_tools(config, ROOT, default_registry(), stack)
        assert caught.value.entry == "sessiongraph.mcp_servers.search"
