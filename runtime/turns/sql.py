"""Every statement on ``tool_records`` (the recorded results of idempotent write tools)."""

from __future__ import annotations

__all__ = ["INSERT_TOOL_RECORD_SQL", "SELECT_TOOL_RECORD_SQL"]

SELECT_TOOL_RECORD_SQL = "SELECT content FROM tool_records WHERE thread_id = %s AND call_key = %s"
# The first result of a call is the record: a concurrent duplicate keeps it.
INSERT_TOOL_RECORD_SQL = (
    "INSERT INTO tool_records (thread_id, call_key, tool, content) "
    "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
