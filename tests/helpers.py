"""Test helpers: apply commands, assert results, and check that rejections record nothing."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from ledger.domain.account import Account
from ledger.service.app import LedgerApp
from ledger.domain.horizon import FUTURE_ALLOWANCE
from ledger.domain.platform import Platform
from ledger.read.views import account_view, at_mark

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
# T4: the tests' ledgers run with a fixed clock, "today", so that no test depends on the real
# one; every instant a test records lies before it (tests of T4 move it).
WALL = datetime(2026, 12, 1, tzinfo=timezone.utc)


def latest() -> datetime:
    """T4: the latest instant the tests' ledgers accept: their fixed clock plus the default
    allowance (pass it as ``latest`` to ``LedgerApp.apply``)."""
    return WALL + FUTURE_ALLOWANCE


def at(minutes: float = 0) -> str:
    """An RFC 3339 instant `minutes` after T0."""
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


class Ledger:
    """A LedgerApp with a clock that moves one second per command unless `at` is given."""

    def __init__(self, env: dict[str, str], wall: datetime = WALL) -> None:
        self.env = env
        self.app = LedgerApp(env=env)
        self.clock = T0
        self.wall = wall  # T4: the ledger's clock, for the latest instant it accepts

    def close(self) -> None:
        self.app.close()

    def reopen(self) -> "Ledger":
        """A second application on the same store (another process, or after a restart)."""
        return Ledger(self.env, self.wall)

    def latest(self) -> datetime:
        return self.wall + FUTURE_ALLOWANCE

    def now(self) -> datetime:
        self.clock += timedelta(seconds=1)
        return self.clock

    def apply(self, *cmds: dict[str, Any]) -> list[dict[str, Any]]:
        return self.app.apply(list(cmds), self.now, self.latest)

    def ok(self, cmd: dict[str, Any]) -> list[dict[str, Any]]:
        """Apply one command that must succeed; return its events."""
        [result] = self.apply(cmd)
        assert result["ok"], f"{cmd['type']} was rejected: {result}"
        return result["events"]

    def oks(self, *cmds: dict[str, Any]) -> None:
        for cmd in cmds:
            self.ok(cmd)

    def reject(self, cmd: dict[str, Any], code: str) -> dict[str, str]:
        """Apply one command that must be rejected with `code` and record nothing (T3)."""
        before = self.app.recorder.max_notification_id()
        [result] = self.apply(cmd)
        assert not result["ok"], f"{cmd['type']} was accepted: {result}"
        assert result["error"]["code"] == code, result["error"]
        assert result["error"]["message"], "every rejection says why"
        assert self.app.recorder.max_notification_id() == before, "a rejected command recorded something"
        return result["error"]

    def account(self, account: str) -> Account:
        """The account as the rules read it now: its UPL-generated liability at the marks in
        force (issue 15: ticks book nothing; ``booked`` is the aggregate as stored)."""
        return at_mark(self.app.account(account), self.app.platform())

    def booked(self, account: str) -> Account:
        return self.app.account(account)

    def platform(self) -> Platform:
        return self.app.platform()

    def view(self, account: str) -> dict[str, Any]:
        return account_view(self.account(account), self.platform(), self.app.platform_owed)

    def cash(self, account: str, currency: str, wallet: str | None = None) -> Decimal:
        return self.account(account).cash(currency, wallet)

    def liability(self, account: str, currency: str) -> Decimal:
        return self.account(account).liability(currency)

    def events(self, account: str, name: str | None = None) -> list[Any]:
        return [e for e in self.app.history(account) if name is None or type(e).__name__ == name]

    # --- common set-ups ----------------------------------------------------------------------
    def open(self, account: str, parent: str | None = None, vip_level: int = 0) -> None:
        cmd: dict[str, Any] = {"type": "open_account", "account": account, "vip_level": vip_level}
        if parent:
            cmd["parent"] = parent
        self.ok(cmd)

    def unified_master(self, account: str, deposits: dict[str, str] | None = None, vip_level: int = 0) -> None:
        """Open, whitelist, assess and upgrade a master, then deposit into it."""
        self.open(account, vip_level=vip_level)
        self.oks(
            {"type": "whitelist", "account": account},
            {"type": "complete_risk_assessment", "account": account, "score": 80, "agreements_version": "v1"},
            {"type": "switch_mode", "account": account, "mode": "unified"},
        )
        for currency, amount in (deposits or {}).items():
            self.ok({"type": "deposit", "account": account, "currency": currency, "amount": amount})

    def price(self, currency: str, price: str) -> list[dict[str, Any]]:
        return self.ok({"type": "set_price", "currency": currency, "price": price})


D = Decimal


def ledger_cli(db_url: str, *args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    """Run the `ledger` command line in-process on the store at ``db_url``."""
    from typer.testing import CliRunner

    from entrypoints.cli import cli

    return CliRunner().invoke(cli, ["--db", db_url, *args], input=input)
