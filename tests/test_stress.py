"""`ledger risk stress` (SPEC §17, issue 19), on SQLite and PostgreSQL.

The stress result must be what `ledger repayment run` really does when the marks really move
by the same amounts: the same history is built in a second store (a copy of the SQLite file;
a second fresh PostgreSQL database), the shocked prices are set there with `set_price` and
the sweep is run; each reported account, its ratios, liquidation, repayments and bad debt,
and the totals (the insurance fund from the trial balance) are read back from that store.
A stress run records nothing: the event count is unchanged.
"""
from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ledger.adapters.store import persistence_env
from ledger.service.app import LedgerApp
from tests import pg
from tests.helpers import D, T0, at, latest, ledger_cli

SHOCKS = ["--shock", "BTC=-75%", "--shock", "eth=-75%"]
SHOCKED = {"BTC": "5000", "ETH": "500"}  # 20000 and 2000 moved by -75%
S = at(30)  # the instant of the stress (and of the real marks and sweep)


def unified(name: str, minutes: float, **deposits: str) -> list[dict[str, Any]]:
    cmds: list[dict[str, Any]] = [
        {"type": "open_account", "account": name, "at": at(minutes)},
        {"type": "complete_risk_assessment", "account": name, "score": 50, "agreements_version": "v1", "at": at(minutes)},
        {"type": "switch_mode", "account": name, "mode": "unified", "at": at(minutes)},
    ]
    cmds += [{"type": "deposit", "account": name, "currency": c, "amount": v, "at": at(minutes)} for c, v in deposits.items()]
    return cmds


def borrow(name: str, amount: str, minutes: float, withdraw: bool = True) -> list[dict[str, Any]]:
    cmds = [{"type": "borrow", "account": name, "currency": "USDT", "amount": amount, "at": at(minutes)}]
    if withdraw:
        cmds.append({"type": "withdraw", "account": name, "currency": "USDT", "amount": amount, "at": at(minutes)})
    return cmds


def world(url: str) -> None:
    """``world_commands`` applied to the store at ``url``."""
    app = LedgerApp.open(persistence_env(url))
    try:
        results = app.apply(world_commands(), lambda: T0, latest)
        assert all(r["ok"] for r in results), [r for r in results if not r["ok"]]
    finally:
        app.close()


def world_commands() -> list[dict[str, Any]]:
    """BTC 20000, ETH 2000.  Shocked by -75% (BTC 5000, ETH 500):
      crash   BTC 1, ETH 2, owes 10000 (withdrawn): AE 4900 + 950 − 10000 < 0 → liquidated,
              BTC and ETH sold (6000), 4000 written off to the insurance fund (§11 L3)
      trader  USDT 12000, long 2 BTC-USDT at 20000: UPL −30000 → the mark borrows 18000
              (futures_upl, B1), then liquidated: what 12000 cannot cover is bad debt
      alerted ETH 1, owes 425: AE 475 − 425 = 50, MM 42.5 → ratio 0.85: an alert only (L4)
      big     USDT 5000, owes 3000 (kept); mid USDT 2000, owes 1000 (kept); safe USDT 1000,
              owes 100 (kept): no price moves them, but the USDT platform limit (4000) was
              lowered below what is owed, so L2 takes from the largest borrower (big) the
              excess left after pass 1 wrote the crash's and trader's debts off
      idle    BTC 1, owes nothing: the shock changes nothing the sweep looks at (not reported)
    """
    cmds: list[dict[str, Any]] = [
        {"type": "set_platform_flags", "whitelist_required": False, "at": at(0)},
        {"type": "set_price", "currency": "BTC", "price": "20000", "at": at(0)},
        {"type": "set_price", "currency": "ETH", "price": "2000", "at": at(0)},
    ]
    cmds += unified("crash", 1, BTC="1", ETH="2") + borrow("crash", "10000", 2)
    cmds += unified("trader", 1, USDT="12000") + [
        {"type": "place_order", "account": "trader", "order_id": "t1", "market": "futures", "symbol": "BTC-USDT",
         "side": "buy", "qty": "2", "price": "20000", "at": at(2)},
        {"type": "fill_order", "account": "trader", "order_id": "t1", "qty": "2", "price": "20000", "at": at(2)}]
    cmds += unified("alerted", 1, ETH="1") + borrow("alerted", "425", 2)
    cmds += unified("big", 1, USDT="5000") + borrow("big", "3000", 2, withdraw=False)
    cmds += unified("mid", 1, USDT="2000") + borrow("mid", "1000", 2, withdraw=False)
    cmds += unified("safe", 1, USDT="1000") + borrow("safe", "100", 2, withdraw=False)
    cmds += unified("idle", 1, BTC="1")
    cmds += [{"type": "set_platform_borrow_limit", "currency": "USDT", "amount": "4000", "at": at(3)}]
    return cmds


def copy_of(url: str, tmp_path: Path) -> str:
    """A second store with the same history: the SQLite file copied, or a fresh database."""
    if url.startswith("sqlite"):
        other = tmp_path / "copy.db"
        with sqlite3.connect(url.removeprefix("sqlite:///")) as src, sqlite3.connect(other) as dst:
            src.backup(dst)
        return f"sqlite:///{other}"
    other = pg.new_database()
    world(other)
    return other


def cli_json(url: str, *args: str) -> Any:
    result = ledger_cli(url, *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def event_count(url: str) -> int:
    app = LedgerApp.open(persistence_env(url))
    try:
        return app.recorder.max_notification_id() or 0
    finally:
        app.close()


def what_the_sweep_really_does(url: str) -> dict[str, Any]:
    """On ``url``: set the shocked marks, run the sweep at S; per account what it recorded."""
    before = {a: cli_json(url, "account", "show", a, "--json")["risk_ratio"] for a in accounts_of(url)}
    marks = "".join(json.dumps({"type": "set_price", "currency": c, "price": p, "at": S}) + "\n" for c, p in SHOCKED.items())
    assert ledger_cli(url, "apply", "-", input=marks).exit_code == 0
    app = LedgerApp.open(persistence_env(url))
    try:
        versions = {a: app.account(a).version for a in before}
    finally:
        app.close()
    run = cli_json(url, "repayment", "run", "--at", S, "--json")
    assert run["skipped"] == [] and not run["already_swept"]
    app = LedgerApp.open(persistence_env(url))
    rows = []
    try:
        for account, ratio in before.items():
            events = [e for e in app.history(account) if e.at == T0.replace(minute=30)]
            if not events:
                continue
            by_sweep = [e for e in events if e.originator_version > versions[account]]
            repaid: dict[str, Decimal] = defaultdict(Decimal)
            bad: dict[str, Decimal] = defaultdict(Decimal)
            for e in by_sweep:
                if type(e).__name__ == "Repaid":
                    repaid[e.currency] += e.amount
                if type(e).__name__ == "BadDebtWrittenOff":
                    bad[e.currency] += e.amount
            rows.append({"account": account, "risk_ratio_before": ratio,
                         "risk_ratio_after": cli_json(url, "account", "show", account, "--json")["risk_ratio"],
                         "liquidated": any(type(e).__name__ == "LiquidationStarted" for e in by_sweep),
                         "forced_repayments": {c: str(v) for c, v in sorted(repaid.items())},
                         "bad_debt": {c: str(v) for c, v in sorted(bad.items())}})
    finally:
        app.close()
    books = cli_json(url, "audit", "trial-balance", "--json")["books"]
    return {"accounts": rows, "kinds": sorted({a["kind"] for a in run["actions"]}),
            "fund": {b["currency"]: b["balance"] for b in books if b["book"] == "platform:insurance_fund"}}


def accounts_of(url: str) -> list[str]:
    app = LedgerApp.open(persistence_env(url))
    try:
        return app.account_ids()
    finally:
        app.close()


def decimals(value: Any) -> Any:
    """Money compared as decimals ("0.80" equals "0.8", §14)."""
    if isinstance(value, dict):
        return {k: decimals(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decimals(v) for v in value]
    if isinstance(value, str):
        try:
            return D(value)
        except ArithmeticError:
            return value
    return value


def test_stress_equals_what_the_sweep_does_when_the_marks_really_move(db_url: str, tmp_path: Path) -> None:
    world(db_url)
    other = copy_of(db_url, tmp_path)
    count = event_count(db_url)
    stressed = cli_json(db_url, "risk", "stress", *SHOCKS, "--as-of", S, "--json")
    assert event_count(db_url) == count, "a stress run recorded something"
    assert list(stressed) == ["as_of", "shocks", "accounts", "totals"]
    assert stressed["as_of"] == S
    assert stressed["shocks"] == [{"currency": "BTC", "percent": "-75", "price_before": "20000", "price_after": "5000"},
                                  {"currency": "ETH", "percent": "-75", "price_before": "2000", "price_after": "500"}]
    real = what_the_sweep_really_does(other)
    assert real["kinds"] == ["alert", "forced_platform", "liquidation"]  # L2, L3 and L4 all acted
    assert decimals(stressed["accounts"]) == decimals(real["accounts"])
    assert [a["account"] for a in stressed["accounts"]] == ["alerted", "big", "crash", "trader"]
    liquidated = [a for a in real["accounts"] if a["liquidated"]]
    bad_debt: dict[str, Decimal] = defaultdict(Decimal)
    for a in real["accounts"]:
        for c, v in a["bad_debt"].items():
            bad_debt[c] += D(v)
    assert decimals(stressed["totals"]) == decimals({
        "accounts_liquidated": len(liquidated), "bad_debt": {c: str(v) for c, v in bad_debt.items()},
        "insurance_fund_after": real["fund"]})
    crash = next(a for a in stressed["accounts"] if a["account"] == "crash")
    assert crash["liquidated"] and D(crash["bad_debt"]["USDT"]) == 4000  # the hand computation of world()
    assert crash["forced_repayments"] == {"USDT": "6000"}
    # now (no --as-of) is the same state: the same answer, at the clock's instant
    now = cli_json(db_url, "risk", "stress", *SHOCKS, "--json")
    assert now["accounts"] == stressed["accounts"] and now["totals"] == stressed["totals"]
    assert event_count(db_url) == count


def test_stress_as_of_an_earlier_instant_and_for_people(db_url: str) -> None:
    """--as-of before the crash's borrowing: only the accounts then in debt are judged."""
    world(db_url)
    count = event_count(db_url)
    early = cli_json(db_url, "risk", "stress", *SHOCKS, "--as-of", at(1), "--json")
    assert early["accounts"] == [] and early["totals"]["accounts_liquidated"] == 0
    table = ledger_cli(db_url, "risk", "stress", *SHOCKS, "--as-of", S)
    assert table.exit_code == 0, table.output
    assert "crash" in table.stdout and "accounts examined" in table.stdout and "insurance fund after" in table.stdout
    html = ledger_cli(db_url, "risk", "stress", *SHOCKS, "--format", "html")
    assert html.exit_code == 0 and html.stdout.startswith("<!DOCTYPE html>") and html.stdout.count("<svg") == 2
    assert event_count(db_url) == count


@pytest.mark.parametrize("args, code", [
    ([], "invalid_shock"),
    (["--shock", "BTC=-130%"], "invalid_shock"),
    (["--shock", "BTC=-100%"], "invalid_shock"),
    (["--shock", "BTC=abc"], "invalid_shock"),
    (["--shock", "BTC=-30"], "invalid_shock"),
    (["--shock", "BTC=-30%", "--shock", "btc=+5%"], "invalid_shock"),
    (["--shock", "USDT=-10%"], "invalid_shock"),
    (["--shock", "DOGE=-10%"], "unknown_currency"),
    (["--shock", "KCS=-10%"], "no_price"),
])
def test_a_bad_shock_is_one_line_exit_2_and_records_nothing(db_url: str, args: list[str], code: str) -> None:
    world(db_url)
    count = event_count(db_url)
    result = ledger_cli(db_url, "risk", "stress", *args, "--json")
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and "Traceback" not in result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"ledger: {code}: ") and len(line) > len(code) + 20
    assert event_count(db_url) == count


def test_the_answer_does_not_depend_on_how_many_accounts_are_loaded_at_a_time(store_env: dict[str, str]) -> None:
    """Bounded memory: accounts are streamed a chunk at a time and the L2 pass reloads its
    borrowers; one account a time gives the answer of the whole store at once, and only the
    changed accounts are kept."""
    from entrypoints.machine import stress_run
    from tests.helpers import Ledger
    from workers.stress import parse_shocks, run_stress

    book = Ledger(store_env)
    try:
        assert all(r["ok"] for r in book.app.apply(world_commands(), lambda: T0, latest))
        shocks = parse_shocks(["BTC=-75%", "ETH=-75%"])
        whole = run_stress(book.app, shocks, T0.replace(minute=30), chunk=10_000)
        one = run_stress(book.app, shocks, T0.replace(minute=30), chunk=1)
        assert stress_run(whole) == stress_run(one)
        assert whole.accounts == 6 and sorted(whole.rows) == ["alerted", "big", "crash", "trader"]
    finally:
        book.close()


def test_shocks_parse_as_the_page_says() -> None:
    from ledger.domain.errors import LedgerError
    from workers.stress import parse_shocks

    parsed = parse_shocks(["eth=+10%", " BTC = -30.5 % ", "KCS=1000%"])
    assert [(s.currency, s.percent) for s in parsed] == [("BTC", D("-30.5")), ("ETH", D(10)), ("KCS", D(1000))]
    for bad in (["BTC=1000.01%"], ["BTC=-0.000000001%"], ["BTC=%"], ["=5%"], ["BTC=5%", "BTC=6%"], []):
        with pytest.raises(LedgerError) as refused:
            parse_shocks(bad)
        assert refused.value.code == "invalid_shock" and refused.value.message
