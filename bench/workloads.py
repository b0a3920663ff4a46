"""The workloads W1–W6. Each returns a plain dict of figures (milliseconds, bytes, seconds).

Latencies are measured around one complete client call (request sent → whole answer parsed)
with ``time.perf_counter``. Concurrent workloads run ``concurrency`` asyncio tasks, each
taking sessions from a shared queue and running that session's turns in order, so no session
ever has two turns at once; with ``procs > 1`` the tasks are split over that many client
processes (for when one client process cannot generate enough load).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from bench.clients import Client, NativeClient, NotAvailable, SdkClient, TurnFailed, dumps
from bench.server import ServerProcess

__all__ = [
    "ClientSpec",
    "percentile",
    "w1_sequential",
    "w2_concurrent",
    "w3_tool_turns",
    "w4_storage",
    "w5_memory",
    "w6_sweep",
]

W6_AGENT = "bench-w6"


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) with linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


@dataclass(frozen=True)
class ClientSpec:
    """How to build a client (picklable, so client processes can build their own)."""

    kind: str  # "native" or "sdk"
    url: str
    assistant_id: str = "react"
    http: str = "raw"  # the native client's HTTP client: "raw" or "httpx"
    agent_id: str = "default"  # the native client's agent

    def make(self, connections: int = 64) -> Client:
        """A new client for this server."""
        if self.kind == "native":
            return NativeClient(
                self.url, connections=connections, http=self.http, agent_id=self.agent_id
            )
        return SdkClient(self.url, assistant_id=self.assistant_id)


def turn_text(i: int) -> str:
    return f"benchmark message number {i}, please answer"


# -- W1 --------------------------------------------------------------------------------------


async def w1_sequential(spec: ClientSpec, turns: int, window: int = 20) -> dict[str, Any]:
    """W1: one session, ``turns`` turns in a row.

    Reports p50, p95, and p50 of the last ``window`` turns ÷ p50 of the first ``window``.
    """
    client = spec.make(connections=1)
    try:
        session = await client.new_session()
        latencies: list[float] = []
        for i in range(turns):
            start = time.perf_counter()
            await client.turn(session, turn_text(i))
            latencies.append(time.perf_counter() - start)
    finally:
        await client.aclose()
    window = min(window, max(1, turns // 2))
    early, late = latencies[:window], latencies[-window:]
    return {
        "session": session,
        "turns": turns,
        "p50_ms": _ms(percentile(latencies, 50)),
        "p95_ms": _ms(percentile(latencies, 95)),
        "early_p50_ms": _ms(percentile(early, 50)),
        "late_p50_ms": _ms(percentile(late, 50)),
        "late_early_ratio": round(percentile(late, 50) / percentile(early, 50), 3),
        "window": window,
    }


# -- W2 (and the bulk load of W5 / W6) -------------------------------------------------------


async def _drive(
    spec: ClientSpec,
    sessions: int,
    turns_per_session: int,
    concurrency: int,
    first_session: int,
) -> dict[str, Any]:
    """Run ``sessions`` × ``turns_per_session`` turns over ``concurrency`` tasks."""
    client = spec.make(connections=concurrency)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(first_session, first_session + sessions):
        queue.put_nowait(n)
    latencies: list[float] = []
    errors: list[str] = []

    async def worker() -> None:
        while True:
            try:
                n = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                session = await client.new_session()
            except NotAvailable:
                raise
            except Exception as exc:
                errors.append(f"new session: {type(exc).__name__}: {exc}"[:300])
                continue
            for i in range(turns_per_session):
                start = time.perf_counter()
                try:
                    await client.turn(session, turn_text(n * 1000 + i))
                except NotAvailable:
                    raise
                except TurnFailed as exc:
                    errors.append(str(exc))
                    continue
                except Exception as exc:  # transport errors count as errors too
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    continue
                latencies.append(time.perf_counter() - start)

    cpu0, t0 = time.process_time(), time.monotonic()
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await client.aclose()
    t1, cpu1 = time.monotonic(), time.process_time()
    return {
        "latencies": latencies,
        "errors": errors,
        "start": t0,
        "end": t1,
        "client_cpu_s": cpu1 - cpu0,
    }


def _drive_in_process(
    spec: ClientSpec, sessions: int, turns_per_session: int, concurrency: int, first: int
) -> dict[str, Any]:
    return asyncio.run(_drive(spec, sessions, turns_per_session, concurrency, first))


def _share(total: int, parts: int, k: int) -> int:
    """Part ``k`` of ``total`` split as evenly as possible into ``parts``."""
    return total // parts + (1 if k < total % parts else 0)


async def run_load(
    spec: ClientSpec,
    sessions: int,
    turns_per_session: int,
    concurrency: int,
    procs: int = 1,
) -> dict[str, Any]:
    """Drive the load from this process (``procs == 1``) or from ``procs`` client processes.

    Returns the merged latencies, errors, wall time and client CPU seconds.
    """
    if procs <= 1:
        parts = [await _drive(spec, sessions, turns_per_session, concurrency, 0)]
    else:
        loop = asyncio.get_running_loop()
        per_sessions = [_share(sessions, procs, k) for k in range(procs)]
        per_conc = [max(1, _share(concurrency, procs, k)) for k in range(procs)]
        firsts = [sum(per_sessions[:k]) for k in range(procs)]
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(procs, mp_context=context) as pool:
            futures = [
                loop.run_in_executor(
                    pool,
                    _drive_in_process,
                    spec,
                    per_sessions[k],
                    turns_per_session,
                    per_conc[k],
                    firsts[k],
                )
                for k in range(procs)
            ]
            parts = list(await asyncio.gather(*futures))
    latencies = [x for p in parts for x in p["latencies"]]
    errors = [e for p in parts for e in p["errors"]]
    wall = max(p["end"] for p in parts) - min(p["start"] for p in parts)
    return {
        "latencies": latencies,
        "errors": errors,
        "wall_s": wall,
        "client_cpu_s": sum(p["client_cpu_s"] for p in parts),
    }


async def w2_concurrent(
    spec: ClientSpec, sessions: int, turns_per_session: int, concurrency: int, procs: int = 1
) -> dict[str, Any]:
    """W2: ``sessions`` × ``turns_per_session`` turns with ``concurrency`` concurrent clients.

    ``client_cpu_share`` is the client processes' CPU time ÷ (wall × procs): near 1.0 means
    the client, not the server, limited the rate.
    """
    load = await run_load(spec, sessions, turns_per_session, concurrency, procs)
    ok = len(load["latencies"])
    return {
        "sessions": sessions,
        "turns_per_session": turns_per_session,
        "concurrency": concurrency,
        "client_procs": procs,
        "turns_ok": ok,
        "errors": len(load["errors"]),
        "error_samples": sorted(set(load["errors"]))[:5],
        "wall_s": round(load["wall_s"], 3),
        "turns_per_s": round(ok / load["wall_s"], 1) if load["wall_s"] > 0 else 0.0,
        "p50_ms": _ms(percentile(load["latencies"], 50)),
        "p95_ms": _ms(percentile(load["latencies"], 95)),
        "client_cpu_share": round(load["client_cpu_s"] / (load["wall_s"] * max(1, procs)), 3),
        "client_cpu_ms_per_turn": round(load["client_cpu_s"] / max(1, ok) * 1000, 3),
    }


# -- W3 --------------------------------------------------------------------------------------

TOOL_PROMPT = 'use tool calculator with {"expression": "2+2"}'


async def w3_tool_turns(
    url: str, turns: int, per_session: int = 10, http: str = "raw"
) -> dict[str, Any]:
    """W3: tool turns (model → calculator → model), ``per_session`` per session, in a row.

    Each answer is checked: it must hold the tool call, the tool result and
    ``The result is 4.``; any other answer counts as an error.
    """
    client = NativeClient(url, connections=1, http=http)
    latencies: list[float] = []
    errors: list[str] = []
    try:
        session = ""
        for i in range(turns):
            if i % per_session == 0:
                session = await client.new_session()
            start = time.perf_counter()
            try:
                answer = await client.send(session, TOOL_PROMPT, agent_id="default")
            except TurnFailed as exc:
                errors.append(str(exc))
                continue
            latencies.append(time.perf_counter() - start)
            roles = [m.get("role") for m in answer.get("messages", [])]
            if "tool" not in roles or answer.get("reply") != "The result is 4.":
                errors.append(f"not a tool turn: roles={roles} reply={answer.get('reply')!r}")
    finally:
        await client.aclose()
    return {
        "turns": turns,
        "per_session": per_session,
        "p50_ms": _ms(percentile(latencies, 50)),
        "p95_ms": _ms(percentile(latencies, 95)),
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:5],
    }


# -- W4 --------------------------------------------------------------------------------------


def _rows_bytes(conn: psycopg.Connection[Any], sql: str, params: Sequence[Any]) -> dict[str, int]:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return {"rows": int(row[0]), "bytes": int(row[1] or 0)}


async def w4_storage(
    url: str, database_url: str, session_id: str, http: str = "raw"
) -> dict[str, Any]:
    """W4: bytes Postgres holds for one session ÷ bytes of its transcript.

    Rows are summed with ``pg_column_size(row)`` (on-disk, after TOAST compression; indexes
    not counted): ``checkpoints``, ``checkpoint_blobs``, ``checkpoint_writes`` and
    ``tool_records`` of the session's thread, its ``sessions`` row, and its ``turn_log``
    rows (the newest ``turns`` rows: run right after W1, before any other turn). The
    transcript is the JSON of every item of ``GET /v1/sessions/{id}/messages``, all pages.
    """
    client = NativeClient(url, connections=1, http=http)
    try:
        transcript = await client.transcript(session_id)
    finally:
        await client.aclose()
    transcript_bytes = len(dumps(transcript))

    def measure() -> dict[str, Any]:
        with psycopg.connect(database_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT thread_id, turns FROM sessions WHERE session_id = %s", (session_id,)
            ).fetchone()
            assert row is not None, f"no session {session_id}"
            thread_id, turns = row
            tables: dict[str, dict[str, int]] = {}
            for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes", "tool_records"):
                tables[table] = _rows_bytes(
                    conn,
                    f"SELECT count(*), sum(pg_column_size(t.*)) FROM {table} t "
                    "WHERE thread_id = %s",
                    (thread_id,),
                )
            tables["sessions"] = _rows_bytes(
                conn,
                "SELECT count(*), sum(pg_column_size(t.*)) FROM sessions t WHERE thread_id = %s",
                (thread_id,),
            )
            tables["turn_log"] = _rows_bytes(
                conn,
                "SELECT count(*), sum(s) FROM (SELECT pg_column_size(t.*) AS s FROM turn_log t "
                "ORDER BY finished_at DESC LIMIT %s) x",
                (turns,),
            )
            return {"thread_id": thread_id, "turns": turns, "tables": tables}

    measured = await asyncio.to_thread(measure)
    stored = sum(t["bytes"] for t in measured["tables"].values())
    return {
        **measured,
        "messages": len(transcript),
        "stored_bytes": stored,
        "transcript_bytes": transcript_bytes,
        "ratio": round(stored / transcript_bytes, 2) if transcript_bytes else float("nan"),
    }


# -- W5 --------------------------------------------------------------------------------------


async def w5_memory(
    url: str,
    server: ServerProcess,
    sessions: int,
    warmup: int,
    concurrency: int,
    http: str = "raw",
) -> dict[str, Any]:
    """W5: ``sessions`` new sessions, one turn each; growth of the server tree's RSS.

    A warm-up of ``warmup`` sessions first (imports, pools, caches), then RSS before, the
    load, a 2 s settle, RSS after. ``mb_per_10k`` scales the growth to 10,000 sessions.
    """
    spec = ClientSpec("native", url, http=http)
    await run_load(spec, warmup, 1, concurrency)
    await asyncio.sleep(2)
    before = server.rss_bytes()
    load = await run_load(spec, sessions, 1, concurrency)
    await asyncio.sleep(2)
    after = server.rss_bytes()
    growth = after - before
    return {
        "sessions": sessions,
        "warmup_sessions": warmup,
        "errors": len(load["errors"]),
        "error_samples": sorted(set(load["errors"]))[:5],
        "rss_before_mb": round(before / 2**20, 1),
        "rss_after_mb": round(after / 2**20, 1),
        "growth_mb": round(growth / 2**20, 2),
        "mb_per_10k": round(growth / 2**20 * 10_000 / sessions, 2) if sessions else 0.0,
        "turns_per_s": round(len(load["latencies"]) / load["wall_s"], 1),
    }


# -- W6 --------------------------------------------------------------------------------------


async def w6_sweep(
    url: str,
    database_url: str,
    sessions: int,
    *,
    turn_fraction: float,
    ttl_seconds: int,
    concurrency: int,
    log: Callable[[str], None],
    http: str = "raw",
) -> dict[str, Any]:
    """W6: expire ``sessions`` sessions and time ``POST /v1/admin/sweep`` until none remain.

    The sessions belong to an agent ``bench-w6`` whose ``session_ttl_seconds`` is short;
    ``turn_fraction`` of them get one real turn, the rest are created empty (``PUT``). The
    harness waits until the last one has expired, then times the sweep calls (only the
    calls; the SQL count between them is not timed), and checks with SQL that every
    ``checkpoints`` / ``checkpoint_blobs`` / ``checkpoint_writes`` / ``tool_records`` row of
    their threads is gone. The server's own sweeper is off in the harness
    (``SESSIONGRAPH_SWEEP_INTERVAL_SECONDS=0``) so that nothing is swept before the clock.
    """
    client = NativeClient(url, connections=concurrency, http=http)
    agent = {
        "id": W6_AGENT,
        "name": "W6 bench agent",
        "model": "offline:deterministic",
        "tools": [],
        "session_ttl_seconds": ttl_seconds,
    }
    with_turn = round(sessions * turn_fraction)
    errors: list[str] = []
    created = time.monotonic()
    try:
        try:
            await client.request("POST", "/v1/agents", agent)
        except TurnFailed as exc:
            if "409" not in str(exc):
                raise
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(sessions):
            queue.put_nowait(n)

        async def worker() -> None:
            while True:
                try:
                    n = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                sid = f"w6-{n}"
                try:
                    if n < with_turn:
                        await client.send(sid, turn_text(n), agent_id=W6_AGENT)
                    else:
                        await client.request("PUT", f"/v1/sessions/{sid}", {"agent_id": W6_AGENT})
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        create_s = time.monotonic() - created
        log(f"W6: {sessions} sessions created in {create_s:.1f} s ({len(errors)} errors)")

        def threads_and_wait() -> tuple[list[str], float]:
            with psycopg.connect(database_url, autocommit=True) as conn:
                threads = [
                    r[0]
                    for r in conn.execute(
                        "SELECT thread_id FROM sessions WHERE agent_id = %s", (W6_AGENT,)
                    ).fetchall()
                ]
                row = conn.execute(
                    "SELECT GREATEST(0, EXTRACT(EPOCH FROM max(expires_at) - now())) "
                    "FROM sessions WHERE agent_id = %s",
                    (W6_AGENT,),
                ).fetchone()
            return threads, float(row[0] or 0) if row else 0.0

        threads, wait = await asyncio.to_thread(threads_and_wait)
        log(f"W6: waiting {wait:.1f} s for the last session to expire")
        await asyncio.sleep(wait + 1.0)

        def remaining() -> int:
            with psycopg.connect(database_url, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM sessions WHERE agent_id = %s", (W6_AGENT,)
                ).fetchone()
            return int(row[0]) if row else 0

        sweep_s, calls, removed = 0.0, 0, 0
        while await asyncio.to_thread(remaining) > 0 and calls < 100:
            start = time.perf_counter()
            answer = await client.request("POST", "/v1/admin/sweep")
            sweep_s += time.perf_counter() - start
            calls += 1
            removed += int(answer["removed"])
    finally:
        await client.aclose()

    def leftovers() -> dict[str, int]:
        with psycopg.connect(database_url, autocommit=True) as conn:
            out = {}
            for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes", "tool_records"):
                row = conn.execute(
                    f"SELECT count(*) FROM {table} WHERE thread_id = ANY(%s)", (threads,)
                ).fetchone()
                out[table] = int(row[0]) if row else -1
            row = conn.execute(
                "SELECT count(*) FROM sessions WHERE agent_id = %s", (W6_AGENT,)
            ).fetchone()
            out["sessions"] = int(row[0]) if row else -1
            return out

    left = await asyncio.to_thread(leftovers)
    return {
        "sessions": sessions,
        "with_turn": with_turn,
        "empty": sessions - with_turn,
        "ttl_seconds": ttl_seconds,
        "create_s": round(create_s, 1),
        "create_errors": len(errors),
        "error_samples": sorted(set(errors))[:5],
        "threads": len(threads),
        "sweep_calls": calls,
        "removed": removed,
        "sweep_s": round(sweep_s, 3),
        "rows_left": left,
        "all_gone": all(v == 0 for v in left.values()),
    }
