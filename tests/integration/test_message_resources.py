"""Messages as resources over real HTTP: read one, append without a turn, edit, delete.

Auth is off (loopback, no keys): every caller is owner ``local``. Each change must be one new
committed checkpoint, visible to the LangGraph API (``/threads``) as to ``/v1``.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.integration.test_http_resources import error, put_session, send, uid
from tests.support.checks import assert_valid_history


async def history(http: httpx.AsyncClient, session_id: str) -> list[dict[str, Any]]:
    response = await http.get(f"/v1/sessions/{session_id}/messages", params={"limit": 200})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def session_row(http: httpx.AsyncClient, session_id: str) -> dict[str, Any]:
    response = await http.get(f"/v1/sessions/{session_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def append(http: httpx.AsyncClient, session_id: str, **body: Any) -> httpx.Response:
    return await http.post(f"/v1/sessions/{session_id}/messages?run=false", json=body)


class TestReadOne:
    async def test_get_one_message(self, http: httpx.AsyncClient) -> None:
        """GET /messages/{id} answers the message as the history shows it."""
        session_id = uid("s")
        await put_session(http, session_id)
        turn = await send(http, session_id, "hello there")
        first = turn["messages"][0]
        response = await http.get(f"/v1/sessions/{session_id}/messages/{first['id']}")
        assert response.status_code == 200, response.text
        assert response.json()["content"] == "hello there"
        assert response.json()["role"] == "user"

    async def test_unknown_message_is_404(self, http: httpx.AsyncClient) -> None:
        """An id no message has answers 404 not_found."""
        session_id = uid("s")
        await put_session(http, session_id)
        await send(http, session_id, "hello")
        error(await http.get(f"/v1/sessions/{session_id}/messages/nope"), 404, "not_found")


class TestAppend:
    async def test_append_system_note_without_model_call(self, http: httpx.AsyncClient) -> None:
        """run=false appends a system message: 201, no turn counted, one more message."""
        session_id = uid("s")
        await put_session(http, session_id)
        await send(http, session_id, "hello")
        before = await session_row(http, session_id)
        response = await append(
            http, session_id, role="system", content="The user is a VIP.", metadata={"by": "crm"}
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["message"]["role"] == "system" and body["checkpoint_id"]
        assert body["message"]["metadata"] == {"by": "crm"}
        after = await session_row(http, session_id)
        assert after["turns"] == before["turns"]
        assert after["messages"] == before["messages"] + 1
        items = await history(http, session_id)
        assert items[-1]["id"] == body["message"]["id"]
        assert items[-1]["content"] == "The user is a VIP."

    async def test_append_to_a_new_session(self, http: httpx.AsyncClient) -> None:
        """The first change of an empty session works, and the next turn builds on it."""
        session_id = uid("s")
        await put_session(http, session_id)
        response = await append(http, session_id, role="user", content="my name is Ada")
        assert response.status_code == 201, response.text
        assert (await append(http, session_id, role="assistant", content="Hi Ada")).is_success
        turn = await send(http, session_id, "what is my name?")
        assert "Ada" in turn["reply"]
        roles = [m["role"] for m in await history(http, session_id)]
        assert roles == ["user", "assistant", "user", "assistant"]
        assert (await session_row(http, session_id))["messages"] == 4

    async def test_tool_result_must_answer_a_call(self, http: httpx.AsyncClient) -> None:
        """A tool message naming no open call is refused (422); an answered one too (409)."""
        session_id = uid("s")
        await put_session(http, session_id)
        turn = await send(http, session_id, "what is 2+3?")
        call_id = turn["messages"][1]["tool_calls"][0]["id"]
        orphan = await append(http, session_id, role="tool", content="9", tool_call_id="x1")
        error(orphan, 422, "invalid_input")
        again = await append(http, session_id, role="tool", content="9", tool_call_id=call_id)
        error(again, 409, "conflict")

    async def test_chosen_id_is_kept_and_unique(self, http: httpx.AsyncClient) -> None:
        """An appended message keeps the id the caller chose; a taken id is a 409."""
        session_id = uid("s")
        await put_session(http, session_id)
        first = await append(http, session_id, role="system", content="note", id="note-1")
        assert first.status_code == 201 and first.json()["message"]["id"] == "note-1"
        again = await append(http, session_id, role="user", content="x", id="note-1")
        error(again, 409, "conflict")
        assert (await session_row(http, session_id))["messages"] == 1

    async def test_turn_refuses_other_roles(self, http: httpx.AsyncClient) -> None:
        """Without run=false, a role other than user is refused (a turn takes a user message)."""
        session_id = uid("s")
        await put_session(http, session_id)
        response = await http.post(
            f"/v1/sessions/{session_id}/messages", json={"role": "system", "content": "x"}
        )
        error(response, 422, "invalid_input")


class TestEdit:
    async def test_edit_keeps_id_and_previous_content(self, http: httpx.AsyncClient) -> None:
        """PATCH replaces the content by id, records edited_at and the previous content."""
        session_id = uid("s")
        await put_session(http, session_id)
        turn = await send(http, session_id, "my name is Bob")
        user = turn["messages"][0]
        response = await http.patch(
            f"/v1/sessions/{session_id}/messages/{user['id']}", json={"content": "my name is Eve"}
        )
        assert response.status_code == 200, response.text
        edited = response.json()["message"]
        assert edited["id"] == user["id"] and edited["content"] == "my name is Eve"
        assert edited["edited_at"] and edited["created_at"] == user["created_at"]
        assert edited["revisions"][0]["content"] == "my name is Bob"
        items = await history(http, session_id)
        assert items[0]["content"] == "my name is Eve" and items[0]["edited_at"]
        assert "Eve" in (await send(http, session_id, "what is my name?"))["reply"]
        assert (await session_row(http, session_id))["messages"] == 4

    async def test_edit_needs_something(self, http: httpx.AsyncClient) -> None:
        """A PATCH with neither content nor metadata is refused (422)."""
        session_id = uid("s")
        await put_session(http, session_id)
        turn = await send(http, session_id, "hello")
        url = f"/v1/sessions/{session_id}/messages/{turn['messages'][0]['id']}"
        error(await http.patch(url, json={}), 422, "invalid_input")


class TestDelete:
    async def test_delete_assistant_call_removes_its_results(self, http: httpx.AsyncClient) -> None:
        """Deleting an assistant message with tool calls removes their results, and says so."""
        session_id = uid("s")
        await put_session(http, session_id)
        turn = await send(http, session_id, "what is 2+3?")
        caller, result = turn["messages"][1], turn["messages"][2]
        response = await http.delete(f"/v1/sessions/{session_id}/messages/{caller['id']}")
        assert response.status_code == 200, response.text
        removed = [m["id"] for m in response.json()["removed"]]
        assert removed == [caller["id"], result["id"]]
        items = await history(http, session_id)
        assert [m["role"] for m in items] == ["user", "assistant"]
        assert_valid_history(items)
        assert (await session_row(http, session_id))["messages"] == 2
        gone = await http.get(f"/v1/sessions/{session_id}/messages/{caller['id']}")
        error(gone, 404, "not_found")
        # The next turn sees a valid history and adds to it.
        await send(http, session_id, "what is 4+4?")
        assert_valid_history(await history(http, session_id))

    async def test_tool_result_cannot_be_deleted_alone(self, http: httpx.AsyncClient) -> None:
        """Deleting a tool result alone is a 409 naming the assistant message to delete."""
        session_id = uid("s")
        await put_session(http, session_id)
        turn = await send(http, session_id, "what is 2+3?")
        result = turn["messages"][2]
        response = await http.delete(f"/v1/sessions/{session_id}/messages/{result['id']}")
        body = error(response, 409, "conflict")
        assert body["details"]["assistant_message_id"] == turn["messages"][1]["id"]

    async def test_langgraph_api_sees_the_change_and_time_travel(
        self, http: httpx.AsyncClient
    ) -> None:
        """The thread's state lacks the deleted message; its previous checkpoint still has it."""
        session_id = uid("s")
        await put_session(http, session_id)
        turn = await send(http, session_id, "hello")
        user_id = turn["messages"][0]["id"]
        deleted = await http.delete(f"/v1/sessions/{session_id}/messages/{user_id}")
        checkpoint_id = deleted.json()["checkpoint_id"]
        state = (await http.get(f"/threads/{session_id}/state")).json()
        assert state["checkpoint"]["checkpoint_id"] == checkpoint_id
        assert [m["id"] for m in state["values"]["messages"]] == [turn["messages"][1]["id"]]
        states = (await http.post(f"/threads/{session_id}/history", json={"limit": 2})).json()
        assert user_id in [m["id"] for m in states[1]["values"]["messages"]]
