"""Refusals: a statement that keeps a transaction from committing, by name.

A statement sent in a pipeline with others (the release of a turn: its checkpoint writes,
``RELEASE``, its run's record) cannot be read before they all run: they share one implicit
transaction that commits at the pipeline's sync. So a statement that finds the commit must
not happen (the lease is no longer the turn's, the run has ended without it) fails instead,
by calling ``sessiongraph_refuse(reason)`` (migration 28), which aborts the whole
transaction with SQLSTATE :data:`REFUSED` and ``reason`` as its message.
"""

from __future__ import annotations

import psycopg

__all__ = ["REFUSED", "refusal", "refuse"]

REFUSED = "SG001"  # the SQLSTATE sessiongraph_refuse raises


def refuse(reason: str) -> str:
    """The SQL expression that aborts the transaction, naming ``reason`` (a plain word)."""
    if not reason.replace("_", "").isalnum():
        raise ValueError(f"a refusal reason is a plain word, not {reason!r}")
    return f"sessiongraph_refuse('{reason}')"


def refusal(exc: BaseException) -> str | None:
    """The reason a statement refused with (:func:`refuse`), or None for any other error."""
    if isinstance(exc, psycopg.Error) and exc.sqlstate == REFUSED:
        return exc.diag.message_primary
    return None
