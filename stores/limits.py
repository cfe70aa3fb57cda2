"""The bounds on every wait of a ledger PostgreSQL connection (the guide: no lock, statement
or connection waits without bound).

Each bound is a store setting in whole seconds, read from the application's environment
(eventsourcing's own name where it has one; ``ledger.adapters.store.persistence_env`` maps the
``LEDGER_PG_*`` settings onto these names) and checked when the store opens: a value that is
not a whole number of seconds above zero refuses to open (zero would mean "no limit").

A statement or a lock wait that exceeds its bound is cancelled by the server and the
transaction rolled back; the driver raises ``psycopg.errors.QueryCanceled`` or
``LockNotAvailable`` (both ``OperationalError``), which eventsourcing's connection context
re-raises as its own ``OperationalError``.  A vanished server is noticed by TCP keepalives
and ``tcp_user_timeout``; a full pool by ``PoolTimeout`` (also an ``OperationalError``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

KEEPALIVE_PROBES = 3  # unanswered probes, each `keepalives_idle` apart, before the socket is closed


@dataclass(frozen=True)
class Limit:
    key: str
    default: int
    what: str


LIMITS = {
    "lock": Limit("POSTGRES_LOCK_TIMEOUT", 10, "waiting for a lock (the events table's, a row's, DDL)"),
    "statement": Limit("POSTGRES_STATEMENT_TIMEOUT", 60, "one statement, from start to end"),
    "idle_in_transaction": Limit("POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT", 5,
                                 "a session idle inside an open transaction (the server ends it)"),
    "connect": Limit("POSTGRES_CONNECT_TIMEOUT", 5, "opening a connection"),
    "pool": Limit("POSTGRES_POOL_TIMEOUT", 5, "waiting for a connection of the process's pool (a server that refuses connections: this long)"),
    "tcp_user": Limit("POSTGRES_TCP_USER_TIMEOUT", 30, "sent data left unacknowledged by a vanished server"),
    "keepalives_idle": Limit("POSTGRES_KEEPALIVES_IDLE", 10, "a silent connection before keepalive probes start"),
}


def read(env: Any) -> dict[str, int]:
    """Each bound in seconds: the environment's value, or the default.  ``env`` is a mapping
    or eventsourcing's ``Environment`` (whose ``get`` also looks up the app-prefixed name)."""
    values = {}
    for name, limit in LIMITS.items():
        raw = (env.get(limit.key) or "").strip()
        try:
            value = int(raw) if raw else limit.default
        except ValueError:
            value = 0
        if value <= 0:
            raise OSError(f"{limit.key} (bound on {limit.what}) must be a whole number of seconds above 0, "
                          f"not {raw!r}: nothing may wait without bound")
        values[name] = value
    return values


def read_only(env: Any) -> bool:
    """Whether ``ledger.adapters.store.persistence_env`` opened the store for reading only."""
    return env.get("READ_ONLY") == "yes"


def connection_kwargs(values: Mapping[str, int], read_only: bool = False, events: bool = False) -> dict[str, Any]:
    """libpq parameters that bound every statement, lock and socket wait of a connection.
    ``jit=off``: PostgreSQL compiles (JIT) any plan whose estimated cost is high, as a read of
    500 ids is: 200 ms of compiling for a 3 ms read.  ``read_only``: every transaction of the
    session is read-only (the commands that only read, §13).

    ``events``: the event store's own connections, whose every read is by key in index order
    (an aggregate's versions, notification ids), also get ``enable_bitmapscan=off``.  Where
    the statistics are stale (a table not yet analysed, an account grown since) the planner
    guesses a few events per aggregate and reads a page of a busy account's history -- 11
    events, LIMIT 11 -- as a bitmap scan of all its events then a sort: 40 ms at 100,000
    events, growing with its history, against 0.04 ms for the index scan (issue 15's
    history_first_page on PostgreSQL, 49x)."""
    settings: dict[str, Any] = {
        "jit": "off",
        **({"enable_bitmapscan": "off"} if events else {}),
        "statement_timeout": values["statement"] * 1000,
        "lock_timeout": values["lock"] * 1000,
        "idle_in_transaction_session_timeout": values["idle_in_transaction"] * 1000,
    }
    if read_only:
        settings["default_transaction_read_only"] = "on"
    return {
        "options": " ".join(f"-c {name}={value}" for name, value in settings.items()),
        "connect_timeout": values["connect"],
        "keepalives": 1,
        "keepalives_idle": values["keepalives_idle"],
        "keepalives_interval": values["keepalives_idle"],
        "keepalives_count": KEEPALIVE_PROBES,
        "tcp_user_timeout": values["tcp_user"] * 1000,
    }
