"""Regenerate and edit as ``useStream`` does them, through the real ``langgraph_sdk`` client.

``useStream`` finds, for each message, the oldest state of ``/history`` that holds it (where
it was first seen) and runs from that state's *parent* checkpoint: with no input to
regenerate an answer, with a new input to edit a user message. Whatever the storage mode,
history must have, for each turn, the state with the input applied before the graph answered
(and, for a new thread, an empty state before the first input).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.test_compat_runs import Api, api, texts, user

__all__ = ["api"]  # the fixture, shared


def ids(values: dict[str, Any]) -> list[str]:
    return [m["id"] for m in values.get("messages", [])]


async def parent_of_first_seen(api: Api, thread_id: str, message_id: str) -> dict[str, Any]:
    """The parent checkpoint of the oldest state that holds the message (as useStream)."""
    history = await api.client.threads.get_history(thread_id, limit=10)
    seen = [h for h in history if message_id in ids(h["values"])]
    assert seen, f"{message_id} is in no state of the history"
    parent = seen[-1]["parent_checkpoint"]
    assert parent is not None
    return dict(parent)


@pytest.mark.parametrize("durability", ["exit", "async"])
class TestRegenerateAndEdit:
    async def test_regenerate_the_last_answer(self, api: Api, durability: str) -> None:
        """A run with no input from the answer's parent checkpoint answers again, keeping
        the earlier exchange; /v1 shows the new branch."""
        thread_id = await api.thread()
        run = {"durability": durability}
        await api.client.runs.wait(thread_id, "react", input=user("my name is Ada"), **run)
        before = await api.client.runs.wait(
            thread_id, "react", input=user("what is my name?"), **run
        )
        answer = before["messages"][-1]
        parent = await parent_of_first_seen(api, thread_id, answer["id"])
        again = await api.client.runs.wait(thread_id, "react", input=None, checkpoint=parent, **run)
        assert texts(again) == texts(before)
        assert ids(again)[:3] == ids(before)[:3]
        assert again["messages"][-1]["id"] != answer["id"]
        native = (await api.http.get(f"/v1/sessions/{thread_id}/messages")).json()["items"]
        assert [m["id"] for m in native] == ids(again)

    async def test_edit_a_user_message(self, api: Api, durability: str) -> None:
        """A run with a new input from the parent of the state where a user message first
        appeared replaces that message and what followed it, the first one included."""
        run = {"durability": durability}
        for edit_first in (False, True):
            thread_id = await api.thread()
            await api.client.runs.wait(thread_id, "react", input=user("my name is Ada"), **run)
            if not edit_first:
                await api.client.runs.wait(thread_id, "react", input=user("hello"), **run)
            messages = (await api.client.threads.get_state(thread_id))["values"]["messages"]
            target = messages[0 if edit_first else 2]
            parent = await parent_of_first_seen(api, thread_id, target["id"])
            new = "my name is Bob" if edit_first else "what is my name?"
            edited = await api.client.runs.wait(
                thread_id, "react", input=user(new), checkpoint=parent, **run
            )
            if edit_first:
                assert texts(edited) == ["my name is Bob", "Nice to meet you, Bob."]
            else:
                assert texts(edited) == [
                    "my name is Ada",
                    "Nice to meet you, Ada.",
                    "what is my name?",
                    "Your name is Ada.",
                ]
