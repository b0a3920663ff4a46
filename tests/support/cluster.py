"""Debian's PostgreSQL for failover and chaos tests: a primary and its synchronous streaming
standby, or a single server to crash and restart.

:func:`streaming_pair` runs ``initdb`` (password authentication, ``scram-sha-256``), starts
the primary on a free loopback port, clones the standby with ``pg_basebackup -R``, starts it
and then sets ``synchronous_standby_names = '*'`` on the primary; both are stopped and
removed on exit.
PostgreSQL refuses to run as root: as root the servers run as the embedded Postgres's system
user (``pgserver``), which owns their folders.
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

import psycopg
from psycopg.conninfo import make_conninfo

from tests.support.pgbouncer import run_as
from tests.support.processes import free_ports

__all__ = ["PG_BIN", "PgNode", "single_node", "streaming_pair"]

PG_BIN = Path("/usr/lib/postgresql/15/bin")


USER = "sg"
DBNAME = "sessiongraph"


def _run(args: list[str], env: dict[str, str] | None = None) -> str:
    user = run_as() if os.geteuid() == 0 else None
    # A file, not a pipe: `pg_ctl start` leaves the server holding its output open.
    with tempfile.TemporaryFile() as out:
        proc = subprocess.run(
            args, env=env, user=user, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, timeout=120, cwd="/",
        )  # fmt: skip
        out.seek(0)
        output = out.read().decode(errors="replace")
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{output}")
    return output


@dataclass
class PgNode:
    """One server of the pair."""

    name: str
    data: Path
    port: int
    password: str

    def url(self, dbname: str = DBNAME) -> str:
        return make_conninfo(
            "",
            host="127.0.0.1",
            port=str(self.port),
            user=USER,
            password=self.password,
            dbname=dbname,
        )

    def ctl(self, *args: str) -> str:
        log = str(self.data.parent / f"{self.name}.log")
        return _run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", log, "-w", *args])

    def start(self) -> None:
        self.ctl("start")

    def stop(self, mode: str = "fast") -> None:
        self.ctl("stop", "-m", mode)

    def promote(self) -> None:
        self.ctl("promote")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def log(self) -> str:
        path = self.data.parent / f"{self.name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


_PRIMARY_CONF = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{sockets}'
wal_level = replica
max_wal_senders = 5
hot_standby = on
synchronous_commit = on
fsync = off
full_page_writes = on
max_connections = 100
"""


def _init_primary(folder: Path, port: int, password: str) -> PgNode:
    node = PgNode("primary", folder / "primary", port, password)
    pwfile = folder / "pwfile"
    pwfile.write_text(password + "\n")
    _chown(folder, pwfile)
    _run([str(PG_BIN / "initdb"), "-D", str(node.data), "-U", USER, "--pwfile", str(pwfile),
          "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"])  # fmt: skip
    with open(node.data / "postgresql.conf", "a") as conf:
        conf.write(_PRIMARY_CONF.format(port=port, sockets=folder))
    with open(node.data / "pg_hba.conf", "a") as hba:
        hba.write("host replication all 127.0.0.1/32 scram-sha-256\n")
    return node


def _chown(*paths: Path) -> None:
    if os.geteuid() != 0:
        return
    account = pwd.getpwnam(run_as())
    for path in paths:
        os.chown(path, account.pw_uid, account.pw_gid)


@contextmanager
def _cluster_folder() -> Iterator[tuple[Path, list[PgNode]]]:
    """A folder for servers and the list of those started in it; all stopped and removed on
    exit. Debian's PostgreSQL 15 must be installed (``.ci/run`` installs it); without it the
    test fails, it is never skipped."""
    if not (PG_BIN / "initdb").exists():
        raise AssertionError(f"{PG_BIN}/initdb is missing: apt-get install -y postgresql-15")
    folder = Path(tempfile.mkdtemp(prefix="sessiongraph-cluster-"))
    _chown(folder)
    nodes: list[PgNode] = []
    try:
        yield folder, nodes
    finally:
        for node in nodes:
            if node.running():
                try:
                    node.stop("immediate")
                except AssertionError:
                    pass
        shutil.rmtree(folder, ignore_errors=True)


def _start_primary(folder: Path, port: int, password: str, nodes: list[PgNode]) -> PgNode:
    primary = _init_primary(folder, port, password)
    nodes.append(primary)
    primary.start()
    with psycopg.connect(primary.url("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {DBNAME}")
    return primary


@contextmanager
def single_node(password: str = "s3cret-Pa55") -> Iterator[PgNode]:
    """One running server with the database ``sessiongraph``, to crash and restart
    (``stop("immediate")``, ``start()``)."""
    with _cluster_folder() as (folder, nodes):
        (port,) = free_ports(1)
        yield _start_primary(folder, port, password, nodes)


@contextmanager
def streaming_pair(password: str = "s3cret-Pa55") -> Iterator[tuple[PgNode, PgNode]]:
    """A running primary and its synchronous standby, with the database ``sessiongraph``."""
    with _cluster_folder() as (folder, nodes):
        primary_port, standby_port = free_ports(2)
        primary = _start_primary(folder, primary_port, password, nodes)
        standby = PgNode("standby", folder / "standby", standby_port, password)
        env = {**os.environ, "PGPASSWORD": password}
        _run([str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary_port),
              "-U", USER, "-D", str(standby.data), "-R", "-X", "stream",
              "--checkpoint=fast"], env=env)  # fmt: skip
        with open(standby.data / "postgresql.conf", "a") as conf:
            conf.write(f"\nport = {standby_port}\n")
        nodes.append(standby)
        standby.start()
        _wait_synchronous(primary)
        yield primary, standby


def _wait_synchronous(primary: PgNode, timeout: float = 30) -> None:
    """Make the standby synchronous (only once it streams: until then every commit would
    wait for it) and wait until it is."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(primary.url("postgres"), autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
        conn.execute("SELECT pg_reload_conf()")
        while time.monotonic() < deadline:
            row = conn.execute("SELECT sync_state FROM pg_stat_replication").fetchone()
            if row and row[0] == "sync":
                return
            time.sleep(0.1)
    raise AssertionError(f"the standby never became synchronous:\n{primary.log()}")
