"""`ledger status` (issue 17, T4): what is really due, overdue beyond a grace, recorded
instants in the future, and `--check`'s exit code for health checks."""
from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from entrypoints import cli
from tests.helpers import T0, Ledger, at, ledger_cli
from workers.interest import run_interest
from workers.status import job_status
from workers.sweep import run_sweep


def minute(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def indebted(ledger: Ledger) -> None:
    """alice owes 100 USDT from 00:30."""
    ledger.oks({"type": "set_price", "currency": "BTC", "price": "50000", "at": at(0)},
               {"type": "set_interest_rate", "currency": "USDT", "hourly_rate": "0.0001", "at": at(0)})
    ledger.unified_master("alice", {"BTC": "1"})
    ledger.ok({"type": "borrow", "account": "alice", "currency": "USDT", "amount": "100", "at": at(30)})


def test_what_is_due_what_is_overdue_and_a_run_under_way(ledger: Ledger) -> None:
    indebted(ledger)
    run_interest(ledger.app, minute(35))  # charges 00:00
    run_sweep(ledger.app, minute(56))  # sweeps 00:55
    charged = job_status(ledger.app, minute(57))
    assert charged["ok"] and charged["overdue"] == [] and charged["future"] == []
    assert charged["interest"] | {} == {**charged["interest"], "indebted_accounts": 1, "accounts_due": 0,
                                        "last_hour": "2026-03-01T00:00:00Z"}
    under_way = job_status(ledger.app, minute(61))  # 01:00 is due, and the runs have two minutes
    assert under_way["ok"] and under_way["interest"]["accounts_due"] == 1
    late = job_status(ledger.app, minute(63))
    assert not late["ok"] and late["overdue"] == [
        "interest for 2026-03-01T01:00:00Z has not been run (last hour run: 2026-03-01T00:00:00Z)",
        "the sweep for 2026-03-01T01:00:00Z has not been run (last mark swept: 2026-03-01T00:55:00Z)"]
    run_interest(ledger.app, minute(63))
    run_sweep(ledger.app, minute(63))
    again = job_status(ledger.app, minute(64))
    assert again["ok"] and again["interest"]["accounts_due"] == 0


def test_nobody_indebted_nothing_overdue(ledger: Ledger) -> None:
    ledger.open("bob")
    report = job_status(ledger.app, minute(600))
    assert report["ok"] and report["interest"]["indebted_accounts"] == 0


def test_a_recorded_instant_in_the_future_is_flagged(ledger: Ledger) -> None:
    """T4: the clock that reads the store is behind what it recorded (a clock moved back, or
    history written before T4 refused such instants)."""
    indebted(ledger)
    run_interest(ledger.app, minute(35))
    run_sweep(ledger.app, minute(35))
    report = job_status(ledger.app, T0 - timedelta(days=1))
    assert not report["ok"]
    flagged = " | ".join(report["future"])
    for name in ("interest: last hour charged 2026-03-01T00:00:00Z", "sweep: last mark 2026-03-01T00:35:00Z",
                 "platform: last change", "account/alice has an event at 2026-03-01T00:30:00Z"):
        assert name in flagged
    assert not [item for item in report["future"] if item.startswith(("platform has", "runs/"))]  # named once
    newest = minute(35)
    assert job_status(ledger.app, newest - timedelta(seconds=30), allowance=timedelta(seconds=60))["future"] == []
    assert job_status(ledger.app, newest - timedelta(seconds=30), allowance=timedelta(seconds=10))["future"]


def test_status_check_fails_and_passes(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ledger status --check`: exit 1 while overdue or in the future, 0 otherwise; --json says why."""
    now = {"at": minute(90)}
    monkeypatch.setattr(cli, "utcnow", lambda: now["at"])
    commands = [{"type": "set_price", "currency": "BTC", "price": "50000", "at": at(0)},
                {"type": "set_interest_rate", "currency": "USDT", "hourly_rate": "0.0001", "at": at(0)},
                {"type": "set_platform_flags", "whitelist_required": False, "at": at(0)},
                {"type": "open_account", "account": "alice", "at": at(1)},
                {"type": "complete_risk_assessment", "account": "alice", "score": 80, "agreements_version": "v1", "at": at(1)},
                {"type": "switch_mode", "account": "alice", "mode": "unified", "at": at(1)},
                {"type": "deposit", "account": "alice", "currency": "BTC", "amount": "1", "at": at(2)},
                {"type": "borrow", "account": "alice", "currency": "USDT", "amount": "100", "at": at(30)}]
    applied = ledger_cli(db_url, "apply", "-", input="".join(json.dumps(c) + "\n" for c in commands))
    assert applied.exit_code == 0, applied.stdout
    failing = ledger_cli(db_url, "status", "--check")
    assert failing.exit_code == 1 and "overdue: interest for 2026-03-01T01:00:00Z" in " ".join(failing.stdout.split())
    assert ledger_cli(db_url, "interest", "run").exit_code == 0
    assert ledger_cli(db_url, "repayment", "run").exit_code == 0
    passing = ledger_cli(db_url, "status", "--check")
    assert passing.exit_code == 0, passing.stdout
    assert "1 indebted account(s), charged through the current hour" in " ".join(passing.stdout.split())
    assert json.loads(ledger_cli(db_url, "status", "--check", "--json").stdout)["ok"] is True
    now["at"] = minute(20)  # the reading clock is behind what was recorded
    future = ledger_cli(db_url, "status", "--check", "--json")
    assert future.exit_code == 1
    assert any(item.startswith("account/alice has an event at 2026-03-01T01:30:00Z") for item in json.loads(future.stdout)["future"])
    assert ledger_cli(db_url, "status").exit_code == 0  # without --check, status only reports


def test_the_allowance_is_the_ledgers_setting(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'a.db'}"
    monkeypatch.setattr(cli, "utcnow", lambda: minute(10))
    assert ledger_cli(url, "apply", "-", input=json.dumps({"type": "open_account", "account": "a", "at": at(10.5)}) + "\n").exit_code == 0
    assert json.loads(ledger_cli(url, "status", "--json").stdout)["allowance_seconds"] == 60
    monkeypatch.setenv("LEDGER_FUTURE_ALLOWANCE_SECONDS", "120")
    report = json.loads(ledger_cli(url, "status", "--json").stdout)
    assert report["allowance_seconds"] == 120 and report["future"] == []
    assert ledger_cli(url, "status", "--allowance", "5", "--check").exit_code == 1  # the option wins
