"""The reading routes of `ledger serve` (§15): an account, its history a page at a time, the
compliance reports (a page, or the whole period as CSV), the audit's digest and verify.
Each gives what the matching `ledger ... --json` command prints (``entrypoints.machine``).
They are sync routes: FastAPI runs them in its thread pool, on the service's read-only
application and this thread's read-model connection."""
from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, Optional

from fastapi import Depends, FastAPI, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response, StreamingResponse

from api.errors import ApiError, json_response
from api.service import Service, allowed, bearer, missing
from api.tokens import Token
from entrypoints import machine
from ledger.domain import ids
from ledger.domain.errors import LedgerError
from ledger.domain.times import parse_instant
from ledger.read.render import plain
from ledger.service.history import MAX_PAGE

DIGEST = r"^[0-9]+:[0-9a-f]{64}$"


class VerifyBody(BaseModel):
    """`POST /v1/audit/verify`: a head kept earlier (`GET /v1/audit/digest`) to prove the log up to it unchanged."""

    model_config = ConfigDict(extra="forbid")
    digest: Optional[str] = Field(None, pattern=DIGEST, description="POSITION:LINK as the digest gives it")


def instant(value: Optional[str], name: str) -> Optional[datetime]:
    if value is None:
        return None
    try:
        return parse_instant(value)
    except ValueError:
        raise ApiError(400, "validation_error", f"{name}: {value[:60]!r} is not an RFC 3339 timestamp "
                                                "such as 2026-01-01T00:00:00Z") from None


def offset(cursor: Optional[str]) -> int:
    if cursor is None:
        return 0
    if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 12):
        raise ApiError(400, "validation_error", f"cursor {cursor[:40]!r} is not one a page gave")
    return int(cursor)


def add_routes(app: FastAPI, service: Service) -> None:
    def scope(name: str) -> Callable[..., Token]:
        def check(authorization: Optional[str] = Header(None, include_in_schema=False)) -> Token:
            secret = bearer(authorization)
            if secret is None:
                raise missing()
            return allowed(service.check(secret), name)

        return check

    def views() -> Any:
        from projections import runner

        db = service.views()
        if not runner.built(db):
            raise ApiError(503, "views_not_built", "the read models have not been built in this store: "
                                                   "`ledger projections run` or the worker builds them")
        return db

    @app.get("/v1/accounts/{account}", tags=["accounts"])
    def account(account: str, as_of: Optional[str] = Query(None, description="RFC 3339: the state then"),
                _: Token = Depends(scope("read"))) -> Response:
        """§14's account view (`ledger account show --json`), now or at `as_of`."""
        at, app_ = instant(as_of, "as_of"), service.read_app
        try:
            acct = app_.state_at(ids.account(account), at) if at else app_.account(account)
        except LedgerError as error:
            raise ApiError(404, error.code, error.message) from None
        if acct is None:
            raise ApiError(404, "unknown_account", f"no account {account} at {as_of}")
        return json_response(machine.account_at(app_, acct, at))

    @app.get("/v1/accounts/{account}/history", tags=["accounts"])
    def history(account: str, since: Optional[str] = None, until: Optional[str] = None,
                type_: Optional[str] = Query(None, alias="type", description="an event name, e.g. Borrowed"),
                limit: int = Query(100, ge=1, le=MAX_PAGE), cursor: Optional[str] = None,
                _: Token = Depends(scope("read"))) -> Response:
        """A page of the account's events (§14), oldest first; `next_cursor` fetches the next page."""
        from ledger.service.history import Only, page

        only = Only(instant(since, "since"), instant(until, "until"), type_)
        try:
            events, next_cursor = page(service.read_app, account, only, limit, cursor)
        except LedgerError as error:
            raise ApiError(404 if error.code == "unknown_account" else 400, error.code, error.message) from None
        key = ids.account(account)
        return json_response({"items": [machine.history_row(key, e) for e in events], "next_cursor": next_cursor})

    @app.get("/v1/reports/{kind}", tags=["reports"])
    def report(request: Request, kind: str, since: Optional[str] = None, until: Optional[str] = None,
               account: Optional[str] = None, currency: Optional[str] = None,
               limit: int = Query(100, ge=1, le=MAX_PAGE), cursor: Optional[str] = None,
               _: Token = Depends(scope("report"))) -> Response:
        """A page of a compliance report's rows; with `Accept: text/csv` the whole period as CSV."""
        from projections import reports

        if kind not in reports.REPORTS:
            raise ApiError(404, "unknown_report", f"no report {kind[:40]!r}: use one of {', '.join(reports.REPORTS)}")
        start, end, first = instant(since, "since"), instant(until, "until"), offset(cursor)
        if "text/csv" in request.headers.get("accept", ""):
            views()  # built, or 503 before the answer starts
            found = reports.stream(service.read_app, views, kind, since=start, until=end, account=account,
                                   currency=currency)
            return StreamingResponse(as_csv(list(reports.REPORTS[kind].columns), (plain(r) for r in found)),
                                     media_type="text/csv; charset=utf-8")
        page = [plain(r) for r in reports.rows(service.read_app, views(), kind, since=start, until=end, account=account,
                                               currency=currency, limit=limit + 1, offset=first)]
        more = len(page) > limit
        return json_response({"items": page[:limit], "next_cursor": str(first + limit) if more else None})

    @app.get("/v1/audit/digest", tags=["audit"])
    def audit_digest(_: Token = Depends(scope("audit"))) -> Response:
        """The hash chain's head (`ledger audit digest --json`) and the events not sealed yet."""
        from projections import audit

        db = service.views()
        head = audit.digest(db)
        position, _, link = head.partition(":")
        return json_response({"head": head, "position": int(position), "link": link,
                              "unsealed": audit.unsealed(service.read_app, db)})

    @app.post("/v1/audit/verify", tags=["audit"])
    def audit_verify(body: Optional[VerifyBody] = None, _: Token = Depends(scope("audit"))) -> Response:
        """Every check of `ledger audit verify --json`, reading only."""
        from projections import audit

        result = audit.verify(service.read_app, service.views(), body.digest if body else None)
        return json_response(machine.verified(result))


def as_csv(columns: list[str], rows: Iterable[dict[str, Any]], chunk: int = 500) -> Iterator[str]:
    """The header (the first row's columns; ``columns`` when there is none), then the rows
    ``chunk`` at a time, as they are read."""
    out = io.StringIO()
    rows = iter(rows)
    first = next(rows, None)
    writer = csv.DictWriter(out, fieldnames=list(first) if first else columns, lineterminator="\n")
    writer.writeheader()
    if first is None:
        yield out.getvalue()
        return
    writer.writerow(first)
    for n, row in enumerate(rows, 2):
        writer.writerow(row)
        if n % chunk == 0:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()
