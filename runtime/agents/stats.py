"""Per-agent statistics: live sessions from ``sessions``, turn figures from ``turn_log``.

``turn_log`` keeps one small row per completed turn (written in the same statement that
ends the turn), so turn counts, tokens and latency percentiles outlive expired sessions.
Rows older than ``stats_retention_days`` are pruned by the sweeper.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.db import Pool

__all__ = ["AgentStats", "agent_stats", "prune_turn_log"]


@dataclass(frozen=True)
class AgentStats:
    """One agent's figures over the retention window."""

    agent_id: str
    sessions_total: int
    sessions_active: int
    turns: int
    messages: int
    tokens_in: int
    tokens_out: int
    latency_ms_mean: float | None
    latency_ms_p95: float | None


_STATS_SQL = """
WITH live AS (
    SELECT agent_id, count(*) AS total, count(*) FILTER (WHERE status = 'active') AS active
    FROM sessions
    WHERE expires_at > now() AND (%(owner)s::text IS NULL OR owner = %(owner)s)
    GROUP BY agent_id
), turns AS (
    SELECT agent_id, count(*) AS turns, sum(messages) AS messages,
           sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out,
           avg(latency_ms) AS mean,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95
    FROM turn_log
    WHERE (%(owner)s::text IS NULL OR owner = %(owner)s)
    GROUP BY agent_id
)
SELECT a.agent_id,
       coalesce(l.total, 0) AS sessions_total, coalesce(l.active, 0) AS sessions_active,
       coalesce(t.turns, 0) AS turns, coalesce(t.messages, 0) AS messages,
       coalesce(t.tokens_in, 0) AS tokens_in, coalesce(t.tokens_out, 0) AS tokens_out,
       t.mean AS latency_ms_mean, t.p95 AS latency_ms_p95
FROM agents a
LEFT JOIN live l ON l.agent_id = a.agent_id
LEFT JOIN turns t ON t.agent_id = a.agent_id
WHERE (%(agent)s::text IS NULL OR a.agent_id = %(agent)s)
ORDER BY a.agent_id
"""


async def agent_stats(
    pool: Pool, *, agent_id: str | None = None, owner: str | None = None
) -> list[AgentStats]:
    """Figures for every agent (or one), counting every owner's sessions (or one owner's)."""
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(_STATS_SQL, {"agent": agent_id, "owner": owner})
        ).fetchall()
    out = []
    for r in rows:
        mean, p95 = r["latency_ms_mean"], r["latency_ms_p95"]
        out.append(
            AgentStats(
                agent_id=r["agent_id"],
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
    async with pool.connection() as conn:
        cur = await conn.execute(
            "DELETE FROM turn_log WHERE finished_at < now() - make_interval(secs => %s)",
            (retention_days * 86400,),
        )
    return cur.rowcount
