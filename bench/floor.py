"""The floor: the same graph invoked in this process with no checkpointer, no HTTP, no lease.

``floor_ms`` is CPU milliseconds per invoke (``time.process_time``), measured in the same run
as the server's figures so their ratio compares like with like on a noisy machine. Each
invoke starts from an empty state with one user message, as LangGraph's own floor does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage

__all__ = ["FLOORS", "floor_ms"]

PROJECT = Path(__file__).resolve().parent / "project"


def _builtin_graph() -> tuple[Any, dict[str, Any]]:
    from graphs.react import build_graph
    from runtime.agents import default_template_spec
    from runtime.models import make_chat_model
    from runtime.settings import Settings
    from runtime.tools import default_registry

    spec = default_template_spec("offline:deterministic")
    model = make_chat_model(spec.model, Settings())
    graph = build_graph(spec, model=model, tools=default_registry().resolve(spec.tools))
    return graph.compile(), {}


def _custom_graph() -> tuple[Any, dict[str, Any]]:
    """The bench's own graph, given the agent's model as sessiongraph gives it (the kit)."""
    from runtime.agents import AgentTemplate, CompiledAgent, ModelSpec, TemplateSpec
    from runtime.imports import import_object
    from runtime.models import make_chat_model
    from runtime.settings import Settings
    from runtime.turns import CONFIG_KEY_AGENT

    graph = import_object("bench", "./custom_graph.py:graph", PROJECT)
    spec = TemplateSpec(name="custom", graph="custom", model=ModelSpec())
    now = datetime.now(UTC)
    template = AgentTemplate(
        agent_id="custom", owner="bench", version=1, spec=spec, created_at=now, updated_at=now
    )
    agent = CompiledAgent(template, graph, make_chat_model(spec.model, Settings()), ())
    return graph, {"configurable": {CONFIG_KEY_AGENT: agent}}


# The graphs a floor can be measured for.
FLOORS: dict[str, Callable[[], tuple[Any, dict[str, Any]]]] = {
    "react": _builtin_graph,
    "custom": _custom_graph,
}


def floor_ms(graph: str, turns: int, text: Callable[[int], str]) -> float:
    """CPU ms per invoke of ``graph`` (see :data:`FLOORS`) on ``text(i)``, after a warm-up."""
    compiled, config = FLOORS[graph]()

    async def run() -> float:
        for i in range(min(20, turns)):  # warm-up: imports, caches, first compile paths
            await compiled.ainvoke({"messages": [HumanMessage(text(i))]}, config)
        started = time.process_time()
        for i in range(turns):
            await compiled.ainvoke({"messages": [HumanMessage(text(i))]}, config)
        return (time.process_time() - started) * 1000 / turns

    return round(asyncio.run(run()), 3)
