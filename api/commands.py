"""`POST /v1/commands` (§15): the body decoded as `ledger apply` decodes a line (§12), the
commands handed to the writer (group commit), the results in order.

A body that is not JSON (or not UTF-8, a key twice, too deep: §12) is a 400 and nothing is
applied; so is a JSON value that is neither an object nor an array.  Inside a well-formed
body each command stands alone, as a line of `ledger apply` does: an invalid one answers
its own ``{"ok": false, ...}`` (status 200) and the others apply.

``answer`` serves both ways in: the route of the FastAPI application (documented in
/docs; it takes bodies without a Content-Length), and ``api.edge.Edge``'s direct path for
a POST with a Content-Length, which skips the framework's per-request work.
"""
from __future__ import annotations

from typing import Any, Optional

import orjson
from starlette.concurrency import run_in_threadpool

from api.errors import ApiError, error_body
from api.service import Service, allowed, bearer, missing
from api.writer import Stopped
from ledger.adapters.retry import StoreUnavailable
from ledger.domain.errors import LedgerError
from ledger.service import jsonlines

PATH = "/v1/commands"
SCHEMA = {"oneOf": [{"type": "object", "description": "one command (docs/spec.md §12)"},
                    {"type": "array", "items": {"type": "object"}, "description": "commands, applied in order"}]}


def decode_body(raw: bytes, limit: int) -> Any:
    try:
        value = jsonlines.decode(raw, limit)
    except LedgerError as error:
        raise ApiError(400, error.code, error.message.replace("the line", "the body")) from None
    if not isinstance(value, (dict, list)):
        raise ApiError(400, "validation_error", "the body is neither a command object nor an array of commands")
    return value


async def authorize(service: Service, authorization: Optional[str], scope: Optional[str]) -> None:
    """The token may do ``scope``; the store is asked only when the check is not cached
    (then in the thread pool, off the event loop)."""
    secret = bearer(authorization)
    if secret is None:
        raise missing()
    hit, token = service.cached(secret)
    if not hit:
        token = await run_in_threadpool(service.check, secret)
    allowed(token, scope)


async def answer(service: Service, authorization: Optional[str], body: bytes) -> tuple[int, bytes]:
    """The status and JSON body answering a POST of ``body``."""
    try:
        await authorize(service, authorization, "ingest")
        value = decode_body(body, service.root.settings.serve_max_body_bytes)
        objs = value if isinstance(value, list) else [value]
        if not objs:
            return 200, b"[]"
        try:
            results = await service.writer.submit(objs)
        except Stopped:
            raise ApiError(503, "unavailable", "the service is stopping: send the command again elsewhere") from None
        except StoreUnavailable as error:
            raise ApiError(503, "unavailable", f"{error}; these commands may or may not have been applied "
                                               "(a command with a command_id is applied once however often it is sent)"
                           ) from None
    except ApiError as error:
        return error.status, error_body(error.code, error.message)
    return 200, orjson.dumps(results if isinstance(value, list) else results[0])
