"""Python tools for the ``sessiongraph.tools`` tests, imported by ``tests.support.config_tools:…``
or by file path. ``whose_session`` shows the pattern for reading the calling session."""

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool

NOT_A_TOOL = 3


class NotAFunction:
    """A class is callable, but it is not a tool."""


@tool
def lookup(order_id: str) -> str:
    """Look up an order's status."""
    return f"order {order_id}: shipped"


def refund(order_id: str, amount: float) -> str:
    """Refund an amount on an order."""
    return f"refunded {amount:g} on {order_id}"


async def whose_session(config: RunnableConfig) -> str:
    """Say which session and owner are calling."""
    configurable = config.get("configurable") or {}
    return f"session {configurable.get('session_id')} of {configurable.get('owner')}"


def undocumented(x: int) -> int:
    return x
