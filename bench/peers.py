"""The peers: ``langgraph dev`` and Aegra, each installed from PyPI into a throwaway venv.

Each environment is built with ``uv venv DIR && uv pip install --python DIR/bin/python ...``
in ``bench/.envs/<name>`` (gitignored) and reused while its package list is unchanged
(``--refresh-peers`` rebuilds it). Each peer serves :mod:`bench.peer_graph` as graph
``agent`` from a working folder of its own (a copy of the graph and a ``langgraph.json`` /
``aegra.json``), offline: no analytics, no version check, no browser, no tracing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.server import (
    ServerProcess,
    add_uuid_ossp_shim,
    create_database,
    free_port,
    wait_http,
)

__all__ = ["PEERS", "Peer", "RunningPeer", "ensure_env", "start_peer"]

BENCH_DIR = Path(__file__).resolve().parent
ENVS_DIR = BENCH_DIR / ".envs"

OFFLINE_ENV = {
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    "LANGGRAPH_NO_VERSION_CHECK": "true",
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
    "DO_NOT_TRACK": "1",
}


@dataclass(frozen=True)
class Peer:
    """A peer server: what to install, and how it is described in the report."""

    name: str
    packages: tuple[str, ...]
    description: str
    assistant_id: str = "agent"


PEERS: dict[str, Peer] = {
    "langgraph-dev": Peer(
        name="langgraph-dev",
        packages=("langgraph-cli[inmem]", "langgraph"),
        description="`langgraph dev` (langgraph-cli[inmem], in-memory runtime)",
    ),
    "aegra": Peer(
        name="aegra",
        # aegra-api 0.6 uses SQLAlchemy's asyncio engine but does not pull in greenlet,
        # which SQLAlchemy 2.1 no longer installs by default.
        packages=("aegra-api", "aegra-cli", "langgraph", "sqlalchemy[asyncio]"),
        description="Aegra (`aegra serve`, Postgres)",
    ),
}


@dataclass
class RunningPeer:
    """A started peer: its URL, process and installed versions."""

    peer: Peer
    url: str
    server: ServerProcess
    versions: dict[str, str] = field(default_factory=dict)
    start_s: float = 0.0


def _installed(python: Path) -> dict[str, str]:
    out = subprocess.run(
        ["uv", "pip", "list", "--python", str(python), "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {p["name"]: p["version"] for p in json.loads(out)}


def ensure_env(peer: Peer, *, refresh: bool, log: Callable[[str], None]) -> Path:
    """The peer's venv, created and installed if missing, stale or ``refresh``ed."""
    env_dir = ENVS_DIR / peer.name
    marker = env_dir / ".bench-packages"
    wanted = "\n".join(peer.packages)
    if not refresh and marker.exists() and marker.read_text() == wanted:
        return env_dir
    if env_dir.exists():
        shutil.rmtree(env_dir)
    ENVS_DIR.mkdir(parents=True, exist_ok=True)
    log(f"installing {peer.name} into {env_dir}: {' '.join(peer.packages)}")
    subprocess.run(["uv", "venv", "-q", "--python", "3.11", str(env_dir)], check=True)
    subprocess.run(
        ["uv", "pip", "install", "-q", "--python", str(env_dir / "bin" / "python"), *peer.packages],
        check=True,
    )
    marker.write_text(wanted)
    return env_dir


def _workdir(peer: Peer, scratch: Path, config_name: str) -> Path:
    work = scratch / peer.name
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(BENCH_DIR / "peer_graph.py", work / "peer_graph.py")
    config = {"dependencies": ["."], "graphs": {"agent": "./peer_graph.py:graph"}}
    (work / config_name).write_text(json.dumps(config, indent=2))
    return work


def start_peer(
    peer: Peer,
    *,
    run_dir: Path,
    scratch: Path,
    database_url: str,
    refresh: bool,
    log: Callable[[str], None],
) -> RunningPeer:
    """Install (or reuse) the peer's environment, start it, and wait until it serves.

    Its working folder (graph copy, config) goes in ``scratch``, its log in ``run_dir``.
    """
    import time

    env_dir = ensure_env(peer, refresh=refresh, log=log)
    python = env_dir / "bin" / "python"
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SESSIONGRAPH_", "VIRTUAL_ENV", "UV_", "LANGSMITH_", "LANGCHAIN_"))
        and k not in ("DATABASE_URL", "PYTHONPATH")
    }
    env.update(OFFLINE_ENV)
    env["PATH"] = f"{env_dir / 'bin'}:{env.get('PATH', '')}"
    if peer.name == "langgraph-dev":
        work = _workdir(peer, scratch, "langgraph.json")
        argv = [
            str(env_dir / "bin" / "langgraph"),
            "dev",
            "--no-browser",
            "--no-reload",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--config",
            "langgraph.json",
        ]
        ready = f"http://127.0.0.1:{port}/ok"
    elif peer.name == "aegra":
        work = _workdir(peer, scratch, "aegra.json")
        aegra_db = create_database(database_url, "aegra_bench")
        add_uuid_ossp_shim(aegra_db, scratch / "ext-shim")
        env.update(
            {
                "DATABASE_URL": aegra_db,
                "AUTH_TYPE": "noop",
                "AEGRA_CONFIG": str(work / "aegra.json"),
                "OTEL_TARGETS": "",
                "LOG_LEVEL": "WARNING",
                "ENV_MODE": "LOCAL",
            }
        )
        argv = [
            str(env_dir / "bin" / "aegra"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "-c",
            str(work / "aegra.json"),
        ]
        ready = f"http://127.0.0.1:{port}/health"
    else:
        raise ValueError(f"unknown peer {peer.name!r}; known: {', '.join(PEERS)}")
    started = time.monotonic()
    server = ServerProcess(argv, env=env, log_path=run_dir / f"{peer.name}.log", cwd=work)
    try:
        wait_http(ready, timeout=180, process=server.process)
    except Exception as exc:
        server.stop()
        raise RuntimeError(f"{peer.name} did not start: {exc}\n{server.tail()}") from exc
    return RunningPeer(
        peer=peer,
        url=f"http://127.0.0.1:{port}",
        server=server,
        versions=_installed(python),
        start_s=round(time.monotonic() - started, 1),
    )
