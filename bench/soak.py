"""SOAK: mixed traffic for a long time; memory must stay flat, storage bounded, errors 0.

``python -m bench --only SOAK`` (never part of the default run) starts its own
``sessiongraph serve`` (``--workers``, default 2) with a 5 s sweep interval and short
retention, and drives it for ``--soak-seconds`` (default 600) with these actors at once:

- **new**: two actors, each a new session with one turn after another (agent ``bench-soak``,
  ``session_ttl_seconds`` 30): the sweeper removes them once they expire;
- **long**: one session with turn after turn; every 100 turns its history is cleared;
- **tool**: a new session, five calculator turns (model → tool → model), then deleted;
- **stream**: a new session, two turns streamed as SSE, each read to its ``done`` event.

Each kind runs at a steady rate (:data:`RATES`: 10 new sessions, 10 long-session turns, 5
tool turns and 5 streamed turns a second, about 31 requests a second in all), so the live
data (about 450 sessions within their TTL) and the storage it needs do not depend on how
fast the noisy machine happens to be.

Every ``--soak-sample`` seconds (default 10) it samples the RSS of each server process
(the main one and its workers, from ``/proc``) and, with SQL, the database's size
(``pg_database_size``), its live sessions and its checkpoint rows. The first
``--soak-warmup`` seconds (default 120) are the warm-up. Reported: requests and errors by
actor; each process's RSS at the end of the warm-up and at the end; the database's size over
time. Targets: 0 errors; no process's RSS more than 10 % above its warm-up figure; storage
levels off (retention keeps it bounded): the database's largest size in the second half of
the time after the warm-up at most 10 % above its largest in the first half (Postgres
reuses the space of deleted rows once autovacuum has been through, so the size climbs for a
while after the warm-up and then stays). Server processes
that came or went during the run (a replaced worker) are listed.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import psycopg

from bench.server import ServerProcess, free_port, process_tree, sessiongraph_argv, wait_http

__all__ = [
    "RECORDED_HEADING",
    "SOAK_ENV",
    "run_soak",
    "soak",
    "soak_markdown",
    "soak_targets",
    "with_recorded_soak",
]

AGENT: dict[str, Any] = {
    "id": "bench-soak",
    "name": "Soak agent",
    "model": "offline:deterministic",
    "tools": ["calculator"],
    "session_ttl_seconds": 30,
}
TOOL_PROMPT = 'use tool calculator with {"expression": "6*7"}'
CLEAR_EVERY = 100
# Turns a second per actor kind, held steady (:class:`Pace`) so that the live data, and so
# the storage retention allows, does not follow the noisy machine's speed.
RATES = {"new": 10.0, "long": 10.0, "tool": 5.0, "stream": 5.0}
# What the soak's server runs with, beyond the harness's own environment: sweeps every 5 s,
# per-turn statistics kept 2 minutes (they are pruned by the sweep), so that storage is
# bounded by retention within the run.
SOAK_ENV = {
    "SESSIONGRAPH_SWEEP_INTERVAL_SECONDS": "5",
    "SESSIONGRAPH_STATS_RETENTION_DAYS": str(round(120 / 86400, 6)),
}
# The heading of the soak run recorded at the end of bench/RESULTS.md.
RECORDED_HEADING = "## Soak (recorded run)"
RSS_GROWTH_LIMIT = 0.10
DB_GROWTH_LIMIT = 0.10


@dataclass
class Tally:
    """Requests and errors by actor, with the first few errors spelled out."""

    requests: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def failed(self, actor: str, what: str) -> None:
        self.errors[actor] += 1
        if len(self.examples) < 10:
            self.examples.append(f"{actor}: {what}"[:300])


async def _call(
    http: httpx.AsyncClient, tally: Tally, actor: str, method: str, path: str, body: Any = None
) -> httpx.Response | None:
    """One request; anything but 2xx counts as an error of ``actor``."""
    tally.requests[actor] += 1
    try:
        response = await http.request(method, path, json=body)
    except httpx.HTTPError as exc:
        tally.failed(actor, f"{method} {path}: {type(exc).__name__}: {exc}")
        return None
    if response.status_code >= 300:
        tally.failed(actor, f"{method} {path}: {response.status_code} {response.text[:200]}")
        return None
    return response


class Pace:
    """A steady rate: :meth:`wait` returns ``per_second`` times a second, never bursting to
    catch up when the server was slow (the load stays what the soak says it is)."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1 / per_second
        self.next = time.monotonic()

    async def wait(self) -> None:
        delay = self.next - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        self.next = max(self.next + self.interval, time.monotonic())


def _sid(actor: str) -> str:
    return f"soak-{actor}-{uuid4().hex[:10]}"


async def _new_sessions(http: httpx.AsyncClient, tally: Tally, until: float) -> None:
    pace = Pace(RATES["new"] / 2)  # two of these actors
    while time.monotonic() < until:
        await pace.wait()
        body = {"content": "hello, a new session", "agent_id": AGENT["id"]}
        await _call(http, tally, "new", "POST", f"/v1/sessions/{_sid('new')}/messages", body)


async def _long_session(http: httpx.AsyncClient, tally: Tally, until: float) -> None:
    sid, n, pace = _sid("long"), 0, Pace(RATES["long"])
    while time.monotonic() < until:
        await pace.wait()
        n += 1
        body = {"content": f"long session message {n}", "agent_id": AGENT["id"]}
        await _call(http, tally, "long", "POST", f"/v1/sessions/{sid}/messages", body)
        if n % CLEAR_EVERY == 0:
            await _call(http, tally, "long", "DELETE", f"/v1/sessions/{sid}/messages")


async def _tool_sessions(http: httpx.AsyncClient, tally: Tally, until: float) -> None:
    pace = Pace(RATES["tool"])
    while time.monotonic() < until:
        sid = _sid("tool")
        for _ in range(5):
            await pace.wait()
            body = {"content": TOOL_PROMPT, "agent_id": AGENT["id"]}
            path = f"/v1/sessions/{sid}/messages"
            response = await _call(http, tally, "tool", "POST", path, body)
            if response is not None and "42" not in response.json().get("reply", ""):
                tally.failed("tool", f"no tool result in {response.text[:200]}")
        await _call(http, tally, "tool", "DELETE", f"/v1/sessions/{sid}")


async def _streams(http: httpx.AsyncClient, tally: Tally, until: float) -> None:
    headers, pace = {"Accept": "text/event-stream"}, Pace(RATES["stream"])
    while time.monotonic() < until:
        sid = _sid("stream")
        for n in range(2):
            await pace.wait()
            tally.requests["stream"] += 1
            body = {"content": f"stream {n}", "agent_id": AGENT["id"]}
            try:
                async with http.stream(
                    "POST", f"/v1/sessions/{sid}/messages", json=body, headers=headers
                ) as response:
                    text = (await response.aread()).decode(errors="replace")
            except httpx.HTTPError as exc:
                tally.failed("stream", f"{type(exc).__name__}: {exc}")
                continue
            if response.status_code != 200 or "event: done" not in text:
                tally.failed("stream", f"{response.status_code} {text[-200:]}")


def _rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _role(pid: int, main: int) -> str:
    if pid == main:
        return f"main {pid}"
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        cmdline = ""
    worker = "multiprocessing" in cmdline and "resource_tracker" not in cmdline
    kind = "worker" if worker else "child"
    return f"{kind} {pid}"


# The five largest tables (with their indexes and TOAST), by name and bytes.
_LARGEST_TABLES = (
    "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
    " ORDER BY 2 DESC LIMIT 5"
)


def _database(database_url: str) -> dict[str, Any]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_database_size(current_database()),"
            " (SELECT count(*) FROM sessions), (SELECT count(*) FROM checkpoints)"
        ).fetchone()
        tables: dict[str, int] = dict(conn.execute(_LARGEST_TABLES).fetchall())
    assert row is not None
    return {
        "db_bytes": int(row[0]),
        "sessions": int(row[1]),
        "checkpoints": int(row[2]),
        "tables_kb": {name: int(size) // 1024 for name, size in tables.items()},
    }


async def _sampler(
    server_pid: int, database_url: str, every: float, started: float, until: float,
    samples: list[dict[str, Any]], log: Callable[[str], None],
) -> None:  # fmt: skip
    while True:
        rss = {_role(p, server_pid): _rss_kb(p) for p in process_tree(server_pid)}
        rss_kb = {k: v for k, v in rss.items() if v is not None}
        database = await asyncio.to_thread(_database, database_url)
        t = round(time.monotonic() - started, 1)
        samples.append({"t": t, "rss_kb": rss_kb, **database})
        log(
            f"SOAK t={t:.0f}s rss_mb={ {k: round(v / 1024, 1) for k, v in rss_kb.items()} } "
            f"db={database['db_bytes'] / 2**20:.1f} MB sessions={database['sessions']}"
        )
        if time.monotonic() >= until:
            return
        await asyncio.sleep(min(every, max(until - time.monotonic(), 0.0)))


async def soak(
    url: str,
    server_pid: int,
    database_url: str,
    *,
    seconds: float,
    warmup: float,
    sample_every: float,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Run the soak against ``url`` (see the module docstring) and summarise it."""
    tally, samples = Tally(), list[dict[str, Any]]()
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        created = await http.post("/v1/agents", json=AGENT)
        if created.status_code not in (200, 201, 409):
            raise RuntimeError(f"could not create the soak agent: {created.text[:300]}")
        started = time.monotonic()
        until = started + seconds
        actors = [
            _new_sessions(http, tally, until),
            _new_sessions(http, tally, until),
            _long_session(http, tally, until),
            _tool_sessions(http, tally, until),
            _streams(http, tally, until),
        ]
        sampler = _sampler(server_pid, database_url, sample_every, started, until, samples, log)
        await asyncio.gather(*actors, sampler)
        wall = time.monotonic() - started
    return _summary(tally, samples, seconds=wall, warmup=warmup)


def _at(samples: list[dict[str, Any]], t: float) -> dict[str, Any]:
    """The first sample taken at or after ``t`` seconds (the last one if none)."""
    return next((s for s in samples if s["t"] >= t), samples[-1])


def _summary(
    tally: Tally, samples: list[dict[str, Any]], *, seconds: float, warmup: float
) -> dict[str, Any]:
    warm, end = _at(samples, warmup), samples[-1]
    processes = {}
    for role, kb in end["rss_kb"].items():
        before = warm["rss_kb"].get(role)
        processes[role] = {
            "warmup_end_mb": None if before is None else round(before / 1024, 1),
            "end_mb": round(kb / 1024, 1),
            "growth_pct": None if not before else round((kb - before) * 100 / before, 1),
        }
    after = [s for s in samples if s["t"] >= warm["t"]]
    seen = {role for s in samples for role in s["rss_kb"]}
    middle = (warm["t"] + end["t"]) / 2
    halves = [s for s in after if s["t"] <= middle] or after, [s for s in after if s["t"] >= middle]
    return {
        "seconds": round(seconds, 1),
        "warmup_s": warmup,
        "requests": sum(tally.requests.values()),
        "requests_by_actor": dict(tally.requests),
        "errors": sum(tally.errors.values()),
        "errors_by_actor": dict(tally.errors),
        "error_examples": tally.examples,
        "processes": processes,
        # Server processes that came and went (a worker the supervisor replaced).
        "processes_gone": sorted(seen - set(end["rss_kb"])),
        "db_warmup_end_mb": round(warm["db_bytes"] / 2**20, 1),
        "db_max_after_warmup_mb": round(max(s["db_bytes"] for s in after) / 2**20, 1),
        # Bounded storage levels off: the second half after the warm-up peaks no higher
        # than the first (growing storage would keep rising).
        "db_max_first_half_mb": round(max(s["db_bytes"] for s in halves[0]) / 2**20, 1),
        "db_max_second_half_mb": round(max(s["db_bytes"] for s in halves[1]) / 2**20, 1),
        "db_end_mb": round(end["db_bytes"] / 2**20, 1),
        "sessions_max": max(s["sessions"] for s in samples),
        "tables_warmup_end_kb": warm["tables_kb"],
        "tables_end_kb": end["tables_kb"],
        "samples": samples,
    }


def soak_targets(data: Any, add: Callable[..., None]) -> None:
    """SOAK: 0 errors; each process's RSS flat after warm-up; the database bounded."""
    if not isinstance(data, dict) or "errors" not in data:
        return
    add("SOAK", "errors", data["errors"], "", "0", data["errors"] == 0)
    growths = [p["growth_pct"] for p in data["processes"].values() if p["growth_pct"] is not None]
    worst = max(growths) if growths else None
    limit = f"≤ {RSS_GROWTH_LIMIT:.0%}"
    met = None if worst is None else worst <= RSS_GROWTH_LIMIT * 100
    add("SOAK", "RSS growth after warm-up, worst process", worst, "%", limit, met)
    first, second = data["db_max_first_half_mb"], data["db_max_second_half_mb"]
    growth = round((second - first) * 100 / first, 1) if first else None
    met = None if growth is None else growth <= DB_GROWTH_LIMIT * 100
    limit = f"≤ {DB_GROWTH_LIMIT:.0%}"
    add("SOAK", "database: largest size, 2nd vs 1st half after warm-up", growth, "%", limit, met)


def soak_markdown(data: Any) -> list[str]:
    """The soak's section of the report: processes' RSS and the database over time."""
    if not isinstance(data, dict) or "errors" not in data:
        return [f"- **SOAK**: {str(data)[:500]}"] if data else []
    by_actor = ", ".join(f"{k} {v}" for k, v in data["requests_by_actor"].items())
    out = [
        f"{data['seconds']:.0f} s of mixed traffic, warm-up {data['warmup_s']:.0f} s: "
        f"{data['requests']} requests ({by_actor}), "
        f"{data['errors']} errors; at most {data['sessions_max']} live sessions.",
        "",
        "| process | RSS at warm-up end | RSS at end | growth |",
        "|---|---|---|---|",
    ]
    for role, p in data["processes"].items():
        out.append(f"| {role} | {p['warmup_end_mb']} MB | {p['end_mb']} MB | {p['growth_pct']} % |")
    out += [
        "",
        f"Database: {data['db_warmup_end_mb']} MB at the end of the warm-up; largest "
        f"{data['db_max_first_half_mb']} MB in the first half after it, "
        f"{data['db_max_second_half_mb']} MB in the second; {data['db_end_mb']} MB at the end.",
        "",
        "| t (s) | database | sessions | checkpoints |",
        "|---|---|---|---|",
    ]
    samples = data["samples"]
    step = max(1, len(samples) // 12)
    for s in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
        out.append(
            f"| {s['t']:.0f} | {s['db_bytes'] / 2**20:.1f} MB | {s['sessions']} | "
            f"{s['checkpoints']} |"
        )
    tables = ", ".join(f"{k} {v / 1024:.1f} MB" for k, v in data["tables_end_kb"].items())
    out += ["", f"Largest tables at the end (with indexes and TOAST): {tables}."]
    for example in data["error_examples"]:
        out.append(f"- error: {example}")
    return out


async def run_soak(
    env: dict[str, str], database_url: str, run_dir: Path, workers: int,
    options: dict[str, float], log: Callable[[str], None],
) -> dict[str, Any]:  # fmt: skip
    """Start ``serve`` for the soak (``env`` plus :data:`SOAK_ENV`), run it, stop it."""
    port = free_port()
    argv = sessiongraph_argv(port, workers)
    log(f"SOAK: starting {' '.join(argv)} with {SOAK_ENV}")
    server = ServerProcess(
        argv, env={**env, **SOAK_ENV}, log_path=run_dir / "soak-server.log", cwd=run_dir
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await asyncio.to_thread(wait_http, f"{url}/readyz", timeout=120, process=server.process)
        result = await soak(url, server.pid, database_url, log=log, **options)
        result["server_env"] = SOAK_ENV
        return result
    finally:
        server.stop()


def with_recorded_soak(path: Path, report: str) -> str:
    """``report`` followed by the recorded soak section of the report at ``path``, if any:
    a full run rewrites ``RESULTS.md`` but does not run the soak, whose record stays."""
    try:
        old = path.read_text()
    except OSError:
        return report
    start = old.find(RECORDED_HEADING)
    if start < 0 or RECORDED_HEADING in report:
        return report
    return report.rstrip("\n") + "\n\n" + old[start:]
