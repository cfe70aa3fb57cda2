"""``--db URL`` → eventsourcing's persistence settings (SPEC §13).

``sqlite:///path`` (relative) or ``sqlite:////abs/path``, and
``postgresql://user:pass@host:port/dbname``.  Each maps to eventsourcing's own store,
extended in ``stores/`` to read many aggregates in one query.  Anything else is a ``StoreError`` with one
sentence; the CLI prints it as one line.

``read_only`` is for the commands that only read (§13): no tables are created, a SQLite file
is opened read-only (and a missing one is a ``StoreError``, never created), and PostgreSQL
sessions are read-only transactions, so that read-only credentials suffice and a read can
never write by mistake.
"""
from __future__ import annotations

import os
from urllib.parse import quote, unquote, urlsplit

DEFAULT_URL = "sqlite:///ledger.db"


class StoreError(Exception):
    pass


READ_ONLY = {"CREATE_TABLE": "no", "READ_ONLY": "yes"}


def persistence_env(url: str, read_only: bool = False) -> dict[str, str]:
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
        if parts.netloc or not path:
            raise StoreError(f"bad SQLite URL {url!r}: use sqlite:///relative.db or sqlite:////abs/path.db")
        if not read_only:
            return {"PERSISTENCE_MODULE": "stores.sqlite", "SQLITE_DBNAME": path, "SQLITE_LOCK_TIMEOUT": "30"}
        if not os.path.isfile(path):
            raise StoreError(f"no ledger at {path} (only a command that writes creates one)")
        return {
            "PERSISTENCE_MODULE": "stores.sqlite",
            "SQLITE_DBNAME": f"file:{quote(os.path.abspath(path))}?mode=ro",  # a URI: read-only, never created
            "SQLITE_PATH": path,
            "SQLITE_LOCK_TIMEOUT": "30",
            **READ_ONLY,
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
        }
    raise StoreError(f"unsupported database URL {url!r}: use sqlite:///path or postgresql://user:pass@host:port/dbname")


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url

