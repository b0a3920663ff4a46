"""`max_steps` and `deadline_seconds` bound every graph, also one that never calls the kit:
a run past either bound is rolled back whole and answered `budget_exceeded`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runtime import Runtime, Settings
from runtime.agents import Budgets, TemplateSpec
from runtime.errors import BudgetExceeded

GRAPHS = """
import asyncio
from typing import Annotated
import operator
from langgraph.graph import START, StateGraph
from typing_extensions import TypedDict


class Count(TypedDict, total=False):
    messages: list
    ticks: Annotated[list[int], operator.add]


def tick(state: Count) -> dict:
    return {"ticks": [1]}


def forever() -> StateGraph:
    builder = StateGraph(Count)
    builder.add_node("tick", tick)
    builder.add_edge(START, "tick")
    builder.add_edge("tick", "tick")  # never ends
    return builder


async def nap(state: Count) -> dict:
    await asyncio.sleep(30)
    return {"ticks": [1]}


slow_builder = StateGraph(Count)
slow_builder.add_node("nap", nap)
slow_builder.add_edge(START, "nap")

loop = forever()
slow = slow_builder.compile()
"""


@pytest.fixture
async def bounded(settings: Settings, tmp_path: Path) -> AsyncIterator[Runtime]:
    (tmp_path / "bounds.py").write_text(GRAPHS)
    config = {
        "dependencies": ["."],
        "graphs": {"loop": "./bounds.py:loop", "slow": "./bounds.py:slow"},
    }
    (tmp_path / "langgraph.json").write_text(json.dumps(config))
    async with Runtime.open(settings.model_copy(update={"config": tmp_path})) as rt:
        yield rt


class TestBounds:
    async def test_a_graph_that_never_ends_stops_at_its_step_bound(self, bounded: Runtime) -> None:
        """A cycle with no exit is stopped by max_steps, rolled back, and the session kept."""
        spec = TemplateSpec(name="loop", graph="loop", budgets=Budgets(max_steps=2))
        agent = await bounded.templates.create(spec, owner="local")
        await bounded.session("loop-1", agent_id=agent.agent_id)
        with pytest.raises(BudgetExceeded) as caught:
            await bounded.chat("loop-1", input={"ticks": [0]})
        assert caught.value.details["budget"] == "max_steps"
        session = await bounded.sessions.get("local", "loop-1")
        assert session.turns == 0 and session.committed_checkpoint_id is None
        assert not session.busy

    async def test_a_slow_graph_stops_at_its_deadline(self, bounded: Runtime) -> None:
        """A node sleeping past deadline_seconds (plus the grace) is cancelled and rolled back."""
        spec = TemplateSpec(name="slow", graph="slow", budgets=Budgets(deadline_seconds=0.2))
        agent = await bounded.templates.create(spec, owner="local")
        with pytest.raises(BudgetExceeded) as caught:
            await bounded.chat("slow-1", input={"ticks": [0]}, agent_id=agent.agent_id)
        assert caught.value.details["budget"] == "deadline_seconds"
        session = await bounded.sessions.get("local", "slow-1")
        assert session.turns == 0 and session.committed_checkpoint_id is None
        state = await bounded.threads.state(session)
        assert state.values == {}
