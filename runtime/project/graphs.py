"""The graphs a server can run: the built-in ReAct graph and every entry of ``langgraph.json``.

An entry is ``"./path/file.py:attr"`` or ``"package.module:attr"``; the attribute may be a
compiled graph, an uncompiled :class:`~langgraph.graph.StateGraph`, or a factory taking a
``RunnableConfig`` (sync or async), as ``langgraph dev`` allows. :class:`GraphRegistry` loads
them all at start-up (an entry that cannot be served is a :class:`ConfigError` naming it) and
builds the graph of an agent version: compiled with the runtime's checkpointer and store,
never the graph's own (a compiled graph is copied, never changed).

The built-in graph is always there as :data:`BUILTIN_GRAPH`; it is found by its import
reference (:data:`BUILTIN_BUILDER`), so the runtime never imports ``graphs/`` itself.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import START, StateGraph
from langgraph.pregel import Pregel
from langgraph.store.base import BaseStore

from runtime.agents import BUILTIN_GRAPH, DEFAULT_AGENT_ID
from runtime.errors import ConfigError, InvalidInput, NotFound
from runtime.ids import ID_PATTERN
from runtime.imports import import_object

__all__ = [
    "BUILTIN_BUILDER",
    "BUILTIN_GRAPH",
    "BUILTIN_REFERENCES",
    "GraphRegistry",
    "Breakpoints",
    "UserGraph",
    "check_breakpoints",
    "compile_graph",
    "input_keys",
]

# An agent's static breakpoints: the nodes to interrupt before, and after ("*": every node).
Breakpoints = tuple[str | Sequence[str], str | Sequence[str]]

# The name of the built-in ReAct graph, and the builder it is made with (a template's spec,
# model and tools in; an uncompiled StateGraph out).
BUILTIN_BUILDER = "graphs.react:build_graph"
# How a langgraph.json may name the built-in graph (ours lists it for ``langgraph dev``).
BUILTIN_REFERENCES = frozenset({"graphs.react:graph", "./graphs/react.py:graph"})


def _is_graph(value: Any) -> bool:
    return isinstance(value, StateGraph | Pregel)


def _own_checkpointer(graph: Any) -> bool:
    """Whether a compiled graph brings a checkpointer of its own (``langgraph dev`` refuses)."""
    return isinstance(graph, Pregel) and isinstance(graph.checkpointer, BaseCheckpointSaver)


@dataclass(frozen=True)
class UserGraph:
    """One ``langgraph.json`` entry: its name, reference and the object it names."""

    name: str
    reference: str
    value: Any

    @property
    def is_factory(self) -> bool:
        return not _is_graph(self.value)

    async def instance(self, config: RunnableConfig) -> Any:
        """The graph (compiled or not) for an agent's config: the factory's result, if any."""
        if not self.is_factory:
            return self.value
        result = self.value(config) if _takes_config(self.value) else self.value()
        if inspect.isawaitable(result):
            result = await result
        return result

    def check(self, graph: Any) -> None:
        """Refuse what cannot be served: not a graph, or a graph with its own checkpointer."""
        entry = f"graphs.{self.name}"
        if not _is_graph(graph):
            kind = type(graph).__name__
            raise ConfigError(
                entry,
                f"{self.reference} is a {kind}, not a graph (a compiled graph, a StateGraph, "
                "or a factory returning one)",
            )
        if _own_checkpointer(graph):
            raise ConfigError(
                entry,
                f"{self.reference} is compiled with its own checkpointer; compile it without "
                "one (sessiongraph brings Postgres persistence, as langgraph dev does)",
            )


def _takes_config(factory: Callable[..., Any]) -> bool:
    try:
        return bool(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        return True


def compile_graph(
    graph: Any,
    checkpointer: BaseCheckpointSaver[Any],
    store: BaseStore | None,
    name: str,
    breakpoints: Breakpoints = ((), ()),
) -> Pregel[Any, Any, Any, Any]:
    """``graph`` compiled with the runtime's persistence and the agent's static
    ``breakpoints`` (interrupt before, interrupt after: those a graph's own compile gave are
    kept when the agent names none); a compiled graph is copied."""
    before, after = breakpoints
    if isinstance(graph, StateGraph):
        return graph.compile(
            checkpointer=checkpointer,
            store=store,
            name=name,
            interrupt_before=_nodes(before),
            interrupt_after=_nodes(after),
        )
    update: dict[str, Any] = {"checkpointer": checkpointer, "store": store, "name": name}
    if before:
        update["interrupt_before_nodes"] = before
    if after:
        update["interrupt_after_nodes"] = after
    copied: Pregel[Any, Any, Any, Any] = graph.copy(update=update)
    return copied


def _nodes(names: str | Sequence[str]) -> Any:
    """Breakpoint nodes as ``compile`` takes them: ``"*"``, a list, or None for none."""
    return names if names == "*" else (list(names) or None)


def check_breakpoints(graph: Any, breakpoints: Breakpoints) -> None:
    """Refuse static breakpoints naming nodes the graph (a ``StateGraph`` or a compiled
    graph) does not have.

    Raises:
        InvalidInput: naming the unknown nodes and the graph's own.
    """
    nodes = set(graph.nodes) - {START}
    for field, names in zip(("interrupt_before", "interrupt_after"), breakpoints, strict=True):
        unknown = [] if names == "*" else sorted(set(names) - nodes)
        if unknown:
            raise InvalidInput(
                f"{field} names nodes the graph does not have: {unknown}",
                field=field,
                nodes=sorted(nodes),
            )


def input_keys(graph: Pregel[Any, Any, Any, Any]) -> frozenset[str] | None:
    """The keys a compiled graph's input takes (None: any input, e.g. a functional API)."""
    builder = getattr(graph, "builder", None)
    if isinstance(builder, StateGraph):
        return frozenset(builder.schemas[builder.input_schema])
    channels = graph.input_channels
    if isinstance(channels, str):
        return None
    return frozenset(channels)


def _check_name(name: str) -> None:
    """A graph's name is an agent id too (its system agent's): the id rule, not ``default``."""
    if not re.fullmatch(ID_PATTERN, name):
        raise ConfigError(
            f"graphs.{name}",
            "a graph name is 1-128 letters, digits, '.', '_', ':' or '-', starting with a "
            "letter or digit",
        )
    if name == DEFAULT_AGENT_ID:
        raise ConfigError(f"graphs.{name}", f"{name!r} is the default agent's id; rename the graph")


class GraphRegistry:
    """Every graph this server can run, by name: the built-in one and the project's."""

    def __init__(self, graphs: Mapping[str, UserGraph] | None = None) -> None:
        self._graphs = dict(graphs or {})

    @classmethod
    def load(cls, entries: Mapping[str, str], base_dir: Path) -> GraphRegistry:
        """Import every entry; a bad one raises :class:`ConfigError` naming it."""
        graphs: dict[str, UserGraph] = {}
        for name, reference in entries.items():
            _check_name(name)
            if name == BUILTIN_GRAPH:
                if reference not in BUILTIN_REFERENCES:
                    raise ConfigError(
                        f"graphs.{name}",
                        f"the name {BUILTIN_GRAPH!r} is the built-in ReAct graph; "
                        "give your graph another name",
                    )
                continue
            value = import_object(f"graphs.{name}", reference, base_dir)
            entry = UserGraph(name, reference, value)
            if not entry.is_factory or not callable(value):
                entry.check(value)  # a graph, checked now; a factory's result, per build
            graphs[name] = entry
        return cls(graphs)

    def names(self) -> list[str]:
        """Every graph's name, the built-in one first."""
        return [BUILTIN_GRAPH, *sorted(self._graphs)]

    def user_graphs(self) -> list[UserGraph]:
        """The project's graphs, by name."""
        return [self._graphs[n] for n in sorted(self._graphs)]

    def check_name(self, name: str) -> None:
        """Raises :class:`NotFound` for a graph this server does not have."""
        if name != BUILTIN_GRAPH and name not in self._graphs:
            raise NotFound(f"graph {name!r} is not configured on this server", graphs=self.names())

    async def instance(self, name: str, config: RunnableConfig) -> Any:
        """The project graph ``name`` for an agent's config (a factory's result, checked)."""
        self.check_name(name)
        entry = self._graphs[name]
        graph = await entry.instance(config)
        entry.check(graph)
        return graph
