"""CORS for the widget routes (``/v1/widget/...``): any page may ask, the key decides.

Widget requests come from the pages of many websites. Their preflights carry no key, so
they are answered for any origin; every actual request is then checked against its
publishable key's allowed origins (:func:`runtime.widgets.check_origin`), and a refusal is
readable by the page (so the widget can show it). No cookies are used: the visitor's
session token travels in a header, so echoing the origin exposes nothing.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["WIDGET_PREFIX", "WidgetCorsMiddleware"]

WIDGET_PREFIX = "/v1/widget/"
_ALLOW_HEADERS = "content-type, accept, x-widget-key, x-session-token"
_EXPOSE_HEADERS = "retry-after, x-request-id"


class WidgetCorsMiddleware:
    """Answer widget preflights and add CORS headers to widget responses."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(WIDGET_PREFIX):
            await self.app(scope, receive, send)
            return
        origin = Headers(scope=scope).get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            headers = {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": "GET, POST",
                "Access-Control-Allow-Headers": _ALLOW_HEADERS,
                "Access-Control-Max-Age": "600",
                "Vary": "Origin",
            }
            await Response(status_code=204, headers=headers)(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Access-Control-Allow-Origin"] = origin
                headers["Access-Control-Expose-Headers"] = _EXPOSE_HEADERS
                headers.append("Vary", "Origin")
            await send(message)

        await self.app(scope, receive, send_with_cors)
