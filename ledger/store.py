"""``--db URL`` → eventsourcing's persistence settings (SPEC §13).

``sqlite:///path`` (relative) or ``sqlite:////abs/path``, and
``postgresql://user:pass@host:port/dbname``.  Each maps to eventsourcing's own store,
extended in ``stores/`` to read many aggregates in one query.  Anything else is a ``StoreError`` with one
sentence; the CLI prints it as one line.

The store's bounds on waiting (README "Store limits") come from the environment:
``LEDGER_PG_<NAME>`` becomes the store setting ``POSTGRES_<NAME>`` for each name below, and
``LEDGER_SQLITE_LOCK_TIMEOUT`` becomes ``SQLITE_LOCK_TIMEOUT``; the store checks the values
and has the defaults.
"""
from __future__ import annotations

import os
from typing import Mapping
from urllib.parse import unquote, urlsplit

DEFAULT_URL = "sqlite:///ledger.db"
PG_LIMITS = ("LOCK_TIMEOUT", "STATEMENT_TIMEOUT", "IDLE_IN_TRANSACTION_SESSION_TIMEOUT", "CONNECT_TIMEOUT",
             "POOL_TIMEOUT", "TCP_USER_TIMEOUT", "KEEPALIVES_IDLE")


class StoreError(Exception):
    pass


def limits(environ: Mapping[str, str], names: tuple[str, ...], source: str, target: str) -> dict[str, str]:
    return {target + name: environ[source + name] for name in names if environ.get(source + name)}


def persistence_env(url: str, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
        if parts.netloc or not path:
            raise StoreError(f"bad SQLite URL {url!r}: use sqlite:///relative.db or sqlite:////abs/path.db")
        return {
            "PERSISTENCE_MODULE": "stores.sqlite",
            "SQLITE_DBNAME": path,
            "SQLITE_LOCK_TIMEOUT": "30",
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
            **limits(environ, PG_LIMITS, "LEDGER_PG_", "POSTGRES_"),
        }
    raise StoreError(f"unsupported database URL {url!r}: use sqlite:///path or postgresql://user:pass@host:port/dbname")


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url

