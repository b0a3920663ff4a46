"""Prometheus metrics, one registry per app (so several apps in one process never clash).

Turns and sweeps are counted from the runtime's listeners, so every way of running a turn
(JSON, SSE, WebSocket) is measured the same, failed ones by their error code; error
responses are counted once, by the error handler;
active sessions are read from Postgres at scrape time. Each worker process reports its
own counters (scrape them per worker, or run one worker per container).
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

from runtime import Runtime

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """The service's metrics on their own registry."""

    def __init__(self) -> None:
        disable_created_metrics()  # the `_created` series only add noise here
        self.registry = CollectorRegistry()
        self.turns = Counter(
            "sessiongraph_turns",
            "Turns run, by outcome (ok or the error code).",
            ["outcome"],
            registry=self.registry,
        )
        self.turn_latency = Histogram(
            "sessiongraph_turn_latency_seconds",
            "Wall time of a turn, lease to release.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.active_sessions = Gauge(
            "sessiongraph_active_sessions",
            "Live sessions with status active (all owners), read at scrape time.",
            registry=self.registry,
        )
        self.sweeps = Counter(
            "sessiongraph_sweeps", "Expiry sweeps run by this process.", registry=self.registry
        )
        self.swept_sessions = Counter(
            "sessiongraph_swept_sessions",
            "Sessions removed by sweeps in this process.",
            registry=self.registry,
        )
        self.errors = Counter(
            "sessiongraph_errors",
            "Error responses, by error code (a failed streamed turn is counted in "
            "sessiongraph_turns_total by its outcome instead).",
            ["error"],
            registry=self.registry,
        )

    def attach(self, runtime: Runtime) -> None:
        """Listen to the runtime's turns and sweeps."""
        runtime.turns.listeners.append(self._on_turn)
        runtime.sweep_listeners.append(self._on_sweep)

    def _on_turn(self, agent_id: str, outcome: str, seconds: float) -> None:
        self.turns.labels(outcome=outcome).inc()
        self.turn_latency.observe(seconds)

    def _on_sweep(self, removed: int) -> None:
        self.sweeps.inc()
        self.swept_sessions.inc(removed)

    async def refresh(self, runtime: Runtime) -> None:
        """Read the figures that live in Postgres."""
        self.active_sessions.set(await runtime.sessions.count_active())
