"""W7: many streamed turns in flight at once, against a model that takes seconds to answer.

``n`` new sessions each send one SSE turn at the same moment (one connection each) to an agent
whose offline model waits ``delay`` seconds. Reported: when the last turn ended, counted from
the first request sent; time to first byte (the response's status line) p50 / p99; errors;
and the server tree's RSS growth at the peak, per turn in flight.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import urlsplit

from bench.server import tree_rss_bytes

__all__ = ["w7_in_flight"]

AGENT: dict[str, Any] = {
    "id": "bench-slow",
    "name": "Slow model (W7)",
    "model": {"provider": "offline", "name": "deterministic", "params": {"delay_seconds": 2.0}},
    "tools": [],
}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _request(host: str, port: int, method: str, path: str, body: Any) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(host, port)
    data = json.dumps(body).encode()
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + data)
    raw = await reader.read()
    writer.close()
    status = int(raw.split(b" ", 2)[1])
    return status, raw


async def _turn(host: str, port: int, i: int, start: asyncio.Event) -> tuple[float, float, bool]:
    """One SSE turn: (seconds to the status line, when it ended (monotonic), ok)."""
    reader, writer = await asyncio.open_connection(host, port)
    body = json.dumps({"content": f"w7 turn {i}", "agent_id": AGENT["id"]}).encode()
    head = (
        f"POST /v1/sessions/w7-{i}/messages HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    await start.wait()
    sent = time.monotonic()
    writer.write(head + body)
    status_line = await reader.readuntil(b"\r\n")
    first = time.monotonic() - sent
    rest = await reader.read()
    writer.close()
    ok = b" 200 " in status_line and b"event: done" in rest
    return first, time.monotonic(), ok


async def w7_in_flight(
    url: str, server_pid: int, n: int = 1000, delay: float = 2.0
) -> dict[str, Any]:
    """Run W7 against ``url`` (see the module docstring)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    agent = {**AGENT, "model": {**AGENT["model"], "params": {"delay_seconds": delay}}}
    status, raw = await _request(host, port, "POST", "/v1/agents", agent)
    if status not in (200, 201, 409):
        raise RuntimeError(f"could not create the W7 agent: {raw[-300:]!r}")
    rss_idle = tree_rss_bytes(server_pid)
    peak = rss_idle
    start = asyncio.Event()
    tasks = [asyncio.create_task(_turn(host, port, i, start)) for i in range(n)]
    await asyncio.sleep(0.5)  # let every connection open before the turns are sent
    first_sent = time.monotonic()
    start.set()
    while not all(t.done() for t in tasks):
        peak = max(peak, tree_rss_bytes(server_pid))
        await asyncio.wait(tasks, timeout=0.2)
    results = [t.result() for t in tasks if not t.exception()]
    ok = [r for r in results if r[2]]
    ttfb = [r[0] * 1000 for r in results]
    return {
        "turns": n,
        "model_delay_s": delay,
        "completed": len(ok),
        "errors": n - len(ok),
        "last_done_after_first_sent_s": round(
            max((r[1] for r in results), default=first_sent) - first_sent, 3
        ),
        "ttfb_p50_ms": round(_percentile(ttfb, 0.5), 1),
        "ttfb_p99_ms": round(_percentile(ttfb, 0.99), 1),
        "rss_idle_mb": round(rss_idle / 2**20, 1),
        "rss_peak_mb": round(peak / 2**20, 1),
        "rss_kb_per_turn_in_flight": round((peak - rss_idle) / 1024 / n, 1),
    }
