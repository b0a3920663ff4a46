"""Start a slow turn and hold its session's lease until killed (for crash tests).

Run as ``python -m tests.support.hold_turn`` from the project root with ``DATABASE_URL``
set. It creates (or reuses) agent ``slow`` (the offline model, 60 s per answer) and
session ``crash-1``, prints ``holding`` and then runs a turn that a test SIGKILLs midway.
Optional environment: ``HOLD_SESSION_ID``, ``HOLD_AGENT_ID``, ``HOLD_MESSAGE``,
``HOLD_DELAY_SECONDS``, ``HOLD_LEASE_TIMEOUT_SECONDS`` (2 by default) and ``HOLD_TOOLS``
(comma-separated tool names, none by default); ``SESSIONGRAPH_*`` settings apply too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

from runtime import Conflict, Runtime, Settings
from runtime.agents import ModelSpec, TemplateSpec

SESSION_ID = os.environ.get("HOLD_SESSION_ID", "crash-1")
AGENT_ID = os.environ.get("HOLD_AGENT_ID", "slow")
MESSAGE = os.environ.get("HOLD_MESSAGE", "hello")
DELAY_SECONDS = float(os.environ.get("HOLD_DELAY_SECONDS", "60"))
TOOLS = [t for t in os.environ.get("HOLD_TOOLS", "").split(",") if t]
LEASE_TIMEOUT_SECONDS = float(os.environ.get("HOLD_LEASE_TIMEOUT_SECONDS", "2"))


async def main() -> int:
    settings = Settings(lease_timeout_seconds=LEASE_TIMEOUT_SECONDS, sweep_interval_seconds=0)
    if not settings.database_url:
        print("DATABASE_URL is not set", file=sys.stderr)
        return 2
    async with Runtime.open(settings, sweeper=False) as rt:
        spec = TemplateSpec(
            name="slow",
            model=ModelSpec(provider="offline", params={"delay_seconds": DELAY_SECONDS}),
            tools=TOOLS,
        )
        with contextlib.suppress(Conflict):
            await rt.templates.create(spec, owner="local", agent_id=AGENT_ID)
        await rt.session(SESSION_ID, agent_id=AGENT_ID)
        # Built before the turn, so the slow part the test kills is the model call.
        await rt.graphs.get(await rt.templates.get(AGENT_ID))
        print("holding", flush=True)
        result = await rt.chat(SESSION_ID, MESSAGE)
        print(f"finished: {result.reply}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
