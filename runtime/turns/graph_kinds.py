"""Graph kinds: a template's ``graph_kind`` to the builder of its graph, by import reference.

The runtime never imports the graph modules itself (they import the runtime): each kind
names its builder as ``"module:attribute"``, the form ``langgraph.json`` uses, resolved with
:mod:`importlib` on first use. The built-in ReAct graph is the default entry.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel

from runtime.agents import TemplateSpec
from runtime.errors import InvalidInput
from runtime.tools import ToolSpec

__all__ = ["GRAPH_KINDS", "GraphBuilder", "graph_builder", "load_reference"]

GRAPH_KINDS: Mapping[str, str] = {"react": "graphs.react:build_graph"}


class GraphBuilder(Protocol):
    """Builds (not compiles) the graph of one template, its model and its tools."""

    def __call__(
        self,
        spec: TemplateSpec,
        *,
        model: BaseChatModel,
        tools: Sequence[ToolSpec],
        summarizer: BaseChatModel | None = None,
    ) -> Any: ...


def load_reference(reference: str) -> Any:
    """The object an import reference ``"package.module:attribute"`` names."""
    module_name, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


@functools.cache
def graph_builder(kind: str) -> GraphBuilder:
    """The builder of a graph kind, imported on first use.

    Raises:
        InvalidInput: no such graph kind.
    """
    if kind not in GRAPH_KINDS:
        raise InvalidInput(f"unknown graph kind {kind!r}", available=sorted(GRAPH_KINDS))
    builder: GraphBuilder = load_reference(GRAPH_KINDS[kind])
    return builder
