"""PerObject: a value computed once per live object, dropped with it."""

from __future__ import annotations

import gc

from langchain_core.messages import HumanMessage

from runtime.memo import PerObject


def test_computes_once_per_object_and_forgets_it_with_the_object() -> None:
    calls: list[str] = []

    def compute(message: HumanMessage) -> str:
        calls.append(str(message.content))
        return f"encoded {message.content}"

    memo = PerObject(compute)
    first, second = HumanMessage("one"), HumanMessage("one")
    assert memo(first) == memo(first) == "encoded one"
    assert memo(second) == "encoded one"  # an equal object is another object
    assert calls == ["one", "one"] and len(memo) == 2
    del first
    gc.collect()
    assert len(memo) == 1
    third = HumanMessage("three")  # may reuse the freed id: never the old value
    assert memo(third) == "encoded three"
    assert memo(second) == "encoded one" and calls == ["one", "one", "three"]
