"""The desk's Python tools, named in langgraph.json's ``sessiongraph.tools``."""

from __future__ import annotations

from langchain_core.runnables import RunnableConfig

ORDERS = {"A-1": "shipped on Monday", "B-2": "waiting for stock"}


def lookup_order(order_id: str, config: RunnableConfig) -> str:
    """Look up an order's status by its id (e.g. A-1)."""
    who = config.get("configurable", {}).get("session_id", "?")
    return f"order {order_id}: {ORDERS.get(order_id, 'not found')} (asked in {who})"


def refund(order_id: str, amount: float) -> str:
    """Refund an amount on an order."""
    return f"refunded {amount:.2f} on {order_id}"
