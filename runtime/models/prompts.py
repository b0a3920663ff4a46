"""The summariser's prompt, shared by the graph that sends it and the offline model that
recognises it.

The ReAct graph (``graphs.react``) folds messages trimmed from the model's input into a
running summary: it asks with :data:`SUMMARY_PROMPT` and shows the result to the model
after :data:`SUMMARY_PREFIX`. :class:`~runtime.models.OfflineChatModel` answers the one and
reads the other.
"""

from __future__ import annotations

__all__ = ["SUMMARY_PREFIX", "SUMMARY_PROMPT"]

SUMMARY_PROMPT = (
    "Summarize the conversation so far for your own later reference. Keep every fact "
    "about the user, decisions taken and open questions; be brief."
)
SUMMARY_PREFIX = "Summary of the earlier conversation:\n"
