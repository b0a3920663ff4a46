"""Which database failures mean "Postgres is unreachable right now" (a 503, not a 500).

A connection refused or dropped, a server shutting down or still starting, a primary that
is gone while a standby is promoted, a pool with no connection to lend in time, a session the
server ended because its transaction outlived the bound a fenced write sets (its process was
paused inside it): the request did nothing and the same request succeeds once the database is
back. Everything else (a bad statement, a constraint) stays the caller's or the server's own
error.
"""

from __future__ import annotations

import psycopg

from runtime.errors import DatabaseUnavailable

__all__ = ["database_error"]

# SQLSTATE prefixes of an unreachable database: 08 connection exception, 57P operator
# intervention (admin / crash shutdown, cannot connect now; not 57014, a cancelled query),
# 53 insufficient resources (too many connections).
_UNAVAILABLE_STATES = ("08", "57P", "53")
# The server ended the session: 25P03 its transaction sat idle, 25P04 stayed open, past the
# bound set on it (``runtime.sessions.sql.FENCE``); the transaction rolled back.
_ENDED_STATES = ("25P03", "25P04")


def database_error(exc: BaseException) -> DatabaseUnavailable | None:
    """The :class:`DatabaseUnavailable` that ``exc`` amounts to, or None if it is not one.

    The message never quotes the driver's (which can name hosts); the cause stays in logs.
    """
    if isinstance(exc, DatabaseUnavailable):
        return exc
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        # Still connected to a node that was demoted to a standby.
        return DatabaseUnavailable()
    if isinstance(exc, psycopg.InterfaceError):  # the connection is closed
        return DatabaseUnavailable()
    if isinstance(exc, psycopg.Error) and exc.sqlstate in _ENDED_STATES:
        return DatabaseUnavailable()
    if isinstance(exc, psycopg.OperationalError):  # pool timeouts and closed pools too
        sqlstate = exc.sqlstate
        if sqlstate is None or sqlstate.startswith(_UNAVAILABLE_STATES):
            return DatabaseUnavailable()
    return None
