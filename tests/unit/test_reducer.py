"""The messages reducer's append fast path returns exactly what ``add_messages`` returns."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    RemoveMessage,
    ToolMessage,
)
from langgraph.graph.message import add_messages

from graphs.react import add_stamped_messages

KNOWN_IDS = {"a", "b", "c", "d", "e"}
IDS = st.sampled_from([*sorted(KNOWN_IDS), None])


@st.composite
def message(draw: st.DrawFn, removable: bool = False) -> Any:
    kind = draw(st.sampled_from(["human", "ai", "chunk", "tool", "dict", "remove"]))
    mid = draw(IDS)
    text = draw(st.sampled_from(["hi", "there", ""]))
    stamp = {"created_at": "2026-01-01T00:00:00.000+00:00"}
    if kind == "human":
        return HumanMessage(text, id=mid, response_metadata=dict(stamp))
    if kind == "ai":
        return AIMessage(text, id=mid, response_metadata=dict(stamp))
    if kind == "chunk":
        return AIMessageChunk(text, id=mid, response_metadata=dict(stamp))
    if kind == "tool":
        return ToolMessage(text, tool_call_id="c1", id=mid, response_metadata=dict(stamp))
    if kind == "remove" and removable and mid is not None:
        return RemoveMessage(id=mid)
    return {"role": "user", "content": text, "id": mid}


def stored(messages: list[Any]) -> list[BaseMessage]:
    """A list as the state holds it: what the reducer made of earlier updates."""
    out: list[BaseMessage] = []
    for m in messages:
        out = add_messages(out, [m])  # type: ignore[assignment, arg-type]
    return out


@settings(max_examples=300, deadline=None)
@given(
    left=st.lists(message(), max_size=6),
    right=st.lists(message(removable=True), max_size=4),
)
def test_same_result_as_add_messages(left: list[Any], right: list[Any]) -> None:
    base = stored(left)
    try:
        expected = add_messages(list(base), [_copy(m) for m in right])
    except ValueError as exc:  # removing an unknown id
        try:
            add_stamped_messages(list(base), [_copy(m) for m in right])
        except ValueError as mine:
            assert str(mine) == str(exc)
            return
        raise AssertionError("the fast path accepted what add_messages refuses") from exc
    got = add_stamped_messages(list(base), [_copy(m) for m in right])
    # Ids generated for messages that had none differ; compare the rest position by position.
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert type(g) is type(e)
        assert g.content == e.content
        if e.id in KNOWN_IDS:  # ids given by the test, not generated
            assert g.id == e.id
    assert all(m.id for m in got)


def test_appends_new_messages_to_the_same_objects() -> None:
    base = stored([HumanMessage("one", id="1"), AIMessage("two", id="2")])
    new = HumanMessage("three", id="3")
    got = add_stamped_messages(base, [new])
    assert got[:2] == base and got[0] is base[0] and got[2] is new
    assert new.response_metadata["created_at"]
    assert base == stored([HumanMessage("one", id="1"), AIMessage("two", id="2")])


def _copy(m: Any) -> Any:
    return dict(m) if isinstance(m, dict) else m.model_copy(deep=True)
