"""The service's bearer tokens (§15): a table ``api_tokens`` in the ledger's own database.

Each row is a name, its scopes, the SHA-256 of its secret (never the secret: a secret is 32
random bytes, so a plain hash cannot be searched back), when it was made and when revoked.
Every `ledger serve` process on the same database reads the same rows, so a revocation
reaches them all (within LEDGER_SERVE_TOKEN_CACHE_SECONDS, the time a check is reused).
The rows are not events: tokens are the service's access control, not ledger facts, and the
audit's chain and replay stay about money alone (docs/architecture.md, "Tokens").
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

from ledger.domain.errors import LedgerError
from ledger.read.render import rfc3339

SCOPES = ("ingest", "read", "report", "audit", "admin")
PREFIX = "lt_"  # a ledger token: easy to find in a leaked log
TABLE = """CREATE TABLE IF NOT EXISTS api_tokens (
    name TEXT PRIMARY KEY, scopes TEXT NOT NULL, secret_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL, revoked_at TEXT)"""


def hashed(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Token:
    name: str
    scopes: tuple[str, ...]
    created_at: str
    revoked_at: Optional[str]

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "scopes": list(self.scopes), "created_at": self.created_at,
                "revoked_at": self.revoked_at}


class Tokens:
    """The table on a ``projections.sql.ViewDatabase`` (any object with ``execute``/``rows``
    taking ``?`` placeholders)."""

    def __init__(self, db: Any, create: bool = True) -> None:
        self.db = db
        if create:
            db.execute(TABLE)

    def create(self, name: str, scopes: list[str], at: datetime) -> str:
        """A new token's secret, shown once.  A revoked token's name may be used again."""
        if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise LedgerError("validation_error", f"token name {name!r}: use 1 to 64 letters, digits, '-', '_' or '.'")
        unknown = [s for s in scopes if s not in SCOPES]
        if unknown or not scopes:
            raise LedgerError("unknown_scope", f"scope {', '.join(unknown) or '(none given)'}: use {', '.join(SCOPES)}")
        secret = PREFIX + secrets.token_urlsafe(32)
        with self.db.transaction():
            found = self.db.rows("SELECT revoked_at FROM api_tokens WHERE name = ?", [name])
            if found and found[0][0] is None:
                raise LedgerError("token_exists", f"a token named {name} exists; revoke it first")
            self.db.execute("DELETE FROM api_tokens WHERE name = ?", [name])
            self.db.execute("INSERT INTO api_tokens (name, scopes, secret_hash, created_at) VALUES (?, ?, ?, ?)",
                            [name, " ".join(dict.fromkeys(scopes)), hashed(secret), rfc3339(at)])
        return secret

    def revoke(self, name: str, at: datetime) -> None:
        if not self.db.execute("UPDATE api_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                               [rfc3339(at), name]):
            raise LedgerError("unknown_token", f"no token named {name} is in use")

    def list(self) -> list[Token]:
        rows = self.db.rows("SELECT name, scopes, created_at, revoked_at FROM api_tokens ORDER BY name")
        return [Token(n, tuple(s.split()), c, r) for n, s, c, r in rows]

    def check(self, secret: str) -> Optional[Token]:
        """The token in use whose secret this is, or None (unknown or revoked)."""
        digest = hashed(secret)
        rows = self.db.rows("SELECT name, scopes, created_at, secret_hash FROM api_tokens "
                            "WHERE secret_hash = ? AND revoked_at IS NULL", [digest])
        if not rows or not hmac.compare_digest(rows[0][3], digest):
            return None
        name, scopes, created, _ = rows[0]
        return Token(name, tuple(scopes.split()), created, None)
