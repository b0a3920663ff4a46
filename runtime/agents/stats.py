"""Per-agent statistics: live sessions from ``sessions``, turn figures from ``turn_log``.

``turn_log`` keeps one small row per completed turn (written in the same statement that
ends the turn), so turn counts, tokens and latency percentiles outlive expired sessions.
Rows older than ``stats_retention_days`` are pruned by the sweeper.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.agents import sql
from runtime.db import Pool, execute, fetch_all

__all__ = ["AgentStats", "agent_stats", "prune_turn_log"]


@dataclass(frozen=True)
class AgentStats:
    """One agent's figures over the retention window."""

    agent_id: str
    owner: str  # the agent's owner (``system`` for a system agent): ids are per owner
    sessions_total: int
    sessions_active: int
    turns: int
    messages: int
    tokens_in: int
    tokens_out: int
    latency_ms_mean: float | None
    latency_ms_p95: float | None


async def agent_stats(
    pool: Pool, *, agent_id: str | None = None, owner: str | None = None
) -> list[AgentStats]:
    """Figures for every agent (or those named ``agent_id``), counting every owner's sessions;
    with ``owner``, the agents that owner sees and its own sessions only."""
    params = {"agent": agent_id, **sql.visibility_params(owner)}
    rows = await fetch_all(pool, sql.AGENT_STATS, params)
    out = []
    for r in rows:
        mean, p95 = r["latency_ms_mean"], r["latency_ms_p95"]
        out.append(
            AgentStats(
                agent_id=r["agent_id"],
                owner=r["owner"],
                sessions_total=int(r["sessions_total"]),
                sessions_active=int(r["sessions_active"]),
                turns=int(r["turns"]),
                messages=int(r["messages"]),
                tokens_in=int(r["tokens_in"]),
                tokens_out=int(r["tokens_out"]),
                latency_ms_mean=None if mean is None else round(float(mean), 3),
                latency_ms_p95=None if p95 is None else round(float(p95), 3),
            )
        )
    return out


async def prune_turn_log(pool: Pool, retention_days: float) -> int:
    """Delete turn records older than the retention window; return how many."""
    return await execute(pool, sql.PRUNE_TURN_LOG, (retention_days * 86400,))
