"""A value computed once per live object: :class:`PerObject`.

Messages in a graph's state are never modified once there (updates replace them with
copies), yet every turn encodes the whole list again: for a checkpoint (msgpack) and for a
LangGraph API answer (JSON). Keyed by the object's identity and dropped with the object (a
weak reference), each message is encoded once for as long as it lives.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["PerObject"]

T = TypeVar("T")


class PerObject(Generic[T]):
    """``compute(obj)``, remembered for as long as ``obj`` lives (it must support weak
    references, and never change once computed)."""

    def __init__(self, compute: Callable[[Any], T]) -> None:
        self._compute = compute
        self._values: dict[int, tuple[weakref.ref[Any], T]] = {}

    def __call__(self, obj: Any) -> T:
        key = id(obj)
        entry = self._values.get(key)
        if entry is not None and entry[0]() is obj:
            return entry[1]
        value = self._compute(obj)
        values = self._values

        def drop(_: weakref.ref[Any]) -> None:
            values.pop(key, None)

        values[key] = (weakref.ref(obj, drop), value)
        return value

    def __len__(self) -> int:
        return len(self._values)
