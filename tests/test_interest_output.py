"""`ledger interest run` in bounded memory (issue 15): a catch-up writes `--json` a charge at a
time as its batch is committed (the same §14 object as before), and for people a summary per
hour and currency instead of a row per charge; the run keeps counts and totals only."""
from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal

import pytest

from ledger.adapters.store import persistence_env
from ledger.domain.money import fmt
from ledger.service.app import LedgerApp
from tests.helpers import ledger_cli
from tests.test_interest_processes import indebted_accounts, stamp

ACCOUNTS, HOURS = 7, 5
CHARGE_FIELDS = {"account", "currency", "hour", "liability", "interest_free", "rate", "interest", "paid", "capitalized"}


def recorded(url: str) -> list[dict[str, str]]:
    app = LedgerApp.open(persistence_env(url))
    try:
        return [{"account": a, "hour": e.hour.isoformat().replace("+00:00", "Z"), "interest": fmt(e.interest)}
                for a in app.account_ids() for e in app.history(a) if type(e).__name__ == "InterestCharged"]
    finally:
        app.close()


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_INTEREST_BATCH_ACCOUNTS", "3")  # 7 accounts: three batches


def test_catch_up_json_is_streamed_and_parses_as_before(db_url: str, small_batches: None) -> None:
    indebted_accounts(db_url, ACCOUNTS)
    result = ledger_cli(db_url, "interest", "run", "--hour", stamp(HOURS * 60 + 3), "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert list(shown) == ["at", "charges", "skipped"] and shown["at"] == stamp(HOURS * 60 + 3)
    assert shown["skipped"] == [] and all(set(c) == CHARGE_FIELDS for c in shown["charges"])
    assert len(shown["charges"]) == ACCOUNTS * HOURS
    assert sorted((c["account"], c["hour"], c["interest"]) for c in shown["charges"]) == \
        sorted((r["account"], r["hour"], r["interest"]) for r in recorded(db_url))
    again = json.loads(ledger_cli(db_url, "interest", "run", "--hour", stamp(HOURS * 60 + 4), "--json").stdout)
    assert again["charges"] == [] and again["skipped"] == []


def test_catch_up_for_people_is_a_summary_per_hour(db_url: str, small_batches: None) -> None:
    indebted_accounts(db_url, ACCOUNTS)
    result = ledger_cli(db_url, "interest", "run", "--hour", stamp(HOURS * 60 + 3))
    assert result.exit_code == 0, result.output
    out = result.stdout
    charges = recorded(db_url)
    per_hour = Counter(c["hour"] for c in charges)
    assert len(per_hour) == HOURS and set(per_hour.values()) == {ACCOUNTS}
    for hour in per_hour:
        assert out.count(hour) == 1, f"{hour} is not one summary row"  # one row per hour, not per charge
    assert "acct-00000" not in out
    total = sum(Decimal(c["interest"]) for c in charges)
    assert f"{ACCOUNTS * HOURS} charges on {ACCOUNTS} accounts at {stamp(HOURS * 60 + 3)}: {fmt(total)} USDT" in out


def test_the_run_keeps_totals_not_charges(db_url: str) -> None:
    from workers.interest import run_interest
    from ledger.domain.times import parse_instant

    indebted_accounts(db_url, ACCOUNTS)
    app = LedgerApp.open(persistence_env(db_url))
    try:
        run = run_interest(app, parse_instant(stamp(HOURS * 60 + 3)), keep=False, batch_accounts=2)
    finally:
        app.close()
    assert run.charges == [] and (run.count, run.accounts) == (ACCOUNTS * HOURS, ACCOUNTS)
    assert len(run.by_hour) == HOURS and {n for n, _ in run.by_hour.values()} == {ACCOUNTS}
    assert run.totals() == {"USDT": sum((Decimal(c["interest"]) for c in recorded(db_url)), Decimal(0))}
