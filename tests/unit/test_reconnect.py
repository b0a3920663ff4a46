"""Which database failures a read may run again after (no database needed)."""

from __future__ import annotations

import psycopg
from psycopg_pool import PoolClosed, PoolTimeout

from runtime.errors import DatabaseUnavailable
from runtime.reconnect import connection_lost


def _with_state(sqlstate: str) -> psycopg.Error:
    """The error psycopg raises for a server's ``sqlstate``."""
    return psycopg.errors.lookup(sqlstate)("x")


class TestConnectionLost:
    def test_a_closed_or_reset_connection_is_lost(self) -> None:
        """No SQLSTATE (the socket closed), 08 connection errors, 57P shutdowns: lost."""
        assert connection_lost(psycopg.OperationalError("server closed the connection"))
        assert connection_lost(psycopg.InterfaceError("the connection is closed"))
        assert connection_lost(_with_state("08006"))
        assert connection_lost(_with_state("57P01"))

    def test_the_pool_a_statement_or_a_stall_is_not(self) -> None:
        """A pool with nothing to lend, a cancelled statement, a stalled database: no
        second attempt (it would double the wait, or the statement's error is its own)."""
        assert not connection_lost(PoolTimeout("couldn't get a connection"))
        assert not connection_lost(PoolClosed("closed"))
        assert not connection_lost(_with_state("57014"))  # query_canceled
        assert not connection_lost(DatabaseUnavailable())
        assert not connection_lost(ValueError("x"))
