"""A user message's content: a string, or a list of content blocks (text, images, files).

The rule is written once here and used by every entry point (``/v1`` JSON, SSE, WebSocket,
and the LangGraph API's run input): :func:`check_content` accepts or refuses one message's
content; :func:`content_text` is its text.

Accepted blocks (each a JSON object with a ``type``; extra keys are kept and passed on):

OpenAI's shapes
    ``{"type": "text", "text": "..."}``;
    ``{"type": "image_url", "image_url": {"url": "https://..." | "data:image/png;base64,...",
    "detail"?: "auto" | "low" | "high"}}``;
    ``{"type": "file", "file": {"file_data": "data:<mime>;base64,...", "filename"?: "..."}}``
    or ``{"type": "file", "file": {"file_id": "..."}}``.
LangChain's standard shapes
    ``{"type": "image" | "file", "url": "https://..."}``,
    ``{"type": "image" | "file", "base64": "...", "mime_type": "..."}``,
    ``{"type": "image" | "file", "file_id": "..."}``, and the older ``source_type`` form:
    ``{"type": "image" | "file", "source_type": "url", "url": ...}``,
    ``{"source_type": "base64", "data": ..., "mime_type": ...}``, ``{"source_type": "id",
    "id": ...}``.

Limits: at most :data:`MAX_CONTENT_BLOCKS` blocks (422 above), at most
:data:`MAX_CONTENT_BYTES` bytes for all of a message's blocks as compact JSON (413 above, kept
below the server's default 1 MiB body limit so this, the more precise refusal, is what a
caller sees), and at most :data:`MAX_MESSAGE_CHARS` characters of text (413), whether the
content is a string or text blocks. A content with no text and no media is refused (422).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any, TypeAlias

from runtime.errors import InvalidInput, PayloadTooLarge

__all__ = [
    "BLOCK_TYPES",
    "MAX_CONTENT_BLOCKS",
    "MAX_CONTENT_BYTES",
    "MAX_MESSAGE_CHARS",
    "Content",
    "check_content",
    "content_text",
]

Content: TypeAlias = str | list[dict[str, Any]]
"""One message's content: a string, or a list of content blocks."""

MAX_MESSAGE_CHARS = 32_000
"""The most characters of text in one message (a string, or its text blocks together)."""
MAX_CONTENT_BLOCKS = 16
"""The most content blocks in one message."""
MAX_CONTENT_BYTES = 768 * 1024
"""The most bytes of one message's blocks, as compact JSON (base64 payloads included)."""

BLOCK_TYPES: tuple[str, ...] = ("text", "image_url", "image", "file")
"""The content-block types a message may carry."""

_HTTP_URL = re.compile(r"^https?://\S+$", re.IGNORECASE)
_DATA_URL = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)(?:;[\w=.+-]+)*;base64,(?P<data>.*)$", re.DOTALL
)
_MIME = re.compile(r"^[\w.+-]+/[\w.+-]+$")
_DETAILS = ("auto", "low", "high")


def content_text(content: object) -> str:
    """The text of a message's content: the string, or its text blocks joined.

    Text blocks are joined with no separator, as LangChain's ``BaseMessage.text`` joins them,
    so ``content_text(message.content) == message.text``.

    Args:
        content: A string or a list of content blocks (non-text blocks are skipped).

    Returns:
        The text; ``""`` for content with no text.
    """
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "".join(
        block
        if isinstance(block, str)
        else block["text"]
        if isinstance(block, Mapping)
        and block.get("type") == "text"
        and isinstance(block.get("text"), str)
        else ""
        for block in content
    )


def _has_media(content: list[Any]) -> bool:
    """Whether a list of blocks has a block other than text (an image or a file)."""
    return any(isinstance(b, Mapping) and b.get("type") != "text" for b in content)


def check_content(content: object, field: str = "content") -> None:
    """Accept one message's content, or refuse it naming what is wrong and the limit.

    Args:
        content: A non-empty string, or a non-empty list of content blocks (module docstring).
        field: Where the content sits in the caller's input, for the error's ``field``.

    Raises:
        InvalidInput: not a string or a list, empty (no text and no media), more than
            :data:`MAX_CONTENT_BLOCKS` blocks, an unknown block type, or a malformed block.
        PayloadTooLarge: more than :data:`MAX_MESSAGE_CHARS` characters of text, or blocks
            over :data:`MAX_CONTENT_BYTES` bytes.
    """
    if isinstance(content, str):
        _check_text(content, field)
        return
    if not isinstance(content, list):
        raise InvalidInput(
            "message content must be a string or a list of content blocks", field=field
        )
    if not content:
        raise InvalidInput("message content must not be an empty list", field=field)
    if len(content) > MAX_CONTENT_BLOCKS:
        raise InvalidInput(
            f"message has {len(content)} content blocks; the limit is {MAX_CONTENT_BLOCKS}"
            " (MAX_CONTENT_BLOCKS)",
            field=field,
            limit=MAX_CONTENT_BLOCKS,
            name="MAX_CONTENT_BLOCKS",
        )
    # Measured before the blocks are read, so an oversized payload is never decoded.
    size = len(json.dumps(content, separators=(",", ":"), ensure_ascii=False, default=str).encode())
    if size > MAX_CONTENT_BYTES:
        raise PayloadTooLarge(
            f"message content blocks are {size} bytes; the limit is {MAX_CONTENT_BYTES}"
            " (MAX_CONTENT_BYTES)",
            field=field,
            limit=MAX_CONTENT_BYTES,
            name="MAX_CONTENT_BYTES",
        )
    for index, block in enumerate(content):
        _check_block(block, f"{field}[{index}]")
    text = content_text(content)
    if len(text) > MAX_MESSAGE_CHARS or not _has_media(content):
        _check_text(text, field)  # text only: it must say something


def _check_text(text: str, field: str) -> None:
    if not text.strip():
        raise InvalidInput("message content must not be empty", field=field)
    if len(text) > MAX_MESSAGE_CHARS:
        raise PayloadTooLarge(
            f"message is {len(text)} characters; the limit is {MAX_MESSAGE_CHARS}",
            field=field,
            limit=MAX_MESSAGE_CHARS,
        )


def _check_block(block: object, field: str) -> None:
    """One block: a known ``type`` and the keys that type needs, well formed."""
    if not isinstance(block, Mapping):
        raise InvalidInput('a content block is an object with a "type"', field=field)
    kind = block.get("type")
    if kind not in BLOCK_TYPES:
        raise InvalidInput(
            f"unknown content block type {kind!r}; expected one of {', '.join(BLOCK_TYPES)}",
            field=f"{field}.type",
            allowed=list(BLOCK_TYPES),
        )
    if kind == "text":
        if not isinstance(block.get("text"), str):
            raise InvalidInput('a text block needs a string "text"', field=f"{field}.text")
    elif kind == "image_url":
        _check_image_url(block.get("image_url"), f"{field}.image_url")
    elif kind == "file" and "file" in block:
        _check_openai_file(block.get("file"), f"{field}.file")
    else:
        _check_standard(block, field, image=kind == "image")


def _check_image_url(value: object, field: str) -> None:
    """OpenAI's ``image_url``: ``{"url": http(s) or data:image/...;base64, "detail"?}``."""
    if not isinstance(value, Mapping) or not isinstance(value.get("url"), str):
        raise InvalidInput('an image_url block needs {"url": "..."}', field=field)
    _check_url(value["url"], f"{field}.url", image=True)
    detail = value.get("detail")
    if detail is not None and detail not in _DETAILS:
        raise InvalidInput(
            f"image_url detail must be one of {', '.join(_DETAILS)}", field=f"{field}.detail"
        )


def _check_openai_file(value: object, field: str) -> None:
    """OpenAI's ``file``: ``{"file_data": data URL, "filename"?}`` or ``{"file_id"}``."""
    if not isinstance(value, Mapping):
        raise InvalidInput('a file block\'s "file" is an object', field=field)
    if isinstance(value.get("file_id"), str) and value["file_id"]:
        return
    data = value.get("file_data")
    if not isinstance(data, str):
        raise InvalidInput('a file block needs "file_data" (a data URL) or "file_id"', field=field)
    _check_url(data, f"{field}.file_data", image=False, data_only=True)
    filename = value.get("filename")
    if filename is not None and not (isinstance(filename, str) and filename.strip()):
        raise InvalidInput("filename must be a non-empty string", field=f"{field}.filename")


def _check_standard(block: Mapping[str, Any], field: str, *, image: bool) -> None:
    """LangChain's ``image``/``file`` blocks: ``url``, ``base64`` + ``mime_type``, ``file_id``,
    or the older ``source_type`` form (``url``, ``base64`` with ``data``, ``id``)."""
    source = block.get("source_type")
    if source is not None:
        keys = {"url": "url", "base64": "data", "id": "id"}
        if source not in keys:
            raise InvalidInput(
                "source_type must be one of url, base64, id", field=f"{field}.source_type"
            )
        key = keys[source]
    else:
        present = [k for k in ("url", "base64", "file_id") if k in block]
        if len(present) != 1:
            raise InvalidInput(
                f"an {block.get('type')} block needs exactly one of url, base64, file_id",
                field=field,
            )
        key = present[0]
    value = block.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInput(f'"{key}" must be a non-empty string', field=f"{field}.{key}")
    if key == "url":
        _check_url(value, f"{field}.url", image=image)
    elif key in ("base64", "data"):
        _check_mime(block.get("mime_type"), f"{field}.mime_type", image=image)
        _check_base64(value, f"{field}.{key}")


def _check_url(url: str, field: str, *, image: bool, data_only: bool = False) -> None:
    """An http(s) URL (unless ``data_only``) or a base64 data URL of the right kind."""
    if not data_only and _HTTP_URL.match(url):
        return
    match = _DATA_URL.match(url)
    if match is None:
        expected = "a data:<mime>;base64,... URL" if data_only else "an http(s) or data: URL"
        raise InvalidInput(f"expected {expected}", field=field)
    _check_mime(match.group("mime"), field, image=image)
    _check_base64(match.group("data"), field)


def _check_mime(mime: object, field: str, *, image: bool) -> None:
    if not isinstance(mime, str) or not _MIME.match(mime):
        raise InvalidInput("a base64 block needs a mime_type such as image/png", field=field)
    if image and not mime.lower().startswith("image/"):
        raise InvalidInput(f"an image's mime type must be image/*, not {mime!r}", field=field)


def _check_base64(data: str, field: str) -> None:
    try:
        decoded = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("the payload is not valid base64", field=field) from exc
    if not decoded:
        raise InvalidInput("the payload is empty", field=field)
