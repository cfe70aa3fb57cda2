"""The ledger's settings: every ``LEDGER_*`` variable it reads, in one object (pydantic-settings).

They are read once, when a command needs them, by the composition root
(``entrypoints.compose``), which hands each part what it uses: nothing reads the environment
when a module is imported.  A bad value is a ``SettingsError``, one line that names the
variable (code ``invalid_setting``); the command line prints it and exits 2.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Optional

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ledger.adapters.store import DEFAULT_URL
from ledger.domain.horizon import FUTURE_ALLOWANCE, MAX_FUTURE_ALLOWANCE

PREFIX = "LEDGER_"


def whole(default: int, low: int, unit: str, meaning: str, high: Optional[int] = None) -> Any:
    """A whole number from ``low`` (to ``high``) of ``unit``: a setting a person counts in."""
    return Field(default, ge=low, le=high, description=meaning, json_schema_extra={"unit": unit})


def bound(meaning: str) -> Any:
    """A bound of the store on waiting, in whole seconds; the store checks it when it opens
    (stores/limits.py, stores/sqlite.py) and has its default."""
    return Field(None, description=meaning)


class SettingsError(ValueError):
    """A setting whose value cannot be used: one line, ``VARIABLE: 'value' is not ...``."""

    code = "invalid_setting"

    def __init__(self, variable: str, value: Any, message: str) -> None:
        super().__init__(f"{variable}: {value!r} {message}")
        self.variable, self.value = variable, value


class Settings(BaseSettings):
    """What the ledger reads from its environment, with the same names and defaults as ever.
    ``Settings.load()`` reads them; keyword arguments win (the command line's ``--db``)."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", frozen=True)

    database_url: str = Field(DEFAULT_URL, description="the store, sqlite:///path or postgresql://user:pass@host:port/db "
                                                       "(`--db` wins)")
    future_allowance_seconds: int = whole(int(FUTURE_ALLOWANCE.total_seconds()), 0, "seconds",
                                          "T4: how far past this machine's clock an instant may lie",
                                          high=MAX_FUTURE_ALLOWANCE)
    cache_aggregates: int = whole(20_000, 0, "aggregates", "aggregates a process keeps as it last saved them (0: none)")
    interest_batch_accounts: int = whole(500, 1, "accounts", "accounts per transaction of the interest run")
    sweep_batch_accounts: int = whole(500, 1, "accounts", "accounts per transaction of the sweep")
    sweep_processes: int = whole(0, 0, "processes", "processes of the sweep's read-only screen (0: one per CPU)")
    sweep_parallel_from: int = whole(20_000, 0, "accounts", "candidates from which the screen runs in those processes")
    projection_batch: int = whole(1000, 1, "events", "events per transaction of the read models")
    serve_host: str = Field("127.0.0.1", description="`ledger serve`: the address it listens on (`--host` wins)")
    serve_port: int = whole(8080, 1, "ports", "`ledger serve`: the TCP port (`--port` wins)", high=65535)
    serve_max_body_bytes: int = whole(1_048_576, 1024, "bytes", "`ledger serve`: the largest request body (413 above)")
    serve_batch_commands: int = whole(2000, 1, "commands", "`ledger serve`: commands per group commit (one transaction)",
                                      high=100_000)
    serve_batch_wait_ms: int = whole(1, 0, "milliseconds", "`ledger serve`: how long the writer waits for more "
                                                          "commands before it commits a batch smaller than the limit",
                                     high=1000)
    serve_token_cache_seconds: int = whole(1, 0, "seconds", "`ledger serve`: how long a token's check is reused "
                                                            "(a revocation takes effect within it)", high=60)
    nats_url: str = Field("nats://127.0.0.1:4222", description="`ledger consume`, `ledger publish`: the NATS server "
                                                                 "with JetStream (`--nats` wins)")
    pg_lock_timeout: Optional[str] = bound("waiting for a lock")
    pg_statement_timeout: Optional[str] = bound("one statement")
    pg_idle_in_transaction_session_timeout: Optional[str] = bound("a session idle inside an open transaction")
    pg_connect_timeout: Optional[str] = bound("opening a connection")
    pg_pool_timeout: Optional[str] = bound("waiting for a connection from the process's pool")
    pg_tcp_user_timeout: Optional[str] = bound("sent data a vanished server leaves unacknowledged")
    pg_keepalives_idle: Optional[str] = bound("a silent connection before keepalive probes start")
    sqlite_lock_timeout: Optional[str] = bound("waiting for the SQLite file's write lock")

    @field_validator("*", mode="before")
    @classmethod
    def _whole(cls, value: Any, info: Any) -> Any:
        """A count from the environment is ASCII digits only (no sign, point or exponent),
        within its bounds; checked here so that the error shows the value as it was given."""
        low, high = cls.bounds(info.field_name)
        if isinstance(value, str) and low is not None:
            text = value.strip()
            if not (text.isascii() and text.isdigit() and len(text) <= 9) or int(text) < low or \
                    (high is not None and int(text) > high):
                raise ValueError("not a whole number within bounds")
            return int(text)
        return value

    @classmethod
    def bounds(cls, name: str) -> tuple[Optional[int], Optional[int]]:
        """A count's lowest and highest value (None: not a count, or no highest)."""
        found = {k: getattr(m, k) for m in cls.model_fields[name].metadata for k in ("ge", "le") if hasattr(m, k)}
        return found.get("ge"), found.get("le")

    @classmethod
    def load(cls, **overrides: Any) -> "Settings":
        """The environment's settings, ``overrides`` first; a bad value is a SettingsError."""
        try:
            return cls(**overrides)
        except ValidationError as error:
            first = error.errors()[0]
        raise cls.refusal(str(first["loc"][0]), first["input"])  # outside: no chained pydantic error

    @classmethod
    def refusal(cls, name: str, value: Any) -> SettingsError:
        """What is wrong with ``value`` for the count ``name``, in the variable's words."""
        low, high = cls.bounds(name)
        unit = (cls.model_fields[name].json_schema_extra or {}).get("unit")  # type: ignore[union-attr]
        span = f"from {low} to {high}" if high is not None else f"({low} or more)"
        return SettingsError(PREFIX + name.upper(), value, f"is not a whole number of {unit} {span}")

    @property
    def future_allowance(self) -> timedelta:
        return timedelta(seconds=self.future_allowance_seconds)

    def store_environ(self) -> dict[str, str]:
        """The store's bounds that are set, under their ``LEDGER_`` names, for
        ``ledger.adapters.store.persistence_env``."""
        return {PREFIX + name.upper(): value for name, value in self if name.startswith(("pg_", "sqlite_")) and value}
