"""A value computed once per live object: :class:`PerObject`.

Messages in a graph's state are not replaced once settled, yet every turn encodes the whole
list again: for a checkpoint (msgpack) and for a LangGraph API answer (JSON). Keyed by the
object's identity and dropped with the object (a weak reference), each message is encoded
once for as long as it lives. A message is still changed in place on its way in (LangGraph's
``add_messages`` gives it an id, the turn stamps ``created_at`` into its metadata), so an
encoding is kept together with :func:`message_version` and made again when that moved.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from langchain_core.messages import BaseMessage

__all__ = ["PerObject", "message_version"]

T = TypeVar("T")


def message_version(message: BaseMessage) -> Hashable:
    """What changes when a message is changed in place: its id and how many metadata
    entries it has (ids are given, ``created_at`` stamped, never removed)."""
    return (message.id, len(message.response_metadata))


class PerObject(Generic[T]):
    """``compute(obj)``, remembered for as long as ``obj`` lives (it must support weak
    references) and its ``version(obj)`` stays the same."""

    def __init__(self, compute: Callable[[Any], T], version: Callable[[Any], Hashable]) -> None:
        self._compute = compute
        self._version = version
        self._values: dict[int, tuple[weakref.ref[Any], Hashable, T]] = {}

    def __call__(self, obj: Any) -> T:
        key, version = id(obj), self._version(obj)
        entry = self._values.get(key)
        if entry is not None and entry[0]() is obj and entry[1] == version:
            return entry[2]
        value = self._compute(obj)
        values = self._values

        def drop(_: weakref.ref[Any]) -> None:
            values.pop(key, None)

        values[key] = (weakref.ref(obj, drop), version, value)
        return value

    def __len__(self) -> int:
        return len(self._values)
