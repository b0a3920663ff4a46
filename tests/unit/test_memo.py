"""PerObject: a value computed once per live object, dropped with it, made again when the
object was changed in place."""

from __future__ import annotations

import gc

from langchain_core.messages import AIMessage, HumanMessage

from runtime.memo import PerObject, message_version


def test_computes_once_per_object_and_forgets_it_with_the_object() -> None:
    calls: list[str] = []

    def compute(message: HumanMessage) -> str:
        calls.append(str(message.content))
        return f"encoded {message.content}"

    memo = PerObject(compute, message_version)
    first, second = HumanMessage("one", id="a"), HumanMessage("one", id="a")
    assert memo(first) == memo(first) == "encoded one"
    assert memo(second) == "encoded one"  # an equal object is another object
    assert calls == ["one", "one"] and len(memo) == 2
    del first
    gc.collect()
    assert len(memo) == 1
    third = HumanMessage("three", id="c")  # may reuse the freed id: never the old value
    assert memo(third) == "encoded three"
    assert memo(second) == "encoded one" and calls == ["one", "one", "three"]


def test_a_message_changed_in_place_is_computed_again() -> None:
    """add_messages gives an id in place; the turn stamps created_at into the metadata."""
    memo = PerObject(lambda m: m.model_dump(mode="json"), message_version)
    message = AIMessage("hi")
    assert memo(message)["id"] is None
    message.id = "given"
    assert memo(message)["id"] == "given"
    message.response_metadata["created_at"] = "2026-12-07T06:00:00+00:00"
    assert memo(message)["response_metadata"] == {"created_at": "2026-12-07T06:00:00+00:00"}
