"""Pure pieces of the HTTP layer and its runtime helpers: cursors, auth mode, error map."""

from __future__ import annotations

import inspect

import psycopg
import pytest

import runtime.errors as errors_module
from api.auth import is_loopback, may_run_open
from api.errors import status_for
from api.routes.sessions import parse_metadata_filter
from runtime import Settings
from runtime.db import check_limit, decode_cursor, encode_cursor, position, text, timestamp
from runtime.errors import InvalidInput, SessiongraphError


class TestCursors:
    def test_round_trip(self) -> None:
        """A cursor decodes to the position it was made from."""
        cursor = encode_cursor("sessions", {"t": "2026-01-01T00:00:00+00:00", "o": "a", "s": "x"})
        assert decode_cursor("sessions", cursor, {"t": timestamp, "o": text, "s": text}) == {
            "t": timestamp("2026-01-01T00:00:00+00:00"),
            "o": "a",
            "s": "x",
        }

    def test_no_cursor_is_the_first_page(self) -> None:
        """No cursor (or an empty one) means the first page."""
        assert decode_cursor("agents", None, {"id": text}) is None
        assert decode_cursor("agents", "", {"id": text}) is None

    @pytest.mark.parametrize(
        "cursor",
        [
            "garbage!!",
            "e30",  # {}
            encode_cursor("agents", {"id": "a"}),  # another list's cursor
            encode_cursor("messages:asc", {"i": -1}),
            encode_cursor("messages:asc", {"i": "3"}),
            encode_cursor("messages:asc", {"i": True}),
        ],
    )
    def test_bad_cursors_are_invalid_input(self, cursor: str) -> None:
        """Tampered, foreign or malformed cursors are InvalidInput, never a crash."""
        with pytest.raises(InvalidInput):
            decode_cursor("messages:asc", cursor, {"i": position})

    def test_bad_timestamp_is_invalid_input(self) -> None:
        """A cursor whose timestamp does not parse is InvalidInput (not a database error)."""
        cursor = encode_cursor("sessions", {"t": "yesterday", "o": "a", "s": "b"})
        with pytest.raises(InvalidInput):
            decode_cursor("sessions", cursor, {"t": timestamp, "o": text, "s": text})

    def test_limits(self) -> None:
        """Page sizes run 1..500, 50 by default."""
        assert check_limit(None) == 50 and check_limit(500) == 500
        for bad in (0, 501, -3):
            with pytest.raises(InvalidInput):
                check_limit(bad)


class TestAuthMode:
    @pytest.mark.parametrize("host", ["127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.2"])
    def test_loopback_hosts(self, host: str) -> None:
        """Loopback addresses may serve without keys."""
        assert is_loopback(host)
        assert may_run_open(Settings(host=host))

    @pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "example.com"])
    def test_public_hosts_need_allow_open(self, host: str) -> None:
        """Any other address serves open only when told to."""
        assert not may_run_open(Settings(host=host))
        assert may_run_open(Settings(host=host, allow_open=True))


class TestErrorMap:
    def test_unreachable_database_errors_are_database_unavailable(self) -> None:
        """Connection failures, shutdowns, sessions the server ended for a transaction left
        idle or open past its bound, and pool timeouts are 503s; SQL errors are not."""
        from psycopg_pool import PoolTimeout

        from runtime.db import database_error
        from runtime.errors import DatabaseUnavailable

        for exc in (
            psycopg.OperationalError("connection refused"),
            psycopg.errors.AdminShutdown("terminating connection"),
            psycopg.errors.ReadOnlySqlTransaction("read-only"),
            psycopg.InterfaceError("the connection is closed"),
            psycopg.errors.IdleInTransactionSessionTimeout("idle-in-transaction timeout"),
            psycopg.errors.TransactionTimeout("transaction timeout"),
            PoolTimeout("couldn't get a connection after 3.00 sec"),
        ):
            found = database_error(exc)
            assert isinstance(found, DatabaseUnavailable), exc
            assert found.details["retry_after"] > 0 and str(exc) not in found.message
        for exc in (
            psycopg.errors.SerializationFailure("retry"),
            psycopg.errors.UniqueViolation("duplicate"),
            psycopg.errors.QueryCanceled("statement timeout"),
            ValueError("x"),
        ):
            assert database_error(exc) is None, exc

    def test_every_runtime_error_has_a_status_below_500_or_is_a_server_fault(self) -> None:
        """Each error class maps to a deliberate status; only server faults are 5xx."""
        classes = [
            c
            for _, c in inspect.getmembers(errors_module, inspect.isclass)
            if issubclass(c, SessiongraphError) and c is not SessiongraphError
        ]
        statuses = {c.__name__: status_for(c("x")) for c in classes}
        assert statuses["PayloadTooLarge"] == 413
        assert statuses["InvalidInput"] == 422
        assert statuses["Unauthenticated"] == 401
        assert statuses["PermissionDenied"] == 403
        assert statuses["SessionExpired"] == 404
        assert statuses["SessionBusy"] == statuses["SessionInactive"] == 409
        assert statuses["ModelUnavailable"] == 503
        assert statuses["ModelRateLimited"] == 429
        assert statuses["ModelRejected"] == statuses["ModelBadResponse"] == 502
        assert statuses["AwaitingApproval"] == statuses["NothingToResume"] == 409
        server_faults = {name for name, status in statuses.items() if status >= 500}
        assert statuses["DatabaseUnavailable"] == 503
        assert server_faults == {
            "DatabaseUnavailable",
            "ModelUnavailable",
            "ModelRejected",
            "ModelBadResponse",
            "TurnFailed",
            "ConfigError",
        }
        assert statuses["BudgetExceeded"] == 422


class TestMetadataFilter:
    def test_pairs(self) -> None:
        """`key:value` filters split on the first colon (values may hold colons)."""
        assert parse_metadata_filter(["domain:a.com", "url:https://x"]) == {
            "domain": "a.com",
            "url": "https://x",
        }
        assert parse_metadata_filter(None) is None

    @pytest.mark.parametrize("bad", ["nocolon", ":value"])
    def test_malformed(self, bad: str) -> None:
        """A filter without a key is InvalidInput."""
        with pytest.raises(InvalidInput):
            parse_metadata_filter([bad])


class TestCorsSetting:
    @pytest.mark.parametrize(
        ("raw", "parsed"),
        [
            ("*", ["*"]),
            ('["https://a"]', ["https://a"]),
            ("https://a, https://b", ["https://a", "https://b"]),
        ],
    )
    def test_forms(self, raw: str, parsed: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
        """CORS origins read as JSON, a comma-separated list, or `*`."""
        monkeypatch.setenv("SESSIONGRAPH_CORS_ORIGINS", raw)
        assert Settings().cors_origins == parsed
