"""The ASGI layer around the routes: every request is timed and counted (`/metrics`), and a
body over LEDGER_SERVE_MAX_BODY_BYTES is refused with 413 before the route sees it (by its
Content-Length, or while it is read when it has none).

A `POST /v1/commands` with a Content-Length is answered here directly (``api.commands.answer``,
the same as its route): the framework's routing, dependency solving and middleware stack
cost more per request than a group-committed command itself."""
from __future__ import annotations

import time
from typing import Any, Callable

from api import commands
from api.errors import BodyTooLarge, error_body
from api.service import Service

Scope = dict[str, Any]


class Edge:
    def __init__(self, app: Callable[..., Any], service: Service, max_body: int) -> None:
        self.app, self.service, self.max_body = app, service, max_body
        self.metrics = service.metrics

    async def __call__(self, scope: Scope, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), [500]

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        direct = length is not None and scope["path"] == commands.PATH and scope["method"] == "POST"
        try:
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                await self.too_large(sending)
            elif direct:
                await self.post_commands(headers, receive, sending)
            else:
                await self.app(scope, self.bounded(receive), sending)
        finally:
            route = commands.PATH if direct else getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe(route, status[0], time.perf_counter() - started)

    async def post_commands(self, headers: dict[bytes, bytes], receive: Callable[..., Any],
                            send: Callable[..., Any]) -> None:
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        authorization = headers.get(b"authorization")
        status, body = await commands.answer(self.service, authorization.decode("latin-1") if authorization else None,
                                             b"".join(chunks))
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

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
