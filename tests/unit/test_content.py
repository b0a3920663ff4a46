"""The content rule (runtime.turns.content): which message contents are accepted, and how
each refusal names what is wrong; the text of a content; how messages show it."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from runtime.errors import InvalidInput, PayloadTooLarge
from runtime.turns import (
    MAX_CONTENT_BLOCKS,
    MAX_CONTENT_BYTES,
    MAX_MESSAGE_CHARS,
    check_content,
    content_text,
    message_to_dict,
)

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
PDF = base64.b64encode(b"%PDF-1.4 tiny").decode()

ACCEPTED: dict[str, dict[str, Any]] = {
    "text": {"type": "text", "text": "hello"},
    "openai image url": {"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}},
    "openai image data": {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"},
    },
    "openai file": {
        "type": "file",
        "file": {"file_data": f"data:application/pdf;base64,{PDF}", "filename": "a.pdf"},
    },
    "openai file id": {"type": "file", "file": {"file_id": "file-123"}},
    "image url": {"type": "image", "url": "https://x.test/cat.png"},
    "image base64": {"type": "image", "base64": PNG, "mime_type": "image/png"},
    "image file id": {"type": "image", "file_id": "file-1"},
    "file url": {"type": "file", "url": "https://x.test/a.pdf", "mime_type": "application/pdf"},
    "file base64": {"type": "file", "base64": PDF, "mime_type": "application/pdf"},
    "source_type url": {"type": "image", "source_type": "url", "url": "https://x.test/c.png"},
    "source_type base64": {
        "type": "file",
        "source_type": "base64",
        "data": PDF,
        "mime_type": "application/pdf",
    },
    "source_type id": {"type": "file", "source_type": "id", "id": "file-9"},
    "extra keys": {"type": "image", "url": "https://x.test/c.png", "extras": {"a": 1}},
}

REFUSED: dict[str, tuple[object, str]] = {
    "unknown type": ({"type": "video_url", "url": "https://x.test/v"}, "content[0].type"),
    "no type": ({"text": "hi"}, "content[0].type"),
    "not an object": ("hi", "content[0]"),
    "text not a string": ({"type": "text", "text": 3}, "content[0].text"),
    "image_url without url": ({"type": "image_url", "image_url": {}}, "content[0].image_url"),
    "image_url as string": (
        {"type": "image_url", "image_url": "https://x"},
        "content[0].image_url",
    ),
    "ftp url": ({"type": "image", "url": "ftp://x.test/c.png"}, "content[0].url"),
    "bad detail": (
        {"type": "image_url", "image_url": {"url": "https://x.test/c", "detail": "max"}},
        "content[0].image_url.detail",
    ),
    "data url not an image": (
        {"type": "image_url", "image_url": {"url": f"data:application/pdf;base64,{PDF}"}},
        "content[0].image_url.url",
    ),
    "bad base64": (
        {"type": "image", "base64": "not base64!", "mime_type": "image/png"},
        "content[0].base64",
    ),
    "base64 without mime": ({"type": "image", "base64": PNG}, "content[0].mime_type"),
    "url and base64": (
        {"type": "image", "url": "https://x.test/c", "base64": PNG, "mime_type": "image/png"},
        "content[0]",
    ),
    "nothing to show": ({"type": "file", "mime_type": "application/pdf"}, "content[0]"),
    "file without data": ({"type": "file", "file": {"filename": "a.pdf"}}, "content[0].file"),
    "file_data not a data url": (
        {"type": "file", "file": {"file_data": "https://x.test/a.pdf"}},
        "content[0].file.file_data",
    ),
    "bad source_type": (
        {"type": "image", "source_type": "path", "path": "/x"},
        "content[0].source_type",
    ),
}


class TestCheckContent:
    def test_text(self) -> None:
        """A non-empty string is accepted, up to MAX_MESSAGE_CHARS characters."""
        check_content("hi")
        check_content("x" * MAX_MESSAGE_CHARS)

    @pytest.mark.parametrize("name", sorted(ACCEPTED))
    def test_accepted_blocks(self, name: str) -> None:
        """OpenAI's and LangChain's block shapes are accepted, alone or after text."""
        check_content([ACCEPTED[name]])
        check_content([{"type": "text", "text": "look:"}, ACCEPTED[name]])

    @pytest.mark.parametrize("name", sorted(REFUSED))
    def test_malformed_blocks(self, name: str) -> None:
        """A malformed or unknown block is a 422 naming where it is."""
        block, field = REFUSED[name]
        with pytest.raises(InvalidInput) as caught:
            check_content([block])
        assert not isinstance(caught.value, PayloadTooLarge)
        assert caught.value.details["field"] == field

    @pytest.mark.parametrize("content", ["", "   ", [], [{"type": "text", "text": " "}], None, 3])
    def test_empty_or_not_content(self, content: object) -> None:
        """Blank text, an empty list, only blank text blocks, or not a content: 422."""
        with pytest.raises(InvalidInput) as caught:
            check_content(content)
        assert not isinstance(caught.value, PayloadTooLarge)

    def test_media_without_text(self) -> None:
        """An image needs no words beside it; a blank text block beside it is fine."""
        check_content([{"type": "text", "text": ""}, ACCEPTED["image url"]])

    def test_too_many_blocks(self) -> None:
        """More than MAX_CONTENT_BLOCKS blocks: 422 naming the limit."""
        check_content([ACCEPTED["image url"]] * MAX_CONTENT_BLOCKS)
        with pytest.raises(InvalidInput, match="MAX_CONTENT_BLOCKS") as caught:
            check_content([ACCEPTED["image url"]] * (MAX_CONTENT_BLOCKS + 1))
        assert not isinstance(caught.value, PayloadTooLarge)
        assert caught.value.details["limit"] == MAX_CONTENT_BLOCKS

    def test_too_many_bytes(self) -> None:
        """Blocks over MAX_CONTENT_BYTES as JSON: 413 naming the limit."""
        big = base64.b64encode(b"\0" * (MAX_CONTENT_BYTES * 3 // 4)).decode()
        block = {"type": "image", "base64": big, "mime_type": "image/png"}
        with pytest.raises(PayloadTooLarge, match="MAX_CONTENT_BYTES") as caught:
            check_content([block], field="input.messages[0].content")
        assert caught.value.details == {
            "field": "input.messages[0].content",
            "limit": MAX_CONTENT_BYTES,
            "name": "MAX_CONTENT_BYTES",
        }

    def test_too_much_text(self) -> None:
        """Text keeps its character limit, as a string or as text blocks: 413."""
        for content in (
            "x" * (MAX_MESSAGE_CHARS + 1),
            [{"type": "text", "text": "x" * MAX_MESSAGE_CHARS}, {"type": "text", "text": "y"}],
            [{"type": "text", "text": "x" * (MAX_MESSAGE_CHARS + 1)}, ACCEPTED["image url"]],
        ):
            with pytest.raises(PayloadTooLarge) as caught:
                check_content(content)
            assert caught.value.details["limit"] == MAX_MESSAGE_CHARS

    def test_field_names_the_place(self) -> None:
        """The caller's field prefixes the block's position."""
        with pytest.raises(InvalidInput) as caught:
            check_content([ACCEPTED["text"], {"type": "nope"}], field="input.messages[2].content")
        assert caught.value.details["field"] == "input.messages[2].content[1].type"
        assert "text, image_url, image, file" in caught.value.message


class TestContentText:
    def test_string(self) -> None:
        """A string is its own text."""
        assert content_text("hi there") == "hi there"

    def test_blocks(self) -> None:
        """Text blocks joined as LangChain's message.text joins them; media skipped."""
        content: list[Any] = [
            {"type": "text", "text": "a"},
            ACCEPTED["image url"],
            {"type": "text", "text": "b"},
        ]
        assert content_text(content) == "ab" == HumanMessage(content).text
        assert content_text([ACCEPTED["image url"]]) == ""
        assert content_text(None) == ""


class TestShownContent:
    def test_text_stays_text(self) -> None:
        """A string, or only text blocks, is shown as its text (as before blocks existed)."""
        assert message_to_dict(HumanMessage("hi", id="m1"))["content"] == "hi"
        blocks: list[Any] = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
        assert message_to_dict(AIMessage(blocks))["content"] == "ab"

    def test_media_is_shown_as_blocks(self) -> None:
        """A message with an image or a file is shown as its blocks, as stored."""
        blocks: list[Any] = [{"type": "text", "text": "what?"}, ACCEPTED["openai file"]]
        assert message_to_dict(HumanMessage(blocks))["content"] == blocks
