"""Clean shutdown of a real ``sessiongraph serve`` on the embedded Postgres.

SIGTERM to the whole process group (as systemd sends it) during a streamed turn: the
server exits 0 and no Postgres is left. A server killed with SIGKILL leaves its Postgres
running: the next ``serve`` on the folder adopts it (one postmaster, never two) and stops
it when it exits.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.processes import ServeProcess, clean_env, start_serve

pytestmark = pytest.mark.slow

EXIT_TIMEOUT = 60.0
SLOW_MODEL = {"provider": "offline", "name": "deterministic", "params": {"delay_seconds": 1.5}}


def postmasters(pgdata: Path) -> list[psutil.Process]:
    """The postgres processes started on ``pgdata`` (only a postmaster names its folder)."""
    found = []
    for proc in psutil.process_iter(attrs=("name", "cmdline", "status")):
        cmdline = proc.info.get("cmdline") or []
        if proc.info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        if any(str(pgdata) in part for part in cmdline) and "postgres" in (
            proc.info.get("name") or ""
        ):
            found.append(proc)
    return found


def wait_no_postmaster(pgdata: Path, timeout: float = 10.0) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while (left := postmasters(pgdata)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def serve(tmp_path: Path, name: str, data_dir: Path, **env: str) -> ServeProcess:
    server = start_serve(
        tmp_path / f"{name}.log",
        clean_env(
            SESSIONGRAPH_DATA_DIR=str(data_dir), SESSIONGRAPH_SWEEP_INTERVAL_SECONDS="5", **env
        ),
    )
    server.wait_ready()
    return server


def kill_all(server: ServeProcess, pgdata: Path) -> None:
    if server.proc.poll() is None:
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
    for proc in postmasters(pgdata):
        proc.kill()


class TestSigterm:
    @pytest.mark.timeout(180)
    @pytest.mark.parametrize("workers", ["1", "2"])
    def test_sigterm_to_the_group_mid_stream_exits_0_and_stops_postgres(
        self, tmp_path: Path, workers: str
    ) -> None:
        """A streamed turn in flight completes; serve exits 0; no postmaster is left."""
        data_dir = tmp_path / "data"
        pgdata = (data_dir / "pgdata").resolve()
        server = serve(tmp_path, "serve", data_dir, SESSIONGRAPH_WORKERS=workers)
        try:
            created = httpx.post(
                f"{server.url}/v1/agents", json={"id": "slow", "name": "s", "model": SLOW_MODEL}
            )
            assert created.status_code == 201, created.text
            assert len(postmasters(pgdata)) == 1
            events: list[str] = []
            started = threading.Event()

            def stream() -> None:
                with httpx.stream(
                    "POST",
                    f"{server.url}/v1/sessions/s1/messages",
                    json={"content": "hello", "agent_id": "slow"},
                    headers={"Accept": "text/event-stream"},
                    timeout=30,
                ) as response:
                    started.set()
                    for line in response.iter_lines():
                        if line.startswith("event:"):
                            events.append(line.split(":", 1)[1].strip())

            reader = threading.Thread(target=stream)
            reader.start()
            assert started.wait(20), server.log()
            os.killpg(server.proc.pid, signal.SIGTERM)
            code = server.proc.wait(timeout=EXIT_TIMEOUT)
            reader.join(timeout=30)
            assert code == 0, server.log()
            assert events[-1:] == ["done"], (events, server.log())
            assert wait_no_postmaster(pgdata) == [], server.log()
        finally:
            kill_all(server, pgdata)


class TestOrphanedPostgres:
    @pytest.mark.timeout(180)
    def test_after_sigkill_a_new_serve_adopts_the_postgres_and_stops_it(
        self, tmp_path: Path
    ) -> None:
        """SIGKILL leaves a postmaster; the next serve runs on it alone and stops it on exit."""
        data_dir = tmp_path / "data"
        pgdata = (data_dir / "pgdata").resolve()
        first = serve(tmp_path, "first", data_dir)
        second: ServeProcess | None = None
        try:
            os.killpg(first.proc.pid, signal.SIGKILL)
            first.proc.wait(timeout=EXIT_TIMEOUT)
            assert len(postmasters(pgdata)) == 1, "the killed server's Postgres is gone"
            second = serve(tmp_path, "second", data_dir)
            assert len(postmasters(pgdata)) == 1
            assert httpx.get(f"{second.url}/readyz").status_code == 200
            os.killpg(second.proc.pid, signal.SIGTERM)
            assert second.proc.wait(timeout=EXIT_TIMEOUT) == 0, second.log()
            assert wait_no_postmaster(pgdata) == [], second.log()
        finally:
            kill_all(first, pgdata)
            if second is not None:
                kill_all(second, pgdata)
