"""The LangGraph Server API surface: assistants, threads, runs, store, mounted at the root.

Lets ``langgraph-sdk``, LangGraph Studio and agent-chat-ui talk to sessiongraph. It shares
the native API's runtime, auth and ownership: assistants are agent templates, threads are
sessions (a thread id is the session id), runs are turns.
"""

from __future__ import annotations

from fastapi import APIRouter

from api.compat import assistants, meta, runs, store, threads

__all__ = ["PATH_PREFIXES", "router"]

# Where the surface lives (Studio's text/plain JSON bodies are accepted under these).
PATH_PREFIXES = ("/assistants", "/threads", "/runs", "/store", "/info", "/ok")

router = APIRouter()
for _module in (meta, assistants, threads, runs, store):
    router.include_router(_module.router)
