"""Web widgets: publishable keys, the sessions their visitors start, and rate limits."""

from __future__ import annotations

from runtime.widgets.keys import PublishableKey, PublishableKeyStore, check_origin, normal_origin
from runtime.widgets.visitors import RATE_WINDOW_SECONDS, Visitor, WidgetVisitors, client_ip

__all__ = [
    "RATE_WINDOW_SECONDS",
    "PublishableKey",
    "PublishableKeyStore",
    "Visitor",
    "WidgetVisitors",
    "check_origin",
    "client_ip",
    "normal_origin",
]
