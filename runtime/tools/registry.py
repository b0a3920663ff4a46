"""The tool registry: the tools (LangChain ``BaseTool``) that templates name.

A template lists tool *names*; :class:`ToolRegistry` resolves them when the template is
compiled. Each entry records whether the tool writes and which roles may use it, so the
guardrails can filter the offered tools per caller without recompiling the graph. The
built-in tools are in :mod:`runtime.tools.builtins`; the tools a project declares in its
``langgraph.json`` (Python tools and MCP servers) are added by
:func:`runtime.tools.loader.load_config_tools`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from langchain_core.tools import BaseTool

from runtime.errors import InvalidInput

__all__ = ["ToolRegistry", "ToolSpec"]


# The ``source`` prefixes of tools the project's langgraph.json declares.
DECLARED_SOURCES = ("python:", "mcp:")


@dataclass(frozen=True)
class ToolSpec:
    """A registered tool and the facts the runtime needs about it."""

    tool: BaseTool
    # Changes something. Counts against max_write_calls; and, if `idempotent`, its result is
    # recorded per session so the same call (same canonical arguments, or the same
    # `idempotency_key` argument) returns the record instead of acting twice.
    writes: bool = False
    roles: frozenset[str] = field(default_factory=frozenset)  # empty: everyone
    requires_approval: bool = False  # pause the turn for a human decision before running
    idempotent: bool = True
    # Where it comes from: "builtin", "python:<module>:<attr>" (langgraph.json's
    # sessiongraph.tools), "mcp:<server>" (sessiongraph.mcp_servers), or "python" for a
    # tool registered in code.
    source: str = "python"

    @property
    def name(self) -> str:
        return self.tool.name


class ToolRegistry:
    """Tools by name. Register your own before the runtime compiles templates."""

    def __init__(self, specs: Iterable[ToolSpec] = ()) -> None:
        self._specs: dict[str, ToolSpec] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: ToolSpec | BaseTool, *, replace: bool = False) -> ToolSpec:
        """Add a tool; a bare ``BaseTool`` is registered as read-only and open to all."""
        if isinstance(spec, BaseTool):
            spec = ToolSpec(spec)
        if spec.name in self._specs and not replace:
            raise ValueError(f"tool {spec.name!r} is already registered")
        self._specs[spec.name] = spec
        return spec

    def names(self) -> list[str]:
        return sorted(self._specs)

    def declared(self) -> list[str]:
        """The names of the tools the project's ``langgraph.json`` declares (Python tools and
        MCP servers' tools), by name."""
        return [s.name for s in self.specs() if s.source.startswith(DECLARED_SOURCES)]

    def specs(self) -> list[ToolSpec]:
        """Every registered tool, by name."""
        return [self._specs[name] for name in self.names()]

    def get(self, name: str) -> ToolSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise InvalidInput(
                f"unknown tool {name!r}", tool=name, available=self.names()
            ) from None

    def resolve(self, names: Iterable[str]) -> list[ToolSpec]:
        """The specs for ``names``, in order; an unknown name is ``InvalidInput``."""
        return [self.get(n) for n in names]
