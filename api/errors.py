"""The service's refusals: an HTTP status and ``{"error": {"code", "message"}}`` (§15), the
code one of ``ledger.domain.errors.CODES``."""
from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from ledger.domain.errors import LedgerError


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        LedgerError(code, message)  # the code must be registered
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class BodyTooLarge(Exception):
    """The body grew past the limit while it was read (no Content-Length said so first)."""


def error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message}})


def refusal(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(error_body(code, message), status_code=status, media_type="application/json", headers=headers)


def json_response(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status_code=status, media_type="application/json")
