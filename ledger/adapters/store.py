"""``--db URL`` → eventsourcing's persistence settings (SPEC §13).

``sqlite:///path`` (relative) or ``sqlite:////abs/path``, and
``postgresql://user:pass@host:port/dbname``.  Each maps to eventsourcing's own store,
extended in ``stores/`` to read many aggregates in one query.  Anything else is a ``StoreError`` with one
sentence; the CLI prints it as one line.

``read_only`` is for the commands that only read (§13): no tables are created, a SQLite file
is opened read-only (and a missing one is a ``StoreError``, never created), and PostgreSQL
sessions are read-only transactions, so that read-only credentials suffice and a read can
never write by mistake.

The store's bounds on waiting (README "Store limits") come from ``environ``, a mapping of
``LEDGER_*`` names: the settings' (``Settings.store_environ``, passed by the composition root
``entrypoints.compose``), or the process environment for a library caller that passes none.
``LEDGER_PG_<NAME>`` becomes the store setting ``POSTGRES_<NAME>`` for each name below, and
``LEDGER_SQLITE_LOCK_TIMEOUT`` becomes ``SQLITE_LOCK_TIMEOUT``; the store checks the values
and has the defaults.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Mapping
from urllib.parse import quote, unquote, urlsplit

DEFAULT_URL = "sqlite:///ledger.db"
PG_LIMITS = ("LOCK_TIMEOUT", "STATEMENT_TIMEOUT", "IDLE_IN_TRANSACTION_SESSION_TIMEOUT", "CONNECT_TIMEOUT",
             "POOL_TIMEOUT", "TCP_USER_TIMEOUT", "KEEPALIVES_IDLE")


class StoreError(Exception):
    pass


READ_ONLY = {"CREATE_TABLE": "no", "READ_ONLY": "yes"}


def limits(environ: Mapping[str, str], names: tuple[str, ...], source: str, target: str) -> dict[str, str]:
    return {target + name: environ[source + name] for name in names if environ.get(source + name)}


def persistence_env(url: str, read_only: bool = False, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
        if parts.netloc or not path:
            raise StoreError(f"bad SQLite URL {url!r}: use sqlite:///relative.db or sqlite:////abs/path.db")
        if not read_only:
            return {"PERSISTENCE_MODULE": "stores.sqlite", "SQLITE_DBNAME": path, "SQLITE_LOCK_TIMEOUT": "30",
                    **limits(environ, ("LOCK_TIMEOUT",), "LEDGER_SQLITE_", "SQLITE_")}
        if not os.path.isfile(path):
            raise StoreError(f"no ledger at {path} (only a command that writes creates one)")
        return {
            "PERSISTENCE_MODULE": "stores.sqlite",
            "SQLITE_DBNAME": f"file:{quote(os.path.abspath(path))}?mode=ro",  # a URI: read-only, never created
            "SQLITE_PATH": path,
            "SQLITE_LOCK_TIMEOUT": "30",
            **READ_ONLY,
            **limits(environ, ("LOCK_TIMEOUT",), "LEDGER_SQLITE_", "SQLITE_"),
        }
    if parts.scheme in ("postgresql", "postgres"):
        dbname = unquote(parts.path.lstrip("/"))
        try:
            port = parts.port or 5432
        except ValueError:
            raise StoreError(f"bad PostgreSQL URL {url!r}: the port is not a number") from None
        if not parts.hostname or not dbname or "/" in dbname:
            raise StoreError(f"bad PostgreSQL URL {url!r}: use postgresql://user:pass@host:port/dbname")
        return {
            "PERSISTENCE_MODULE": "stores.postgres",
            "POSTGRES_DBNAME": dbname,
            "POSTGRES_HOST": parts.hostname,
            "POSTGRES_PORT": str(port),
            "POSTGRES_USER": unquote(parts.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
            "POSTGRES_CONNECT_TIMEOUT": "5",
            "POSTGRES_POOL_SIZE": "2",
            "POSTGRES_MAX_OVERFLOW": "4",
            **(READ_ONLY if read_only else {}),
            **limits(environ, PG_LIMITS, "LEDGER_PG_", "POSTGRES_"),
        }
    raise StoreError(f"unsupported database URL {url!r}: use sqlite:///path or postgresql://user:pass@host:port/dbname")


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url



# --- why a store cannot be used ------------------------------------------------------------------
# One place says what went wrong in words an operator can act on: the CLI's "cannot open the
# store" line and the worker's log both use describe_store_error.  PostgreSQL errors are told
# apart by SQLSTATE when the driver gives one, else by libpq's text.
KINDS: dict[str, tuple[str, tuple[str, ...], str]] = {
    # kind: (label, SQLSTATEs, libpq's or sqlite3's text, as a case-insensitive pattern)
    "database_missing": ("database missing", ("3D000",), r'database "[^"]*" does not exist'),
    "bad_credentials": ("bad credentials", ("28P01", "28000"),
                        r'password authentication failed|authentication failed|no password supplied'
                        r'|no pg_hba\.conf entry|role "[^"]*" does not exist'),
    "connection_refused": ("connection refused", (), r"connection refused"),
    "unknown_host": ("unknown host", (), r"could not translate host name|failed to resolve host|name or service not known"
                                         r"|nodename nor servname|temporary failure in name resolution"),
    "connection_lost": ("connection lost", ("57P01", "57P02", "57P03"),
                        r"server closed the connection unexpectedly|terminating connection|connection is lost"
                        r"|the database system is (?:starting up|shutting down)"),
    "timeout": ("timed out", ("57014",), r"timeout expired|couldn't get a connection after|timed out"),
    "sqlite_file": ("SQLite file unusable", (), r"unable to open database file|readonly database"
                                                r"|file is not a database|disk i/o error"),
}


class ConnectFailures(logging.Filter):
    """The reason of the latest failed PostgreSQL connection attempt in this process.

    eventsourcing's store connects through a pool, which reports a refused connection, a
    missing database and a rejected role alike as "couldn't get a connection after 5.00 sec".
    psycopg logs each attempt's real reason at DEBUG ("connection failed: ..."); this filter on
    the "psycopg" logger keeps it (cleared when the next attempt starts) and lets through
    only the records at or above ``passes``, the level the logger was set to, so what is
    shown does not change."""

    def __init__(self, passes: int) -> None:
        super().__init__()
        self.passes = passes
        self.last: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if isinstance(record.msg, str) and record.levelno == logging.DEBUG:
            if record.msg.startswith("connection failed") or (args and isinstance(args[-1], Exception)):
                self.last = str(args[-1]) if args else record.getMessage()  # e.g. "failed to resolve host"
            elif record.msg.startswith(("connection attempt", "connection succeeded")):
                self.last = None
        return record.levelno >= self.passes


def _watch_connections() -> ConnectFailures:
    """Keep the logger at DEBUG, so the attempts are seen, whatever level is asked for (the
    PostgreSQL store's import asks for ERROR): the level asked for becomes what passes."""
    logger = logging.getLogger("psycopg")
    for existing in logger.filters:
        if isinstance(existing, ConnectFailures):
            return existing
    watcher = ConnectFailures(logger.level or logging.WARNING)  # psycopg's own default is WARNING

    def set_level(level: int | str) -> None:
        watcher.passes = level if isinstance(level, int) else logging.getLevelName(level)
        logging.Logger.setLevel(logger, logging.DEBUG)

    logger.addFilter(watcher)
    logger.setLevel = set_level  # type: ignore[method-assign]
    logging.Logger.setLevel(logger, logging.DEBUG)
    return watcher


CONNECT_FAILURES = _watch_connections()


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _kind(sqlstate: str | None, text: str) -> str | None:
    for kind, (_, states, pattern) in KINDS.items():
        if (sqlstate and sqlstate in states) or re.search(pattern, text, re.IGNORECASE):
            return kind
    return None


def _reason(exc: BaseException) -> tuple[str | None, str]:
    """(kind, the most telling text) for an error raised while opening or using a store: the
    first error of the chain whose kind is known, else every distinct message of the chain."""
    texts: list[str] = []
    for error in _chain(exc):
        text = " ".join(str(error).split()) or type(error).__name__
        kind = _kind(getattr(error, "sqlstate", None), text)
        if kind == "timeout" and "couldn't get a connection" in text.lower() and CONNECT_FAILURES.last:
            hidden = " ".join(CONNECT_FAILURES.last.split())
            kind, text = _kind(None, hidden) or kind, f"{hidden} ({text})"
        if kind:
            return kind, text
        if text not in texts:
            texts.append(text)
    return None, ": ".join(texts)


def store_error_kind(exc: BaseException) -> str | None:
    """A key of KINDS (connection_refused, database_missing, bad_credentials, ...), or None
    when the error is none of those."""
    return _reason(exc)[0]


def describe_store_error(exc: BaseException) -> str:
    """One line for people: what kind of failure, then the driver's own words."""
    kind, text = _reason(exc)
    return f"{KINDS[kind][0]}: {text}" if kind else text
