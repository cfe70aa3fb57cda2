"""Transient store errors: which failures a retry can cure, and how long to keep trying.

eventsourcing turns each driver's errors into its own (``eventsourcing.persistence``:
``OperationalError``, ``InterfaceError``, ``IntegrityError`` ...) raised ``from`` the driver's
error, and the projections' view database raises the driver's errors as they are.  So the
error and its causes are examined, by the attributes drivers give them (a PostgreSQL error
has a ``sqlstate``; an SQLite error says "locked"), without importing a driver here:

- ``CONFLICT`` — the transaction was rolled back and nothing was written: another writer
  got there first (a duplicate aggregate version, which psycopg's pipeline mode may report
  only as "pipeline aborted"), a serialisation failure, a deadlock, a lock or statement
  that ran out of time, SQLite's "database is locked".  Retried, then answered ``conflict``.
- ``CONNECTION`` — the connection failed or could not be had (refused, terminated, the
  server shutting down, the pool waited in vain).  Retried on a new connection, a few
  times; then the store counts as gone (``StoreUnavailable``: one line, exit 2).

Anything else (a bug, a constraint the ledger did not expect) is not transient and is
raised as it is.  The timing (sleep, random, clock) is injectable, so tests do not wait.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, TypeVar

CONFLICT = "conflict"
CONNECTION = "connection"

# PostgreSQL SQLSTATEs (Appendix A of its manual)
CONFLICT_STATES = {
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
    "55P03",  # lock_not_available (lock_timeout)
    "57014",  # query_canceled (statement_timeout)
}
CONNECTION_STATES = {
    "57P01", "57P02", "57P03",  # admin_shutdown, crash_shutdown, cannot_connect_now
    "57P04", "57P05",  # database_dropped, idle_session_timeout
    "25P03",  # idle_in_transaction_session_timeout: the server closed the session
    "53300",  # too_many_connections
    "3D000",  # invalid_catalog_name: the database is not there (any more)
}
CONFLICT_NAMES = {"PipelineAborted", "SerializationFailure", "DeadlockDetected", "LockNotAvailable", "QueryCanceled",
                  "StaleRead"}  # ledger.domain.errors.StaleRead: an attempt that read two moments
CONNECTION_NAMES = {"PoolTimeout", "ConnectionUnavailableError", "TooManyRequests", "PoolClosed"}
SQLITE_BUSY = ("database is locked", "database table is locked", "database is busy")


class StoreUnavailable(Exception):
    """The store could not be reached after the retries; ``str()`` is one sentence.
    ``done`` holds the results of the commands saved before it happened, in order (the
    commands after them have none: not applied, or, when the message says so, unknown):
    ``Outcome`` objects from ``LedgerApp.transact``, their machine form from ``apply``."""

    def __init__(self, message: str, done: Optional[list[Any]] = None) -> None:
        super().__init__(message)
        self.done = done or []
        self.in_doubt = False  # True when a commit lost its connection and could not be checked


def _chain(error: BaseException) -> list[BaseException]:
    """The error and its causes, outermost first (each once)."""
    seen: list[BaseException] = []
    current: Optional[BaseException] = error
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def classify(error: BaseException) -> Optional[str]:
    """``CONFLICT``, ``CONNECTION`` or None (not transient) for an error from a store."""
    if isinstance(error, StoreUnavailable):
        return None  # retried already: the verdict, not a fault to retry again
    chain = _chain(error)
    for e in chain:  # the most specific evidence first: a server's SQLSTATE or a known class
        state = getattr(e, "sqlstate", None)
        if state in CONFLICT_STATES:
            return CONFLICT
        if state in CONNECTION_STATES or (isinstance(state, str) and state.startswith("08")):
            return CONNECTION
        name = type(e).__name__
        if name in CONFLICT_NAMES:
            return CONFLICT
        if name in CONNECTION_NAMES:
            return CONNECTION
        if name == "OperationalError" and any(text in str(e).lower() for text in SQLITE_BUSY):
            return CONFLICT
    for e in chain:
        module, name = type(e).__module__.split(".")[0], type(e).__name__
        if name == "IntegrityError" and module == "eventsourcing":
            return CONFLICT  # a version another writer took first (eventsourcing's own class)
        if module == "psycopg" and name in ("OperationalError", "InterfaceError") and getattr(e, "sqlstate", None) is None:
            return CONNECTION  # a client-side failure: connection lost, closed or refused
    return None


def describe(error: BaseException) -> str:
    """The innermost cause's message, on one line."""
    inner = _chain(error)[-1]
    text = " ".join(str(inner).split()) or type(inner).__name__
    return text[:300]


T = TypeVar("T")


@dataclass
class RetryPolicy:
    """Bounded retries with jittered exponential backoff.

    ``attempts`` tries of a transaction that lost to another writer (then each of its items
    alone, ``single_attempts`` times each); after a connection failure, new tries for
    ``reconnect_for`` seconds (at most ``reconnects`` of them: a pool may hand out several
    connections that died together, one after the other); ``budget`` seconds of retrying
    in all for one batch, after which what is left answers ``conflict`` at once.  A delay
    is ``random() * min(cap, base * 2**n)`` ("full jitter"); after a connection failure
    ``reconnect_delay`` more per try, up to ``reconnect_cap``."""

    attempts: int = 8
    single_attempts: int = 3
    reconnects: int = 20
    reconnect_for: float = 10.0  # float-ok: seconds
    budget: float = 30.0  # float-ok: seconds
    base: float = 0.005  # float-ok: seconds
    cap: float = 0.5  # float-ok: seconds
    reconnect_delay: float = 0.1  # float-ok: seconds
    reconnect_cap: float = 1.0  # float-ok: seconds
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    random: Callable[[], float] = field(default=random.random, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    def pause(self, kind: str, attempt: int) -> None:
        delay = self.random() * min(self.cap, self.base * 2 ** attempt)
        if kind == CONNECTION:
            delay += min(self.reconnect_cap, self.reconnect_delay * (attempt + 1))
        self.sleep(delay)

    def racing(self, work: Callable[[], T], errors: tuple[type[Exception], ...], attempts: int) -> T:
        """``work()`` again after one of ``errors``, ``attempts`` tries in all, a random 50 to
        200 ms times the try's number apart: for idempotent work that races with itself in
        other processes (creating a new store's tables)."""
        for attempt in range(attempts):
            try:
                return work()
            except errors:
                if attempt == attempts - 1:
                    raise
                self.sleep((0.05 + 0.15 * self.random()) * (attempt + 1))  # float-ok: seconds (uniform 0.05-0.2)
        raise AssertionError("unreachable")

    def run(self, work: Callable[[], T], what: str = "reading from the store") -> T:
        """``work()`` again after each transient error, within the bounds; when they are
        spent, ``StoreUnavailable`` (a read has no ``conflict`` answer to give)."""
        failures = Failures(self)
        while True:
            try:
                return work()
            except Exception as error:  # noqa: BLE001 - classified below; the rest re-raised
                kind = classify(error)
                if kind is None:
                    raise
                if not failures.again(kind) or (kind == CONFLICT and failures.lost >= self.attempts):
                    verdict = "is unreachable" if kind == CONNECTION else "kept refusing"
                    raise StoreUnavailable(f"the store {verdict} while {what}: {describe(error)}") from error
                self.pause(kind, failures.count(kind) - 1)


class Failures:
    """The transient failures of one piece of work, counted against a policy's bounds."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.lost = 0  # conflicts
        self.disconnected = 0
        self.since: Optional[float] = None  # the first connection failure

    def again(self, kind: str) -> bool:
        """Count one failure of ``kind``; False when the connection cannot be had again."""
        if kind != CONNECTION:
            self.lost += 1
            return True
        self.disconnected += 1
        now = self.policy.clock()
        if self.since is None:
            self.since = now
        return self.disconnected <= self.policy.reconnects and now - self.since < self.policy.reconnect_for

    def count(self, kind: str) -> int:
        return self.disconnected if kind == CONNECTION else self.lost
