"""``sessiongraph.tools`` in langgraph.json: Python tools, their policy, and every bad entry.

MCP servers (real processes) are in ``tests/integration/test_config_tools.py``.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from runtime.errors import ConfigError
from runtime.tools import ToolRegistry, default_registry, load_config_tools
from runtime.tools.mcp import describe_failure, expand_env

ROOT = Path(__file__).resolve().parents[2]
MODULE = "tests.support.config_tools"


async def load(section: dict[str, Any], registry: ToolRegistry | None = None) -> ToolRegistry:
    registry = registry or default_registry()
    async with AsyncExitStack() as stack:
        await load_config_tools(section, ROOT, registry, stack)
    return registry


async def refusal(section: dict[str, Any]) -> ConfigError:
    registry = default_registry()
    before = registry.names()
    with pytest.raises(ConfigError) as caught:
        await load(section, registry)
    assert registry.names() == before  # nothing registered when one entry fails
    return caught.value


class TestPythonTools:
    async def test_tool_function_and_file_reference_are_registered(self) -> None:
        """A LangChain tool, a plain function and a ./file.py reference, with their policy."""
        registry = await load(
            {
                "tools": {
                    "lookup": {"import": f"{MODULE}:lookup"},
                    "refund": {
                        "import": f"{MODULE}:refund",
                        "writes": True,
                        "requires_approval": True,
                        "roles": ["ops"],
                        "idempotent": False,
                    },
                    "whose_session": {"import": "./tests/support/config_tools.py:whose_session"},
                }
            }
        )
        refund = registry.get("refund")
        assert (refund.writes, refund.requires_approval, refund.idempotent) == (True, True, False)
        assert refund.roles == frozenset({"ops"})
        assert refund.source == f"python:{MODULE}:refund"
        assert refund.tool.description == "Refund an amount on an order."
        assert await refund.tool.ainvoke({"order_id": "A1", "amount": 5}) == "refunded 5 on A1"
        lookup = registry.get("lookup")
        assert (lookup.writes, lookup.roles, lookup.source) == (
            False,
            frozenset(),
            f"python:{MODULE}:lookup",
        )
        whose = registry.get("whose_session")
        assert whose.source == "python:./tests/support/config_tools.py:whose_session"
        assert whose.tool.tool_call_schema.model_json_schema()["properties"] == {}
        assert registry.get("calculator").source == "builtin"

    async def test_the_configured_name_is_the_tool_name(self) -> None:
        """A LangChain tool registered under another key is renamed to the key."""
        registry = await load({"tools": {"order_status": {"import": f"{MODULE}:lookup"}}})
        assert registry.get("order_status").tool.name == "order_status"

    async def test_description_replaces_a_missing_docstring(self) -> None:
        """A function without a docstring needs a description, which the model is shown."""
        entry = {"import": f"{MODULE}:undocumented", "description": "Echo x."}
        registry = await load({"tools": {"echo": entry}})
        assert registry.get("echo").tool.description == "Echo x."

    async def test_an_empty_section_registers_nothing(self) -> None:
        """No tools and no servers: the registry keeps the built-ins only."""
        assert (await load({})).names() == default_registry().names()


BAD_ENTRIES: list[tuple[dict[str, Any], str, str]] = [
    ({"tools": {"refund": {"import": "no_such_module:refund"}}}, "tools.refund", "not found"),
    ({"tools": {"refund": {"import": f"{MODULE}:nope"}}}, "tools.refund", "no attribute 'nope'"),
    ({"tools": {"three": {"import": f"{MODULE}:NOT_A_TOOL"}}}, "tools.three", "neither"),
    ({"tools": {"klass": {"import": f"{MODULE}:NotAFunction"}}}, "tools.klass", "neither"),
    ({"tools": {"undoc": {"import": f"{MODULE}:undocumented"}}}, "tools.undoc", "docstring"),
    ({"tools": {"gone": {"import": "./missing.py:tool"}}}, "tools.gone", "not found"),
    ({"tools": {"refund": {"import": "refund"}}}, "tools.refund", "import"),
    ({"tools": {"refund": {"import": f"{MODULE}:refund", "write": True}}}, "tools.refund", "write"),
    (
        {"tools": {"refund": {"import": f"{MODULE}:refund", "roles": "ops"}}},
        "tools.refund",
        "roles",
    ),
    ({"tools": {"calculator": {"import": f"{MODULE}:lookup"}}}, "tools.calculator", "builtin"),
    ({"tools": {"bad name": {"import": f"{MODULE}:lookup"}}}, "tools.bad name", "letters"),
    ({"tools": ["refund"]}, "tools", "object"),
    ({"mcp_servers": {"files": {"command": "python"}}}, "mcp_servers.files", "transport"),
    (
        {"mcp_servers": {"files": {"transport": "stdio", "command": "python", "cmd": "x"}}},
        "mcp_servers.files",
        "cmd",
    ),
    (
        {"mcp_servers": {"web": {"transport": "streamable_http", "url": "ftp://x"}}},
        "mcp_servers.web",
        "url",
    ),
    (
        {
            "mcp_servers": {
                "web": {
                    "transport": "streamable_http",
                    "url": "http://127.0.0.1:9/mcp",
                    "headers": {"authorization": "Bearer ${SG_TEST_SURELY_UNSET}"},
                }
            }
        },
        "mcp_servers.web",
        "SG_TEST_SURELY_UNSET is not set (in headers.authorization)",
    ),
    (
        {"mcp_servers": {"files": {"transport": "stdio", "command": "sg-no-such-command-x"}}},
        "mcp_servers.files",
        "cannot be started or reached",
    ),
]


class TestBadConfiguration:
    @pytest.mark.parametrize(("section", "entry", "cause"), BAD_ENTRIES)
    async def test_each_mistake_is_a_config_error_naming_the_entry(
        self, section: dict[str, Any], entry: str, cause: str
    ) -> None:
        """Every mistake stops start-up with a ConfigError naming the entry and the cause."""
        error = await refusal(section)
        assert error.entry == f"sessiongraph.{entry}"
        assert error.message.startswith(f"sessiongraph.{entry}: ")
        assert cause in error.message

    async def test_two_entries_with_one_name(self) -> None:
        """A name taken by an earlier entry of the same file is refused too."""
        registry = ToolRegistry()
        await load({"tools": {"lookup": {"import": f"{MODULE}:lookup"}}}, registry)
        with pytest.raises(ConfigError, match="already taken"):
            await load({"tools": {"lookup": {"import": f"{MODULE}:lookup"}}}, registry)


class TestSecrets:
    def test_unset_variables_are_named_and_values_collected(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """${VAR} expands from the environment; its value joins the secrets to redact."""
        monkeypatch.setenv("SG_TEST_TOKEN", "s3cret-value")
        secrets: set[str] = set()
        assert expand_env("e", "url", "Bearer ${SG_TEST_TOKEN}!", secrets) == "Bearer s3cret-value!"
        assert secrets == {"s3cret-value"}
        assert expand_env("e", "url", "$HOME and $${x", secrets) == "$HOME and $${x"

    def test_failures_are_described_without_secret_values(self) -> None:
        """An exception quoting a secret (a URL with a token) is redacted; groups are flattened."""
        exc = ExceptionGroup(
            "unhandled errors", [ConnectionError("refused for http://h/mcp?key=s3cret-value")]
        )
        text = describe_failure(exc, {"s3cret-value"})
        assert text == "ConnectionError: refused for http://h/mcp?key=***"
        assert describe_failure(OSError("two\nlines"), set()) == "OSError: two lines"
