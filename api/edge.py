"""The ASGI layer around the routes: every request is timed and counted (`/metrics`), and a
body over LEDGER_SERVE_MAX_BODY_BYTES is refused with 413 before the route sees it (by its
Content-Length, or while it is read when it has none)."""
from __future__ import annotations

import time
from typing import Any, Callable

from api.errors import BodyTooLarge, error_body
from api.metrics import Metrics

Scope = dict[str, Any]


class Edge:
    def __init__(self, app: Callable[..., Any], metrics: Metrics, max_body: int) -> None:
        self.app, self.metrics, self.max_body = app, metrics, max_body

    async def __call__(self, scope: Scope, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), [500]

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            length = dict(scope["headers"]).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                await self.too_large(sending)
            else:
                await self.app(scope, self.bounded(receive), sending)
        finally:
            route = scope.get("route")
            self.metrics.observe(getattr(route, "path", "unmatched"), status[0], time.perf_counter() - started)

    def bounded(self, receive: Callable[..., Any]) -> Callable[..., Any]:
        seen = [0]

        async def receiving() -> dict[str, Any]:
            message = await receive()
            seen[0] += len(message.get("body", b""))
            if seen[0] > self.max_body:
                raise BodyTooLarge()
            return message

        return receiving

    async def too_large(self, send: Callable[..., Any]) -> None:
        body = error_body("payload_too_large", f"the request body is larger than {self.max_body} bytes "
                                               "(LEDGER_SERVE_MAX_BODY_BYTES)")
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
