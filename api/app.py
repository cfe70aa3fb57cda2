"""The ASGI application of `ledger serve` (docs/spec.md §15), on FastAPI: `POST /v1/commands`
through the group commit, the reads (``api.reads``), health, readiness and metrics, and
every refusal as ``{"error": {"code", "message"}}``.  OpenAPI is generated at /docs.

`POST /v1/commands`: a body that is not JSON (or not UTF-8, a key twice, too deep: §12) is a
400 and nothing is applied; a JSON value that is neither an object nor an array is a 400
too.  Inside a well-formed body each command stands alone, as a line of `ledger apply`
does: an invalid one answers its own ``{"ok": false, ...}`` (status 200), the others apply.
"""
from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import Response

from api import reads
from api.edge import Edge
from api.errors import ApiError, BodyTooLarge, json_response, refusal
from api.service import Service, allowed, bearer, missing
from api.writer import Stopped
from ledger.adapters.retry import StoreUnavailable
from ledger.domain.errors import LedgerError
from ledger.service import jsonlines

log = logging.getLogger("ledger.serve")
COMMAND_SCHEMA = {"oneOf": [{"type": "object", "description": "one command (docs/spec.md §12)"},
                            {"type": "array", "items": {"type": "object"}, "description": "commands, applied in order"}]}


def decode_body(raw: bytes, limit: int) -> list[Any] | dict[str, Any]:
    try:
        value = jsonlines.decode(raw, limit)
    except LedgerError as error:
        raise ApiError(400, error.code, error.message.replace("the line", "the body")) from None
    if not isinstance(value, (dict, list)):
        raise ApiError(400, "validation_error", "the body is neither a command object nor an array of commands")
    return value


async def authorize(service: Service, request: Request, scope: Optional[str]) -> None:
    """The request's token may do ``scope``; the store is asked only when the check is not
    cached (then in the thread pool, off the event loop)."""
    secret = bearer(request.headers.get("authorization"))
    if secret is None:
        raise missing()
    hit, token = service.cached(secret)
    if not hit:
        token = await run_in_threadpool(service.check, secret)
    allowed(token, scope)


def create_app(service: Service) -> Edge:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(service.close)  # after the last request: the writer drains

    app = FastAPI(title="UTA ledger", summary="The ledger's network service (docs/spec.md §15)", lifespan=lifespan)
    handlers(app)
    limit = service.root.settings.serve_max_body_bytes

    @app.post("/v1/commands", tags=["commands"], openapi_extra={"requestBody": {
        "required": True, "content": {"application/json": {"schema": COMMAND_SCHEMA}}}},
        responses={200: {"description": "the result (one command) or the results in order (an array)"}})
    async def post_commands(request: Request) -> Response:
        """Apply one command or an array of them; concurrent requests share one transaction (group commit)."""
        await authorize(service, request, "ingest")
        value = decode_body(await request.body(), limit)
        objs = value if isinstance(value, list) else [value]
        if not objs:
            return json_response([])
        try:
            results = await asyncio.wrap_future(service.writer.submit(objs))
        except Stopped:
            raise ApiError(503, "unavailable", "the service is stopping: send the command again elsewhere") from None
        except StoreUnavailable as error:
            raise ApiError(503, "unavailable", f"{error}; these commands may or may not have been applied "
                                               "(a command with a command_id is applied once however often it is sent)"
                           ) from None
        return json_response(results if isinstance(value, list) else results[0])

    @app.get("/healthz", tags=["health"])
    async def healthz() -> Response:
        """The process is up (no token needed)."""
        return json_response({"ok": True})

    @app.get("/readyz", tags=["health"])
    async def readyz(request: Request) -> Response:
        """The store answers (503 when it does not)."""
        await authorize(service, request, None)
        try:
            head = await run_in_threadpool(service.ready)
        except Exception as error:  # noqa: BLE001 - the driver's own error: said in the answer
            return refusal(503, "unavailable", f"the store does not answer: {type(error).__name__}")
        return json_response({"ok": True, "head": head, "writer": service.writer.alive()})

    @app.get("/metrics", tags=["health"], response_class=Response)
    async def metrics(request: Request) -> Response:
        """Prometheus text: requests, latencies, group-commit batch sizes, jobs' marks, projection lag."""
        await authorize(service, request, None)
        text = await run_in_threadpool(service.metrics.text)
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    reads.add_routes(app, service)
    return Edge(app, service.metrics, limit)


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
