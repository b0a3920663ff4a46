"""Start-up against real Postgres: racing migrations and the multi-worker embedded server.

Every test here starts real processes: ``sessiongraph migrate`` four times at once on a
brand-new database, and ``sessiongraph serve --workers 2`` on the embedded Postgres.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest

from runtime.db import SCHEMA_VERSION
from tests.support.processes import clean_env, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 4
ROUNDS = 2
MIGRATE_TIMEOUT = 120.0
READY_TIMEOUT = 60.0
EXIT_TIMEOUT = 60.0

EXPECTED_TABLES = {
    "sessions",
    "agents",
    "checkpoints",
    "checkpoint_blobs",
    "checkpoint_writes",
    "checkpoint_migrations",
    "sessiongraph_migrations",
}

# Imports the CLI first (the slow part), reports ready, then waits for the go file so that
# every process reaches `migrate` at the same moment.
_BARRIER = """
import os, sys, time
from api.cli import main
open(sys.argv[1], "w").close()
deadline = time.monotonic() + 60
while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:
    time.sleep(0.002)
sys.exit(main(["migrate"]))
"""


def _finish(procs: list[subprocess.Popen[str]]) -> list[tuple[int, str, str]]:
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=MIGRATE_TIMEOUT)
            results.append((proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def _launch_back_to_back(
    url: str, tmp_path: Path, count: int = PROCESSES
) -> list[tuple[int, str, str]]:
    env = clean_env(DATABASE_URL=url)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "api.cli", "migrate"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    return _finish(procs)


def _launch_with_barrier(url: str, tmp_path: Path) -> list[tuple[int, str, str]]:
    env = clean_env(DATABASE_URL=url)
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{i}" for i in range(PROCESSES)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _BARRIER, str(ready[i]), str(go)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(PROCESSES)
    ]
    deadline = time.monotonic() + 60
    while not all(r.exists() for r in ready):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            break
        time.sleep(0.01)
    go.touch()
    return _finish(procs)


def _check_schema(url: str) -> None:
    with psycopg.connect(url) as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchall()
        }
        assert EXPECTED_TABLES <= tables, f"missing tables: {EXPECTED_TABLES - tables}"

        versions = [r[0] for r in conn.execute("SELECT v FROM sessiongraph_migrations ORDER BY v")]
        assert versions == list(range(SCHEMA_VERSION + 1))

        from langgraph.checkpoint.postgres.base import MIGRATIONS as SAVER_MIGRATIONS

        saver_versions = [
            r[0] for r in conn.execute("SELECT v FROM checkpoint_migrations ORDER BY v")
        ]
        assert saver_versions == list(range(len(SAVER_MIGRATIONS)))

        # The default agent was ensured by all four, and exists once.
        (defaults,) = conn.execute(
            "SELECT count(*) FROM agents WHERE agent_id = 'default'"
        ).fetchone() or (0,)
        assert defaults == 1

        # No index left invalid by a CREATE INDEX CONCURRENTLY that lost a race.
        invalid = conn.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE NOT i.indisvalid"
        ).fetchall()
        assert invalid == []


class TestConcurrentMigrate:
    """Four `sessiongraph migrate` processes racing on one empty database."""

    @pytest.mark.timeout(300)
    @pytest.mark.parametrize("round_", range(ROUNDS))
    @pytest.mark.parametrize("launch", ["back_to_back", "barrier"])
    def test_four_processes_migrate_an_empty_database(
        self, fresh_database: str, tmp_path: Path, launch: str, round_: int
    ) -> None:
        """All four exit 0 and report a current schema; every migration is applied once."""
        starter = _launch_back_to_back if launch == "back_to_back" else _launch_with_barrier
        results = starter(fresh_database, tmp_path)
        for code, out, err in results:
            assert code == 0, f"migrate exited {code}\nstdout:\n{out}\nstderr:\n{err}"
            assert "schema is current" in out, f"stdout:\n{out}\nstderr:\n{err}"
        _check_schema(fresh_database)

    @pytest.mark.timeout(120)
    def test_migrate_again_is_a_no_op(self, fresh_database: str, tmp_path: Path) -> None:
        """A second migrate on a migrated database succeeds and applies nothing twice."""
        for _ in range(2):
            [(code, out, err)] = _launch_back_to_back(fresh_database, tmp_path, count=1)
            assert code == 0, f"stdout:\n{out}\nstderr:\n{err}"
            assert "schema is current" in out
        _check_schema(fresh_database)


def _postgres_processes(pgdata: Path) -> list[psutil.Process]:
    """Live (non-zombie) postgres processes whose command line names ``pgdata``."""
    found = []
    for proc in psutil.process_iter(attrs=("name", "cmdline", "status")):
        info = proc.info
        cmdline = info.get("cmdline") or []
        if info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        if any(str(pgdata) in part for part in cmdline) and "postgres" in (info.get("name") or ""):
            found.append(proc)
    return found


def _pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class TestServeEmbedded:
    """`sessiongraph serve --workers 2` on the embedded Postgres."""

    @pytest.mark.timeout(180)
    def test_two_workers_come_up_and_stop_their_postgres(self, tmp_path: Path) -> None:
        """/readyz answers 200; after SIGINT the server exits and no postgres is left over."""
        data_dir = tmp_path / "data"
        pgdata = (data_dir / "pgdata").resolve()
        port = free_port()
        log_path = tmp_path / "serve.log"
        env = clean_env(
            SESSIONGRAPH_DATA_DIR=str(data_dir), SESSIONGRAPH_SWEEP_INTERVAL_SECONDS="0"
        )
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "api.cli",
                    "serve",
                    "--workers",
                    "2",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        postmaster_pid: int | None = None
        try:
            deadline = time.monotonic() + READY_TIMEOUT
            status = None
            while time.monotonic() < deadline:
                assert proc.poll() is None, f"serve exited early:\n{log_path.read_text()}"
                try:
                    status = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code
                except httpx.HTTPError:
                    status = None
                if status == 200:
                    break
                time.sleep(0.25)
            assert status == 200, f"/readyz never answered 200:\n{log_path.read_text()}"
            body = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()
            assert body == {"status": "ready", "schema_version": SCHEMA_VERSION}

            pid_file = pgdata / "postmaster.pid"
            assert pid_file.exists(), "the embedded Postgres is not in the data dir"
            postmaster_pid = int(pid_file.read_text().splitlines()[0])
            assert _pid_alive(postmaster_pid)

            proc.send_signal(signal.SIGINT)
            try:
                code = proc.wait(timeout=EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                pytest.fail(f"serve did not exit after SIGINT:\n{log_path.read_text()}")
            assert code == 0, f"serve exited {code}:\n{log_path.read_text()}"

            # pg_ctl stop -w has returned by the time serve exits; allow the OS a moment.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (
                _pid_alive(postmaster_pid) or _postgres_processes(pgdata)
            ):
                time.sleep(0.2)
            assert not _pid_alive(postmaster_pid), "the embedded Postgres is still running"
            assert _postgres_processes(pgdata) == []
            assert not pid_file.exists(), "postmaster.pid left behind: not a clean stop"
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            if postmaster_pid is not None and _pid_alive(postmaster_pid):
                psutil.Process(postmaster_pid).kill()
