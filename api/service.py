"""What one `ledger serve` process holds: the writer (group commit), the application and read
models' connections for reads, the token checks, the metrics.  Built from the composition
root (``entrypoints.compose.Root``); closed when the server stops.

Reads run in the server's thread pool on their own application (read-only, its own
connections: PostgreSQL's pool, SQLite's per-thread connections) and one read-model
connection per thread; writes go to the writer's thread and its own application.
"""
from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING, Callable, Optional

from api.errors import ApiError
from api.metrics import Metrics
from api.tokens import Token, Tokens
from api.writer import Writer
from ledger.domain import ids

if TYPE_CHECKING:
    from entrypoints.compose import Root
    from projections.sql import ViewDatabase

READ_POOL = {"POSTGRES_POOL_SIZE": "4", "POSTGRES_MAX_OVERFLOW": "12"}  # reads in many threads at once


class Service:
    def __init__(self, root: "Root", clock: Callable[[], datetime]) -> None:
        from projections.sql import ViewDatabase

        self.root, self.clock = root, clock
        settings = root.settings
        allowance = settings.future_allowance
        self.latest = lambda: clock() + allowance
        self.write_app = root.open_app()  # creates the ledger's tables on a new store
        with_table = ViewDatabase(root.store_env())
        try:
            Tokens(with_table)  # creates the token table on a new store
        finally:
            with_table.close()
        self.read_env = {**root.store_env(read_only=True), **READ_POOL}
        self.read_app = root.open_app(self.read_env)
        self._local = threading.local()
        self._opened: list["ViewDatabase"] = []
        self._lock = threading.Lock()
        self._checked: dict[str, tuple[Optional[Token], float]] = {}  # float-ok: monotonic expiry
        self.token_ttl = settings.serve_token_cache_seconds
        self.metrics = Metrics(self.job_marks)
        self.writer = Writer(lambda objs: self.write_app.apply(objs, clock, self.latest), settings.serve_batch_commands,
                             settings.serve_batch_wait_ms / 1000, self.metrics.batches.observe)

    def close(self) -> None:
        """Answer what the writer holds, then close every connection."""
        self.writer.stop()
        with self._lock:
            for db in self._opened:
                db.close()
            self._opened.clear()
        self.read_app.close()
        self.write_app.close()

    def views(self) -> "ViewDatabase":
        """This thread's read-only connection to the read models (and the token table)."""
        db = getattr(self._local, "db", None)
        if db is None:
            from projections.sql import ViewDatabase

            db = self._local.db = ViewDatabase(self.read_env)
            with self._lock:
                self._opened.append(db)
        return db

    # --- tokens ---------------------------------------------------------------------------
    def cached(self, secret: str) -> tuple[bool, Optional[Token]]:
        found = self._checked.get(secret)
        if found is not None and found[1] > time.monotonic():
            return True, found[0]
        return False, None

    def check(self, secret: str) -> Optional[Token]:
        """The token in use for this secret (or None), read from the store at most once per
        LEDGER_SERVE_TOKEN_CACHE_SECONDS."""
        hit, token = self.cached(secret)
        if hit:
            return token
        try:
            token = Tokens(self.views(), create=False).check(secret)
        except Exception as error:  # noqa: BLE001 - the store does not answer
            raise ApiError(503, "unavailable", f"the store does not answer: {type(error).__name__}") from None
        if self.token_ttl:
            if len(self._checked) > 10_000:
                self._checked.clear()
            self._checked[secret] = (token, time.monotonic() + self.token_ttl)
        return token

    # --- what /metrics reads from the store -------------------------------------------------
    def job_marks(self) -> tuple[Optional[datetime], Optional[datetime], Optional[int]]:
        from projections import runner

        app, db = self.read_app, self.views()
        interest, sweep = app.find(ids.run_log("interest")), app.find(ids.run_log("sweep"))
        lag = None
        if runner.built(db):
            lag = max(0, (app.recorder.max_notification_id() or 0) - runner.position(db))
        return (getattr(interest, "last_hour", None), getattr(sweep, "last_mark", None), lag)

    def ready(self) -> int:
        """The log's head: the store answers (else its error)."""
        return self.read_app.recorder.max_notification_id() or 0


def bearer(header: Optional[str]) -> Optional[str]:
    if header and header[:7].lower() == "bearer ":
        secret = header[7:].strip()
        return secret or None
    return None


def allowed(token: Optional[Token], scope: Optional[str]) -> Token:
    """The token, if it may do what ``scope`` names (None: any token); else the 401 or 403."""
    if token is None:
        raise ApiError(401, "unauthorized", "a valid token is needed: Authorization: Bearer <token> "
                                            "(`ledger token create`); this one is unknown or revoked")
    if scope is not None and not token.allows(scope):
        raise ApiError(403, "forbidden", f"the token {token.name} lacks the scope {scope} "
                                         f"(it has: {', '.join(token.scopes)})")
    return token


def missing() -> ApiError:
    return ApiError(401, "unauthorized", "a token is needed: Authorization: Bearer <token> (`ledger token create`)")

