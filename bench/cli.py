"""``python -m bench``: run the workloads against sessiongraph and the peers, write the report.

One run: start a fresh embedded Postgres (a new temporary data folder), start
``sessiongraph serve --workers N`` on it as a subprocess, wait for ``/readyz``, run W1, W4,
W3, W2 (and, with ``--sessiongraph-sdk``, W1/W2 through the LangGraph SDK), W5, W6; stop it;
then start each peer in turn and run W1 and W2 on it through ``langgraph_sdk``. Results go
to ``bench/results/<date>-<commit>.json`` and ``bench/RESULTS.md``; a partial run
(``--scale`` below 1 or ``--only``) goes to ``bench/out/`` instead unless ``--out`` says where.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import report
from bench.clients import NotAvailable
from bench.cpu import CpuMeter, postmaster_pid
from bench.floor import floor_ms
from bench.peers import PEERS, start_peer
from bench.server import (
    ServerProcess,
    free_port,
    harness_postgres,
    postgres_version,
    sessiongraph_argv,
    wait_http,
)
from bench.soak import run_soak, with_recorded_soak
from bench.w7 import w7_in_flight
from bench.workloads import (
    TOOL_PROMPT,
    ClientSpec,
    turn_text,
    w1_sequential,
    w2_concurrent,
    w3_tool_turns,
    w4_storage,
    w5_memory,
    w6_sweep,
)

__all__ = ["main"]

BENCH_DIR = Path(__file__).resolve().parent
WORKLOADS = ("W1", "W1G", "W2", "W3", "W4", "W5", "W6", "W7")
# Run only when named in --only (the default run keeps its duration).
OPTIONAL = ("SOAK",)
# The project the server serves: the built-in graph plus the bench's own (W1G).
PROJECT = Path(__file__).resolve().parent / "project" / "langgraph.json"


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark sessiongraph (W1–W6) and the peers (W1, W2); write the report.",
    )
    p.add_argument("--workers", type=int, default=2, help="`serve --workers` (default 2)")
    p.add_argument("--pool-max", type=int, help="SESSIONGRAPH_POOL_MAX_SIZE for the server")
    p.add_argument("--pool-min", type=int, help="SESSIONGRAPH_POOL_MIN_SIZE for the server")
    p.add_argument(
        "--peers",
        default="langgraph-dev,aegra",
        help=f"comma-separated peers ({', '.join(PEERS)}), or 'none' (default: both)",
    )
    p.add_argument("--only", default="", help="comma-separated workloads, e.g. W1,W3")
    p.add_argument(
        "--scale", type=float, default=1.0, help="multiply every count (0.05 for a smoke run)"
    )
    p.add_argument("--concurrency", type=int, default=50, help="W2/W5/W6 concurrent clients")
    p.add_argument(
        "--client-procs",
        type=int,
        default=1,
        help="split W2's clients over this many client processes (default 1)",
    )
    p.add_argument(
        "--http",
        choices=("raw", "httpx"),
        default="raw",
        help="sessiongraph's client: a minimal asyncio HTTP/1.1 client (raw, default: "
        "~0.06 ms CPU per request) or httpx.AsyncClient (~2.5 ms per request at 50 "
        "concurrent: one process tops out near 350 requests/s)",
    )
    p.add_argument("--peer-w1-turns", type=int, default=50, help="W1 turns on a peer (50)")
    p.add_argument("--peer-w2-sessions", type=int, default=100, help="W2 sessions on a peer")
    p.add_argument("--peer-w2-turns", type=int, default=10, help="W2 turns per session, peers")
    p.add_argument("--w6-turn-fraction", type=float, default=1.0, help="W6 sessions with a turn")
    p.add_argument("--w6-ttl", type=int, default=10, help="W6 session TTL in seconds (10)")
    p.add_argument("--w7-delay", type=float, default=2.0, help="W7 model delay in seconds (2)")
    p.add_argument("--soak-seconds", type=float, default=600, help="SOAK duration (600)")
    p.add_argument("--soak-warmup", type=float, default=120, help="SOAK warm-up seconds (120)")
    p.add_argument("--soak-sample", type=float, default=10, help="SOAK sample period (10)")
    p.add_argument(
        "--sessiongraph-sdk",
        action="store_true",
        help="also run W1/W2 on sessiongraph through langgraph_sdk (/threads, /runs/wait)",
    )
    p.add_argument(
        "--sdk-assistant",
        default="default",
        help="assistant id for sessiongraph through the SDK (default: the default agent)",
    )
    p.add_argument("--refresh-peers", action="store_true", help="reinstall the peers' venvs")
    p.add_argument("--out", type=Path, help="markdown report (default bench/RESULTS.md)")
    p.add_argument("--json-dir", type=Path, help="folder for the JSON (default bench/results)")
    return p


def _n(base: int, scale: float, minimum: int) -> int:
    return max(minimum, round(base * scale))


async def _guard(name: str, fn: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Run one workload; a failure is recorded (with its reason) instead of ending the run."""
    _log(f"{name} ...")
    started = time.monotonic()
    try:
        result = await fn()
    except NotAvailable as exc:
        _log(f"{name}: not available ({exc})")
        return {"not_available": str(exc)}
    except Exception as exc:
        _log(f"{name} failed: {exc!r}")
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {exc}"}
    brief = {k: v for k, v in result.items() if not isinstance(v, list | dict) and k != "session"}
    _log(f"{name} done in {time.monotonic() - started:.1f} s: {brief}")
    return result


def _server_env(args: argparse.Namespace, database_url: str, data_dir: Path) -> dict[str, str]:
    """The server's environment: ours, minus anything that would change what is measured."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SESSIONGRAPH_")
        and k not in ("DATABASE_URL", "OPENAI_API_KEY", "VIRTUAL_ENV")
    }
    shown = {
        "SESSIONGRAPH_DATA_DIR": str(data_dir),
        "SESSIONGRAPH_DEFAULT_MODEL": "offline:deterministic",
        # The harness times the sweep itself (W6): nothing may be swept before the clock.
        "SESSIONGRAPH_SWEEP_INTERVAL_SECONDS": "0",
        "SESSIONGRAPH_CONFIG": str(PROJECT),
    }
    if args.pool_max is not None:
        shown["SESSIONGRAPH_POOL_MAX_SIZE"] = str(args.pool_max)
    if args.pool_min is not None:
        shown["SESSIONGRAPH_POOL_MIN_SIZE"] = str(args.pool_min)
    env.update(shown)
    env["SESSIONGRAPH_DATABASE_URL"] = database_url
    return env


def _turns_done(result: dict[str, Any]) -> int:
    """How many turns a workload's result says completed."""
    if "turns_ok" in result:
        return int(result["turns_ok"])
    return int(result.get("turns", 0)) - int(result.get("errors", 0))


async def _measured(
    name: str, fn: Callable[[], Awaitable[dict[str, Any]]], meter: CpuMeter | None
) -> dict[str, Any]:
    """:func:`_guard`, plus the server's CPU per turn (server tree + Postgres) when metered."""
    before = meter.read() if meter else None
    result = await _guard(name, fn)
    if meter and before and "error" not in result and "not_available" not in result:
        result.update(CpuMeter.per_turn(before, meter.read(), _turns_done(result)))
    return result


async def _warm_up(spec: ClientSpec) -> None:
    """A few concurrent turns, so each worker has compiled the agent and warmed its caches."""
    await _guard(f"warm-up {spec.agent_id}", lambda: w2_concurrent(spec, 8, 5, 8))


async def _floors(scale: float) -> dict[str, float]:
    """The floors of this run (CPU ms per in-process invoke, no checkpointer): the built-in
    graph on a plain message (W1/W2) and on a tool turn (W3), and the bench's own graph."""
    turns = _n(300, scale, 50)
    return {
        "react": await asyncio.to_thread(floor_ms, "react", turns, turn_text),
        "react_tool": await asyncio.to_thread(floor_ms, "react", turns, lambda i: TOOL_PROMPT),
        "custom": await asyncio.to_thread(floor_ms, "custom", turns, turn_text),
    }


async def _sessiongraph(
    args: argparse.Namespace,
    only: set[str],
    database_url: str,
    data_dir: Path,
    run_dir: Path,
    results: dict[str, Any],
) -> None:
    """Start ``serve``, run the workloads on it, stop it."""
    scale = args.scale
    port = free_port()
    env = _server_env(args, database_url, data_dir)
    results["settings"]["server_env"] = {
        k: v for k, v in env.items() if k.startswith("SESSIONGRAPH_") and "DATABASE_URL" not in k
    }
    argv = sessiongraph_argv(port, args.workers)
    results["settings"]["server_argv"] = " ".join(argv[1:])
    _log(f"starting: {' '.join(argv)}")
    started = time.monotonic()
    server = ServerProcess(argv, env=env, log_path=run_dir / "sessiongraph.log", cwd=run_dir)
    url = f"http://127.0.0.1:{port}"
    w = results["workloads"]
    try:
        try:
            wait_http(f"{url}/readyz", timeout=120, process=server.process)
        except Exception as exc:
            raise RuntimeError(f"sessiongraph did not start: {exc}\n{server.tail()}") from exc
        results["sessiongraph_start_s"] = round(time.monotonic() - started, 1)
        _log(f"sessiongraph ready in {results['sessiongraph_start_s']} s (pid {server.pid})")
        native = ClientSpec("native", url, http=args.http)
        http = args.http
        conc = args.concurrency
        meter = CpuMeter(server.pid, postmaster_pid(data_dir))
        # Every worker compiles each agent version and warms its caches on its first turns:
        # one-time costs that a per-turn CPU figure must not carry.
        for agent in ("default", "custom"):
            await _warm_up(ClientSpec("native", url, http=args.http, agent_id=agent))
        results["floors"] = await _floors(scale)
        _log(f"floors (CPU ms per in-process invoke): {results['floors']}")

        if "W1" in only:
            w["W1"] = await _measured(
                "W1", lambda: w1_sequential(native, _n(300, scale, 40)), meter
            )
        if "W1G" in only:
            custom = ClientSpec("native", url, http=args.http, agent_id="custom")
            w["W1G"] = await _measured(
                "W1G", lambda: w1_sequential(custom, _n(300, scale, 40)), meter
            )
        if "W4" in only:
            session = w.get("W1", {}).get("session")
            if session:
                w["W4"] = await _guard("W4", lambda: w4_storage(url, database_url, session, http))
            else:
                w["W4"] = {"error": "needs W1's session, and W1 did not complete"}
        if "W3" in only:
            w["W3"] = await _measured(
                "W3", lambda: w3_tool_turns(url, _n(100, scale, 10), http=http), meter
            )
        if "W2" in only:
            sessions = _n(100, scale, 10)
            w["W2"] = await _measured(
                "W2",
                lambda: w2_concurrent(native, sessions, 10, min(conc, sessions), args.client_procs),
                meter,
            )
        if args.sessiongraph_sdk and only & {"W1", "W2"}:
            sdk = ClientSpec("sdk", url, assistant_id=args.sdk_assistant)
            results["sessiongraph-sdk"] = await _sdk_rows(args, sdk, only, meter)
        if "W5" in only:
            w["W5"] = await _guard(
                "W5",
                lambda: w5_memory(url, server, _n(10_000, scale, 200), _n(1000, scale, 100), conc),
            )
        if "W6" in only:
            w["W6"] = await _guard(
                "W6",
                lambda: w6_sweep(
                    url,
                    database_url,
                    _n(50_000, scale, 200),
                    turn_fraction=args.w6_turn_fraction,
                    ttl_seconds=args.w6_ttl,
                    concurrency=conc,
                    log=_log,
                    http=http,
                ),
            )
        if "W7" in only:
            n = _n(1000, scale, 50)
            w["W7"] = await _guard("W7", lambda: w7_in_flight(url, server.pid, n, args.w7_delay))
    finally:
        server.stop()
        _log("sessiongraph stopped")


async def _sdk_rows(
    args: argparse.Namespace, spec: ClientSpec, only: set[str], meter: CpuMeter | None = None
) -> dict[str, Any]:
    """W1 and W2 through ``langgraph_sdk`` (peers, and sessiongraph's compatible surface)."""
    scale = args.scale
    rows: dict[str, Any] = {}
    if "W1" in only:
        rows["W1"] = await _measured(
            f"W1 sdk {spec.url}",
            lambda: w1_sequential(spec, _n(args.peer_w1_turns, scale, 20)),
            meter,
        )
        if "not_available" in rows["W1"]:
            return {"not_available": rows["W1"]["not_available"]}
    if "W2" in only:
        sessions = _n(args.peer_w2_sessions, scale, 10)
        rows["W2"] = await _measured(
            f"W2 sdk {spec.url}",
            lambda: w2_concurrent(
                spec, sessions, args.peer_w2_turns, min(args.concurrency, sessions), 1
            ),
            meter,
        )
        if "not_available" in rows["W2"]:
            return {"not_available": rows["W2"]["not_available"]}
    return rows


def _ratios(results: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Each sessiongraph figure as “× faster” than each peer."""
    w = results["workloads"]
    out: dict[str, dict[str, float | None]] = {}

    def fig(data: Any, workload: str, key: str) -> float | None:
        part = data.get(workload) if isinstance(data, dict) else None
        value = part.get(key) if isinstance(part, dict) else None
        return float(value) if isinstance(value, int | float) and value > 0 else None

    for peer, data in results.get("peers", {}).items():
        r: dict[str, float | None] = {}
        for key, workload, fkey, higher_better in (
            ("w1_p50", "W1", "p50_ms", False),
            ("w2_turns_per_s", "W2", "turns_per_s", True),
            ("w2_p50", "W2", "p50_ms", False),
        ):
            ours, theirs = fig(w, workload, fkey), fig(data, workload, fkey)
            if ours is None or theirs is None:
                r[key] = None
            else:
                r[key] = round(ours / theirs if higher_better else theirs / ours, 1)
        out[peer] = r
    return out


async def _run(args: argparse.Namespace) -> int:
    only = {x.strip().upper() for x in args.only.split(",") if x.strip()} or set(WORKLOADS)
    unknown = only - set(WORKLOADS) - set(OPTIONAL)
    if unknown:
        raise SystemExit(f"unknown workloads: {', '.join(sorted(unknown))}")
    notes: list[str] = []
    if "W4" in only and "W1" not in only:
        only.add("W1")
        notes.append("W4 measures W1's session, so W1 was run too.")
    peers = [] if args.peers.strip().lower() in ("", "none") else args.peers.split(",")
    for name in peers:
        if name not in PEERS:
            raise SystemExit(f"unknown peer {name!r}; known: {', '.join(PEERS)}")
    partial = args.scale != 1 or bool(args.only)
    stamp = dt.datetime.now(dt.UTC)
    commit = report.commit()
    run_name = f"{stamp:%Y%m%d-%H%M%S}-{commit['short'][:7]}"
    run_dir = BENCH_DIR / "out" / run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    from runtime.settings import Settings

    defaults = Settings.model_fields
    results: dict[str, Any] = {
        "date": stamp.isoformat(timespec="seconds"),
        "commit": commit,
        "command": "uv run python -m bench " + shlex.join(sys.argv[1:]),
        "machine": report.machine(),
        "settings": {
            "workers": args.workers,
            "pool_min_size": args.pool_min or defaults["pool_min_size"].default,
            "pool_max_size": args.pool_max or defaults["pool_max_size"].default,
            "scale": args.scale,
            "only": sorted(only) if args.only else [],
            "server_env": {},
            "concurrency": args.concurrency,
            "client_procs": args.client_procs,
            "peers": peers,
            "http": args.http,
            "client": (
                "bench.rawhttp (a minimal keep-alive asyncio HTTP/1.1 client)"
                if args.http == "raw"
                else "one keep-alive httpx.AsyncClient"
            )
            + " per client process, orjson, asyncio tasks; peers and --sessiongraph-sdk "
            "through langgraph_sdk (threads.create + runs.wait, its own httpx client)",
        },
        "workloads": {},
        "peers": {},
        "notes": notes,
        "logs": str(run_dir),
    }
    started = time.monotonic()
    data_dir = Path(tempfile.mkdtemp(prefix="sessiongraph-bench-"))
    _log(f"logs in {run_dir}; embedded Postgres in {data_dir}")
    with harness_postgres(data_dir) as database_url:
        results["postgres"] = postgres_version(database_url)
        if only & set(WORKLOADS):
            await _sessiongraph(args, only, database_url, data_dir, run_dir, results)
        if "SOAK" in only:
            soak = {"seconds": args.soak_seconds, "warmup": args.soak_warmup}
            env = _server_env(args, database_url, data_dir)
            results["workloads"]["SOAK"] = await _guard(
                "SOAK",
                lambda: run_soak(
                    env,
                    database_url,
                    run_dir,
                    args.workers,
                    {**soak, "sample_every": args.soak_sample},
                    _log,
                ),  # fmt: skip
            )
        for name in peers if only & {"W1", "W2"} else []:
            peer = PEERS[name]
            try:
                running = await asyncio.to_thread(
                    start_peer,
                    peer,
                    run_dir=run_dir,
                    scratch=data_dir,
                    database_url=database_url,
                    refresh=args.refresh_peers,
                    log=_log,
                )
            except Exception as exc:
                _log(f"{name} failed to start: {exc}")
                results["peers"][name] = {"error": str(exc)[-2000:]}
                continue
            _log(f"{name} ready at {running.url} in {running.start_s} s")
            try:
                spec = ClientSpec("sdk", running.url, assistant_id=peer.assistant_id)
                peer_meter = CpuMeter(running.server.pid, postmaster_pid(data_dir))
                rows = await _sdk_rows(args, spec, only, peer_meter)
            finally:
                running.server.stop()
            results["peers"][name] = {
                **rows,
                "description": peer.description,
                "versions": running.versions,
                "start_s": running.start_s,
            }
    # The Postgres has stopped: its data folder goes (it may belong to the server's user).
    shutil.rmtree(data_dir, ignore_errors=True)
    results["duration_s"] = round(time.monotonic() - started, 1)
    results["machine"]["loadavg_at_end"] = list(os.getloadavg())
    busiest = max(results["machine"]["loadavg_at_start"][0], os.getloadavg()[0])
    if busiest > 0.5 * (os.cpu_count() or 1):
        notes.append(
            f"The machine was busy with other work (1-minute load average up to {busiest:.1f} "
            f"on {os.cpu_count()} cores): figures may be pessimistic."
        )
    if peers:
        results["ratios"] = _ratios(results)
        notes.append(
            f"Peers ran W1 with {_n(args.peer_w1_turns, args.scale, 20)} turns (not 300: they are "
            f"slow) and W2 with {_n(args.peer_w2_sessions, args.scale, 10)} sessions × "
            f"{args.peer_w2_turns} turns; the ratios compare those with sessiongraph's W1/W2."
        )
    results["targets"] = report.targets(results)

    json_dir = args.json_dir or (BENCH_DIR / ("out/results" if partial else "results"))
    json_dir.mkdir(parents=True, exist_ok=True)
    json_path = json_dir / f"{run_name}.json"
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    out = args.out or (BENCH_DIR / ("out/RESULTS.md" if partial else "RESULTS.md"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(with_recorded_soak(out, report.markdown(results)))
    _log(f"wrote {json_path} and {out}")
    print(report.markdown(results))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bench``."""
    args = _parser().parse_args(argv)
    return asyncio.run(_run(args))
