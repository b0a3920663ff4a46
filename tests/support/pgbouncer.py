"""A real pgbouncer (Debian's package) in front of a test Postgres.

:func:`running_pgbouncer` starts ``pgbouncer`` on a free loopback port with a wildcard
database entry (every database of the server, by the same name), trust authentication for
the server's user (listed in its ``auth_file``) and the pool mode asked for; it yields a
:class:`Pgbouncer` that turns a direct URL into the same database through the pooler.
pgbouncer refuses to run as root: as root it drops to the embedded Postgres's system user
(``pgserver``), which can also reach that server's socket.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.support.processes import free_port


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


__all__ = ["PGBOUNCER", "Pgbouncer", "run_as", "running_pgbouncer"]

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
READY_TIMEOUT = 30.0


def run_as() -> str:
    """The unprivileged user the servers run as when the tests run as root: the embedded
    Postgres's (it exists once that server has started as root), else ``nobody``."""
    return "pgserver" if _user_exists("pgserver") else "nobody"


@dataclass
class Pgbouncer:
    """A running pgbouncer and the way to reach a database through it."""

    port: int
    mode: str
    log_path: Path

    def route(self, direct_url: str) -> str:
        """The URL of ``direct_url``'s database through this pooler."""
        params = conninfo_to_dict(direct_url)
        return make_conninfo(
            "",
            host="127.0.0.1",
            port=str(self.port),
            dbname=params.get("dbname", "postgres"),
            user=params.get("user", "postgres"),
            password=params.get("password") or None,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _config(server: dict[str, str], port: int, mode: str, folder: Path) -> str:
    host = server.get("host") or "/tmp"
    target = f"host={host} port={server.get('port') or 5432}"
    lines = [
        "[databases]",
        f"* = {target}",
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        f"listen_port = {port}",
        "unix_socket_dir =",
        f"pool_mode = {mode}",
        "auth_type = trust",
        f"auth_file = {folder / 'userlist.txt'}",
        f"logfile = {folder / 'pgbouncer.log'}",
        f"pidfile = {folder / 'pgbouncer.pid'}",
        "max_client_conn = 1000",
        "default_pool_size = 40",
        "ignore_startup_parameters = extra_float_digits",
    ]
    if os.geteuid() == 0:
        lines.append(f"user = {run_as()}")
    return "\n".join(lines) + "\n"


def _wait_ready(port: int, user: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None and not _pid_alive(log_path.parent / "pgbouncer.pid"):
            break
        try:
            url = make_conninfo("", host="127.0.0.1", port=str(port), dbname="postgres", user=user)
            with psycopg.connect(url, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.Error as exc:
            last = exc
            time.sleep(0.1)
    log = log_path.read_text(errors="replace") if log_path.exists() else ""
    raise AssertionError(f"pgbouncer on :{port} not ready ({last!r}):\n{log}")


def _pid_alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text().strip()), 0)
        return True
    except (OSError, ValueError):
        return False


@contextmanager
def running_pgbouncer(
    server_url: str, mode: Literal["transaction", "session"] = "transaction"
) -> Iterator[Pgbouncer]:
    """pgbouncer in ``mode`` in front of ``server_url``'s server; stopped on exit."""
    server = conninfo_to_dict(server_url)
    user = str(server.get("user") or "postgres")
    folder = Path(tempfile.mkdtemp(prefix="sessiongraph-pgbouncer-"))
    port = free_port()
    (folder / "userlist.txt").write_text(f'"{user}" ""\n')
    config = folder / "pgbouncer.ini"
    config.write_text(_config({k: str(v) for k, v in server.items()}, port, mode, folder))
    if os.geteuid() == 0:
        account = pwd.getpwnam(run_as())
        for path in (folder, *folder.iterdir()):
            os.chown(path, account.pw_uid, account.pw_gid)
    log_path = folder / "pgbouncer.log"
    proc = subprocess.Popen(
        [PGBOUNCER, str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_ready(port, user, proc, log_path)
        yield Pgbouncer(port=port, mode=mode, log_path=log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)
