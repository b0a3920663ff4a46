"""Cursor pagination shared by every list: a :class:`Page` and opaque cursors.

A cursor is the position after the last item of a page (keyset values, or an offset into a
conversation), as URL-safe base64 JSON. Clients treat it as opaque; a tampered or foreign
cursor is an ``InvalidInput``, never a server error.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from runtime.errors import InvalidInput

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "MAX_OFFSET_LIMIT",
    "Page",
    "check_limit",
    "check_offset_page",
    "check_sort",
    "decode_cursor",
    "encode_cursor",
    "position",
    "text",
    "timestamp",
]

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
# Offset pages (the LangGraph API's searches and run lists) allow bigger pages.
MAX_OFFSET_LIMIT = 1000

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list; ``next_cursor`` is None on the last page."""

    items: list[T]
    next_cursor: str | None = None


def encode_cursor(kind: str, position: dict[str, Any]) -> str:
    """An opaque cursor for ``position`` in a list of ``kind``."""
    raw = json.dumps({"k": kind, **position}, separators=(",", ":"), default=str)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(
    kind: str, cursor: str | None, fields: dict[str, Callable[[Any], Any]]
) -> dict[str, Any] | None:
    """The position a cursor names, each field passed through its converter; None at first.

    Raises:
        InvalidInput: the cursor is malformed, tampered with, or belongs to another list.
    """
    if cursor is None or cursor == "":
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(value, dict) or value.get("k") != kind:
            raise ValueError(kind)
        return {name: convert(value[name]) for name, convert in fields.items()}
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeError) as exc:
        raise InvalidInput(
            "invalid cursor: pass back a next_cursor this list returned", field="cursor"
        ) from exc


def position(value: Any) -> int:
    """A cursor converter for a non-negative integer position."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(value)
    return value


def text(value: Any) -> str:
    """A cursor converter for a string."""
    if not isinstance(value, str):
        raise ValueError(value)
    return value


def timestamp(value: Any) -> datetime:
    """A cursor converter for an ISO timestamp."""
    return datetime.fromisoformat(text(value))


def check_limit(limit: int | None) -> int:
    """A page size between 1 and :data:`MAX_LIMIT` (default :data:`DEFAULT_LIMIT`)."""
    if limit is None:
        return DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    return limit


def check_offset_page(limit: int, offset: int) -> None:
    """An offset page: ``limit`` between 1 and :data:`MAX_OFFSET_LIMIT`, ``offset`` ≥ 0."""
    if not 1 <= limit <= MAX_OFFSET_LIMIT or offset < 0:
        raise InvalidInput(
            f"limit must be 1-{MAX_OFFSET_LIMIT} and offset not negative", field="limit"
        )


def check_sort(sort_by: str, sort_order: str, keys: Collection[str]) -> None:
    """A sort of an offset page: ``sort_by`` one of ``keys``, ``sort_order`` asc or desc."""
    if sort_by not in keys:
        raise InvalidInput(f"cannot sort by {sort_by!r}", field="sort_by", allowed=sorted(keys))
    if sort_order not in ("asc", "desc"):
        raise InvalidInput("sort_order must be asc or desc", field="sort_order")
