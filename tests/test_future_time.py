"""T4: no instant from the future.  One wrong clock upstream can never close an account's or
the platform's history.

The application takes the latest instant it accepts as an argument (the clock plus the
allowance); the tests' ledgers run with the fixed clock ``WALL`` (tests/helpers.py).  The
command-line cases of issue 13 run against this machine's real clock, with instants
relative to it.  Everything runs on SQLite and on PostgreSQL.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from ledger.service.app import LedgerApp
from tests.helpers import WALL, Ledger, ledger_cli

SECOND = timedelta(seconds=1)


def rfc(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def deposit(account: str, amount: str, **extra: Any) -> dict[str, Any]:
    return {"type": "deposit", "account": account, "currency": "USDT", "amount": amount, **extra}


# --- the application ------------------------------------------------------------------------------
def test_a_set_price_at_the_end_of_time_is_refused(ledger: Ledger) -> None:
    """Issue 13 as written: `set_price` at 9999-12-31T23:59:59Z was accepted and every later
    platform command was out_of_order, forever.  Now it is future_time and records nothing;
    the next real parameter change goes through."""
    error = ledger.reject({"type": "set_price", "currency": "BTC", "price": "50000",
                           "at": "9999-12-31T23:59:59Z"}, "future_time")
    assert error["message"] == ("9999-12-31T23:59:59Z is in the future: the ledger accepts instants "
                                "up to 2026-12-01T00:01:00Z (its clock plus the allowance)")
    ledger.ok({"type": "set_price", "currency": "BTC", "price": "50000", "at": rfc(WALL - timedelta(hours=1))})
    ledger.ok({"type": "set_interest_rate", "currency": "USDT", "hourly_rate": "0.0001", "at": rfc(WALL)})
    assert ledger.platform().prices["BTC"] == 50000


def test_the_allowance_is_inclusive(ledger: Ledger) -> None:
    """T4: the clock plus 60 s is accepted, one second more is not."""
    ledger.open("kim")
    ledger.reject(deposit("kim", "1", at=rfc(WALL + 61 * SECOND)), "future_time")
    ledger.ok(deposit("kim", "1", at=rfc(WALL + 60 * SECOND)))
    assert ledger.cash("kim", "USDT") == 1


@pytest.mark.parametrize("command", [
    {"type": "open_account", "account": "new"},
    deposit("kim", "5"),
    {"type": "withdraw", "account": "kim", "currency": "USDT", "amount": "1"},
    {"type": "transfer", "from_account": "kim", "to_account": "kim.s", "currency": "USDT", "amount": "1"},
    {"type": "place_order", "account": "kim", "order_id": "o2", "market": "spot", "symbol": "BTC-USDT",
     "side": "buy", "qty": "0.0001", "price": "10"},
    {"type": "fill_order", "account": "kim", "order_id": "o1", "qty": "0.0001", "price": "10"},
    {"type": "whitelist", "account": "kim"},
    {"type": "register_currency", "currency": "XRP", "precision": 2},
    {"type": "set_platform_flags", "whitelist_required": False},
])
def test_every_command_refuses_an_instant_from_the_future(ledger: Ledger, command: dict[str, Any]) -> None:
    """T4 holds for every command type, before any other check, and records nothing."""
    ledger.open("kim")
    ledger.open("kim.s", parent="kim")
    ledger.ok(deposit("kim", "10"))
    ledger.ok({"type": "place_order", "account": "kim", "order_id": "o1", "market": "spot", "symbol": "BTC-USDT",
               "side": "buy", "qty": "0.0001", "price": "10"})
    ledger.reject({**command, "at": rfc(WALL + timedelta(days=400))}, "future_time")
    ledger.ok({**command, "at": rfc(WALL)})


def test_commands_without_at_take_the_clock(store_env: dict[str, str]) -> None:
    """T4: a command without `at` is recorded at the clock and is never future_time, even
    with no allowance at all; the same instant given as `at` is refused."""
    app = LedgerApp(env=store_env)
    try:
        clock = lambda: WALL + SECOND  # noqa: E731 - a moment after the limit was read
        no_allowance = lambda: WALL  # noqa: E731
        results = app.apply([{"type": "open_account", "account": "kim"}, deposit("kim", "5"),
                             deposit("kim", "5", at=rfc(WALL + SECOND))], clock, no_allowance)
        assert [r["ok"] for r in results] == [True, True, False]
        assert results[2]["error"]["code"] == "future_time"
        assert app.account("kim").last_at == WALL + SECOND
    finally:
        app.close()


def test_the_default_latest_is_the_clock_plus_sixty_seconds(store_env: dict[str, str]) -> None:
    """``LedgerApp.apply(objs, now)`` without ``latest`` accepts up to ``now()`` + 60 s."""
    app = LedgerApp(env=store_env)
    try:
        clock = lambda: WALL  # noqa: E731
        results = app.apply([{"type": "open_account", "account": "kim"},
                             deposit("kim", "1", at=rfc(WALL + 61 * SECOND)),
                             deposit("kim", "2", at=rfc(WALL + 60 * SECOND))], clock)
        assert [r["ok"] for r in results] == [True, False, True]
        assert results[1]["error"]["code"] == "future_time"
        assert app.account("kim").cash("USDT") == 2
    finally:
        app.close()


def test_a_future_command_in_a_batch_leaves_the_others(ledger: Ledger) -> None:
    """T3 with T4: in one batch the future command records nothing and does not consume its
    command_id; the others apply."""
    future = deposit("kim", "1000000", at="2099-01-01T00:00:00Z", command_id="c-1")
    results = ledger.apply({"type": "open_account", "account": "kim"}, future, deposit("kim", "7"))
    assert [r["ok"] for r in results] == [True, False, True]
    assert results[1]["error"]["code"] == "future_time"
    assert ledger.cash("kim", "USDT") == 7
    ledger.ok(deposit("kim", "3", command_id="c-1"))  # the id is still free
    assert ledger.cash("kim", "USDT") == 10


# --- the command line, on this machine's clock ------------------------------------------------------
def now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def apply_lines(db_url: str, *cmds: dict[str, Any]) -> list[dict[str, Any]]:
    result = ledger_cli(db_url, "apply", "-", input="".join(json.dumps(c) + "\n" for c in cmds))
    assert result.exit_code in (0, 1), result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def borrower(db_url: str) -> None:
    """A unified master owing 1,000 USDT since three hours ago (hours to charge)."""
    start = rfc(now() - timedelta(hours=3))
    answers = apply_lines(
        db_url,
        {"type": "set_platform_flags", "whitelist_required": False, "at": start},
        {"type": "set_interest_rate", "currency": "USDT", "hourly_rate": "0.0001", "at": start},
        {"type": "open_account", "account": "alice", "at": start},
        {"type": "complete_risk_assessment", "account": "alice", "score": 80, "agreements_version": "v1", "at": start},
        {"type": "switch_mode", "account": "alice", "mode": "unified", "at": start},
        {"type": "deposit", "account": "alice", "currency": "USDT", "amount": "5000", "at": start},
        {"type": "borrow", "account": "alice", "currency": "USDT", "amount": "1000", "at": start},
    )
    assert all(a["ok"] for a in answers), answers


def refused_in_one_line(result: Any, option: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ledger: {option}: ") and "is in the future" in lines[0], lines
    assert result.stdout == ""


def test_an_interest_run_nine_hours_ahead_is_refused(db_url: str) -> None:
    """Issue 13 as written: `ledger interest run --hour <9 h ahead>` made the next real
    deposit out_of_order.  Now the run refuses (one line, exit 2), charges nothing, and the
    next real deposit and the real run go through."""
    borrower(db_url)
    ahead = rfc(now() + timedelta(hours=9))
    refused_in_one_line(ledger_cli(db_url, "interest", "run", "--hour", ahead, "--json"), "--hour")
    events = json.loads(ledger_cli(db_url, "history", "alice", "--type", "InterestCharged", "--json").stdout)
    assert events == []
    [deposited] = apply_lines(db_url, deposit("alice", "1"))
    assert deposited["ok"], deposited
    run = json.loads(ledger_cli(db_url, "interest", "run", "--json").stdout)
    assert len(run["charges"]) >= 2  # the real hours since the borrow
    assert apply_lines(db_url, deposit("alice", "1"))[0]["ok"]


def test_a_sweep_next_june_is_refused(db_url: str) -> None:
    """Issue 13 as written: `ledger repayment run --at <next June>` made every real sweep
    "swept already".  Now the run refuses (one line, exit 2) and the real sweep runs."""
    borrower(db_url)
    june = rfc(datetime(now().year + 1, 6, 1, tzinfo=timezone.utc))
    refused_in_one_line(ledger_cli(db_url, "repayment", "run", "--at", june, "--json"), "--at")
    swept = json.loads(ledger_cli(db_url, "repayment", "run", "--json").stdout)
    assert swept["already_swept"] is False


def test_a_set_price_at_the_end_of_time_through_apply(db_url: str) -> None:
    """Issue 13 as written, through `ledger apply`: future_time, then the real price."""
    far, real = apply_lines(db_url, {"type": "set_price", "currency": "BTC", "price": "1", "at": "9999-12-31T23:59:59Z"},
                            {"type": "set_price", "currency": "BTC", "price": "50000"})
    assert far["error"]["code"] == "future_time" and real["ok"], (far, real)


def test_the_allowance_is_a_setting(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """T4: LEDGER_FUTURE_ALLOWANCE_SECONDS sets the allowance for `apply` and the runs; a
    value that is not whole seconds from 0 to 86,400 is one line and exit 2."""
    half_hour = rfc(now() + timedelta(minutes=30))
    assert apply_lines(db_url, {"type": "open_account", "account": "kim"})[0]["ok"]
    assert apply_lines(db_url, deposit("kim", "1", at=half_hour))[0]["error"]["code"] == "future_time"
    refused_in_one_line(ledger_cli(db_url, "repayment", "run", "--at", half_hour, "--json"), "--at")
    monkeypatch.setenv("LEDGER_FUTURE_ALLOWANCE_SECONDS", "3600")
    assert apply_lines(db_url, deposit("kim", "1", at=half_hour))[0]["ok"]
    assert ledger_cli(db_url, "interest", "run", "--hour", half_hour, "--json").exit_code == 0
    for bad in ("abc", "-5", "1.5", "86401", "", "²"):
        monkeypatch.setenv("LEDGER_FUTURE_ALLOWANCE_SECONDS", bad)
        result = ledger_cli(db_url, "apply", "-", input=json.dumps(deposit("kim", "1")) + "\n")
        assert result.exit_code == 2 and result.stdout == "", (bad, result.stdout)
        assert result.stderr.count("\n") == 1 and "LEDGER_FUTURE_ALLOWANCE_SECONDS" in result.stderr
