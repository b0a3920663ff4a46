"""The statement builders, read without a database: each rule appears by its name."""

from __future__ import annotations

import pytest

from runtime.agents import sql as agents_sql
from runtime.checkpoints import sql as checkpoints_sql
from runtime.db import check_sort, refuse
from runtime.errors import InvalidInput
from runtime.runs import sql as runs_sql
from runtime.sessions import sql as sessions_sql


class TestSessionPredicates:
    def test_lease_free_is_the_negation_of_lease_held(self) -> None:
        """Held means an unexpired token (>= now) of a live holder; free is exactly the rest."""
        alive = sessions_sql.HOLDER_ALIVE
        assert sessions_sql.LEASE_HELD == (
            f"(lease_token IS NOT NULL AND lease_expires_at >= now() AND {alive})"
        )
        assert sessions_sql.LEASE_FREE == (
            f"(lease_token IS NULL OR lease_expires_at < now() OR NOT {alive})"
        )

    def test_a_holder_is_alive_by_its_own_heartbeat_bound(self) -> None:
        """A holder is alive while its beat is within its liveness, or Postgres just started;
        a lease naming no holder relies on its expiry alone."""
        alive = sessions_sql.HOLDER_ALIVE
        assert alive.startswith("(lease_holder IS NULL OR EXISTS (SELECT 1 FROM replicas r")
        assert "pg_postmaster_start_time() + 2 * r.liveness" in alive
        assert "r.beat_at" in alive and alive.count("now()") == 1

    def test_statements_use_the_rules_by_name(self) -> None:
        """Acquire takes only a live, free session; every Session row carries busy."""
        assert sessions_sql.LIVE in sessions_sql.ACQUIRE
        assert sessions_sql.LEASE_FREE in sessions_sql.ACQUIRE
        assert f"{sessions_sql.LEASE_HELD} AS busy" in sessions_sql.SESSION_COLUMNS
        assert "lease_holder = %(holder)s" in sessions_sql.ACQUIRE
        assert "lease_holder = NULL" in sessions_sql.RELEASE
        assert "lease_holder = NULL" in sessions_sql.ABORT


class TestRunPredicates:
    def test_orphaned_and_underway_split_active_runs_by_their_holder(self) -> None:
        """A run names its holder as a session's lease does: HOLDER_ALIVE, by name, says
        whether an active run is underway or an orphan; ended runs are neither."""
        alive, active = sessions_sql.HOLDER_ALIVE, runs_sql.ACTIVE
        assert runs_sql.ORPHANED == f"({active} AND NOT {alive})"
        assert runs_sql.UNDERWAY == f"({active} AND {alive})"
        assert "lease_holder" in alive

    def test_every_is_it_still_running_check_skips_orphans(self) -> None:
        """Busy checks, waits and cancels count underway runs only; the queue skips pending
        runs of a dead holder."""
        for statement in (
            runs_sql.INFLIGHT,
            runs_sql.STILL_ACTIVE,
            runs_sql.REQUEST_CANCEL,
            runs_sql.REQUEST_CANCEL_INFLIGHT,
            runs_sql.REQUEST_CANCEL_OTHERS,
            runs_sql.REQUEST_CANCEL_AGENT,
        ):
            assert runs_sql.UNDERWAY in statement, statement
        assert sessions_sql.HOLDER_ALIVE in runs_sql.QUEUED_BEFORE

    def test_reads_flag_orphans_and_settling_is_guarded(self) -> None:
        """Every read returns whether the run is an orphan (settled before it is shown); the
        settling UPDATE fires only while the run is still one, and a list filters on the
        status it will be shown."""
        flag = f"{runs_sql.ORPHANED} AS orphaned"
        for read in (runs_sql.SELECT_RUN, runs_sql.SELECT_RUNS, runs_sql.SELECT_KEYED_RUN):
            assert flag in read, read
        assert flag in runs_sql.LIST_RUNS and runs_sql.STATUS_SEEN in runs_sql.LIST_RUNS
        assert f"AND {runs_sql.ORPHANED} RETURNING" in runs_sql.SETTLE_ORPHANS

    def test_status_changes_only_while_the_run_is_active(self) -> None:
        """The owner's status updates and its turn's commit never overwrite an end (a run
        settled as lost keeps its end, and its turn cannot commit)."""
        guard = f"AND {runs_sql.ACTIVE} RETURNING *"
        assert runs_sql.SET_STATUS.endswith(guard)
        assert guard in runs_sql.COMMIT_TURN
        # No row to mark: the commit is refused, so the turn's whole transaction rolls back.
        assert refuse(runs_sql.RUN_ENDED) in runs_sql.COMMIT_TURN
        assert refuse(sessions_sql.LEASE_LOST) in sessions_sql.RELEASE
        assert runs_sql.LOST in runs_sql.FREE_SPENT_KEY


class TestSessionSearch:
    def test_sorts_on_the_key_then_session_id(self) -> None:
        """The sort key's column orders the page, ties broken by session_id the same way."""
        query = sessions_sql.search_sql(None, "last_activity_at", descending=False)
        assert "ORDER BY last_activity_at ASC, session_id ASC" in query
        assert sessions_sql.LIVE in query

    def test_a_state_filter_narrows_the_where_clause(self) -> None:
        """Filtering on running sessions adds the lease-held rule; no state adds nothing."""
        assert sessions_sql.LEASE_HELD in sessions_sql.count_sql("running")
        assert sessions_sql.count_sql(None) != sessions_sql.count_sql("running")

    def test_update_sets_only_updatable_columns(self) -> None:
        """A new TTL moves the expiry; a column outside UPDATABLE is refused."""
        query = sessions_sql.update_sql(["ttl_seconds", "name"])
        assert "name = %(name)s, ttl_seconds = %(ttl_seconds)s" in query
        assert "expires_at = now() + make_interval" in query
        with pytest.raises(ValueError, match="not updatable"):
            sessions_sql.update_sql(["lease_token"])


class TestOtherStatements:
    def test_prune_waits_for_the_given_lease_rule(self) -> None:
        """Retention prunes only while no turn holds the lease."""
        query = checkpoints_sql.prune_sql(sessions_sql.LEASE_HELD)
        assert f"AND {sessions_sql.LEASE_HELD})" in query

    def test_agent_statements_read_sessions_through_the_rules(self) -> None:
        """Deleting an agent counts live and leased sessions with the sessions predicates."""
        assert sessions_sql.LIVE in agents_sql.SESSION_COUNTS
        assert sessions_sql.LEASE_HELD in agents_sql.SESSION_COUNTS
        assert sessions_sql.LIVE in agents_sql.AGENT_STATS

    def test_like_patterns_are_escaped(self) -> None:
        """A name filter matches % and _ literally."""
        assert agents_sql.escape_like("50%_off\\") == "50\\%\\_off\\\\"


class TestCheckSort:
    def test_unknown_key_and_order_are_invalid_input(self) -> None:
        """A sort the store cannot do is the caller's error, naming what is allowed."""
        check_sort("created_at", "desc", {"created_at"})
        with pytest.raises(InvalidInput) as caught:
            check_sort("nope", "desc", {"created_at", "name"})
        assert caught.value.details == {"field": "sort_by", "allowed": ["created_at", "name"]}
        with pytest.raises(InvalidInput, match="asc or desc"):
            check_sort("name", "up", {"name"})
