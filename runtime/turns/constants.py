"""Names the turn runner and the graphs it runs must agree on.

Like LangGraph's own ``CONFIG_KEY_*``, a reserved ``configurable`` key is named here once
and imported by name on both sides, never repeated as a bare string.
"""

from __future__ import annotations

__all__ = ["AGENT_NODE", "CONFIG_KEY_AGENT", "CONFIG_KEY_GUARD"]

# ``config["configurable"][CONFIG_KEY_GUARD]``: the turn's :class:`~runtime.turns.TurnGuard`
# (absent under ``langgraph dev``, where graphs run unguarded).
CONFIG_KEY_GUARD = "sessiongraph_guard"
# ``config["configurable"][CONFIG_KEY_AGENT]``: the running agent version
# (:class:`~runtime.agents.CompiledAgent`), whose model and tools the kit hands to graphs.
CONFIG_KEY_AGENT = "sessiongraph_agent"
# The node that calls the model: its tokens are the reply the runner streams.
AGENT_NODE = "agent"
