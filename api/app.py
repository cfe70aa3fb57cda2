"""The ASGI application of `ledger serve` (docs/spec.md §15), on FastAPI: `POST /v1/commands`
(``api.commands``), the reads (``api.reads``), health, readiness and metrics, and every
refusal as ``{"error": {"code", "message"}}``.  OpenAPI is generated at /docs.
"""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import Response

from api import commands, reads
from api.edge import Edge
from api.errors import ApiError, BodyTooLarge, json_response, refusal
from api.service import Service

log = logging.getLogger("ledger.serve")


def create_app(service: Service) -> Edge:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(service.close)  # after the last request: the writer drains

    app = FastAPI(title="UTA ledger", summary="The ledger's network service (docs/spec.md §15)", lifespan=lifespan)
    handlers(app)
    limit = service.root.settings.serve_max_body_bytes

    @app.post(commands.PATH, tags=["commands"], openapi_extra={"requestBody": {
        "required": True, "content": {"application/json": {"schema": commands.SCHEMA}}}},
        responses={200: {"description": "the result (one command) or the results in order (an array)"}})
    async def post_commands(request: Request) -> Response:
        """Apply one command or an array of them; concurrent requests share one transaction (group commit)."""
        status, body = await commands.answer(service, request.headers.get("authorization"), await request.body())
        return Response(body, status_code=status, media_type="application/json")

    @app.get("/healthz", tags=["health"])
    async def healthz() -> Response:
        """The process is up (no token needed)."""
        return json_response({"ok": True})

    @app.get("/readyz", tags=["health"])
    async def readyz(request: Request) -> Response:
        """The store answers (503 when it does not)."""
        await commands.authorize(service, request.headers.get("authorization"), None)
        try:
            head = await run_in_threadpool(service.ready)
        except Exception as error:  # noqa: BLE001 - the driver's own error: said in the answer
            return refusal(503, "unavailable", f"the store does not answer: {type(error).__name__}")
        return json_response({"ok": True, "head": head, "writer": service.writer.alive()})

    @app.get("/metrics", tags=["health"], response_class=Response)
    async def metrics(request: Request) -> Response:
        """Prometheus text: requests, latencies, group-commit batch sizes, jobs' marks, projection lag."""
        await commands.authorize(service, request.headers.get("authorization"), None)
        text = await run_in_threadpool(service.metrics.text)
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    reads.add_routes(app, service)
    return Edge(app, service, limit)


def handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> Response:
        return refusal(error.status, error.code, error.message)

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, _: BodyTooLarge) -> Response:
        return refusal(413, "payload_too_large", "the request body is larger than the limit "
                                                 "(LEDGER_SERVE_MAX_BODY_BYTES)", {"connection": "close"})

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> Response:
        if error.status_code == 404:
            return refusal(404, "not_found", "no such path (see /docs)")
        if error.status_code == 405:
            return refusal(405, "method_not_allowed", "the path does not take this method (see /docs)")
        return refusal(error.status_code, "validation_error", str(error.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> Response:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body", "path"))
        return refusal(400, "validation_error", f"{where or 'the request'}: {first.get('msg', 'is not valid')}")

    @app.exception_handler(Exception)
    async def failed(_: Request, error: Exception) -> Response:
        log.exception("request failed")
        return refusal(500, "internal_error", f"the service failed ({type(error).__name__}); it is logged")
