"""Hourly interest (I1-I6) through the application, on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from ledger.domain.interest import hourly_rate
from tests.helpers import D, T0, Ledger, at
from workers.interest import run_interest

H = timedelta(hours=1)


def hour(n: float) -> datetime:
    return T0 + n * H


def setup(ledger: Ledger, cash: str = "0", rate: str = "0.0001", **rate_fields: object) -> None:
    """alice: unified, `cash` USDT; USDT at `rate` per hour; BTC priced for collateral."""
    ledger.oks({"type": "set_price", "currency": "BTC", "price": "50000", "at": at(0)},
               {"type": "set_interest_rate", "currency": "USDT", "hourly_rate": rate, "at": at(0), **rate_fields})
    ledger.unified_master("alice", {"BTC": "1"})
    if cash != "0":
        ledger.ok({"type": "deposit", "account": "alice", "currency": "USDT", "amount": cash, "at": at(1)})


def borrow(ledger: Ledger, amount: str, minutes: float, account: str = "alice") -> None:
    ledger.ok({"type": "borrow", "account": account, "currency": "USDT", "amount": amount, "at": at(minutes)})


def charges(ledger: Ledger, account: str = "alice") -> list:
    return ledger.events(account, "InterestCharged")


def test_seed_example_upl_liability_with_allowance(ledger: Ledger) -> None:
    """I2, I3 seed: allowance 2,000, 0.01 %/h, 10,000 UPL-generated liability → 0.8 USDT."""
    setup(ledger, cash="10000")
    ledger.oks({"type": "place_order", "account": "alice", "order_id": "f", "market": "futures", "symbol": "BTC-USDT",
                "side": "buy", "qty": "1", "price": "50000", "at": at(5)},
               {"type": "fill_order", "account": "alice", "order_id": "f", "qty": "1", "price": "50000", "at": at(5)},
               {"type": "set_price", "currency": "BTC", "price": "30000", "at": at(10)})
    assert ledger.account("alice").upl_liability == {"USDT": D(10000)}
    run = run_interest(ledger.app, hour(1) + timedelta(minutes=2))
    [charge] = run.charges
    assert (charge.liability, charge.interest_free, charge.rate, charge.interest) == (D(10000), D(2000), D("0.0001"), D("0.8"))
    [event] = charges(ledger)
    assert event.hour == hour(1) and event.at == hour(1) + timedelta(minutes=2)
    assert (event.paid, event.capitalized) == (D(0), D("0.8"))  # USDT available is 20000 − 20000 = 0


def test_deduction_from_balance_first(ledger: Ledger) -> None:
    """I4: paid from the available balance, nothing capitalised when it covers the interest."""
    setup(ledger, cash="100")
    borrow(ledger, "1000", 30)
    run_interest(ledger.app, hour(1))
    [event] = charges(ledger)
    assert (event.liability, event.interest, event.paid, event.capitalized) == (D(1000), D("0.1"), D("0.1"), D(0))
    assert ledger.cash("alice", "USDT") == D("1099.9")
    assert ledger.liability("alice", "USDT") == D(1000)


def test_partial_capitalisation(ledger: Ledger) -> None:
    """I4: what the balance cannot cover is added to the liability."""
    setup(ledger)
    borrow(ledger, "1000", 30)
    ledger.ok({"type": "withdraw", "account": "alice", "currency": "USDT", "amount": "999.95", "at": at(40)})
    run_interest(ledger.app, hour(1))
    [event] = charges(ledger)
    assert (event.interest, event.paid, event.capitalized) == (D("0.1"), D("0.05"), D("0.05"))
    acct = ledger.account("alice")
    assert acct.cash("USDT") == 0 and acct.interest == {"USDT": D("0.05")}
    assert ledger.liability("alice", "USDT") == D("1000.05")


def test_no_charge_when_repaid_before_the_hour(ledger: Ledger) -> None:
    """I1: only the liability at the top of the hour counts."""
    setup(ledger, cash="10")
    borrow(ledger, "1000", 10)
    ledger.ok({"type": "repay", "account": "alice", "currency": "USDT", "amount": "1000", "at": at(50)})
    run = run_interest(ledger.app, hour(3))
    assert run.charges == [] and charges(ledger) == []
    assert ledger.account("alice").interest_due == {}  # settled: nothing more can be due


def test_borrow_at_exactly_the_hour_counts(ledger: Ledger) -> None:
    """I1: events with at ≤ H count for H."""
    setup(ledger, cash="10")
    borrow(ledger, "1000", 60)
    run_interest(ledger.app, hour(1))
    assert [(e.hour, e.liability) for e in charges(ledger)] == [(hour(1), D(1000))]


def test_rounding_up_at_eight_decimals(ledger: Ledger) -> None:
    """I3: round up to the currency's precision."""
    setup(ledger, cash="10", rate="0.000000011")
    borrow(ledger, "1000.5", 30)
    run_interest(ledger.app, hour(1))
    [event] = charges(ledger)
    assert D("1000.5") * D("0.000000011") == D("0.0000110055")
    assert event.interest == D("0.00001101")


@pytest.mark.parametrize("beta, vip, expected", [(True, 0, "0.0003"), (False, 0, "0.0001"), (False, 2, "0.0002")])
def test_vip_and_beta_rates(ledger: Ledger, beta: bool, vip: int, expected: str) -> None:
    """I3: the VIP level's rate, or the highest VIP level's rate while beta_highest_vip_rate is on."""
    ledger.oks({"type": "set_price", "currency": "BTC", "price": "50000", "at": at(0)},
               {"type": "set_interest_rate", "currency": "USDT", "hourly_rate": "0.0001", "at": at(0)},
               {"type": "set_interest_rate", "currency": "USDT", "hourly_rate": "0.0002", "vip_level": 2, "at": at(0)},
               {"type": "set_interest_rate", "currency": "USDT", "hourly_rate": "0.0003", "vip_level": 5, "at": at(0)},
               {"type": "set_platform_flags", "beta_highest_vip_rate": beta, "at": at(0)})
    ledger.unified_master("alice", {"BTC": "1", "USDT": "10"}, vip_level=vip)
    borrow(ledger, "1000", 30)
    run_interest(ledger.app, hour(1))
    [event] = charges(ledger)
    assert event.rate == D(expected) and event.interest == D(expected) * 1000


def test_rate_change_takes_effect_from_its_time(ledger: Ledger) -> None:
    """I3: the rate in force at H; a late run uses the rates of each hour."""
    setup(ledger, cash="10")
    borrow(ledger, "1000", 30)
    ledger.ok({"type": "set_interest_rate", "currency": "USDT", "hourly_rate": "0.001", "at": at(90)})
    run_interest(ledger.app, hour(2) + timedelta(minutes=5))  # one late run for hours 1 and 2
    assert [(e.hour, e.rate, e.interest) for e in charges(ledger)] == [
        (hour(1), D("0.0001"), D("0.1")), (hour(2), D("0.001"), D("1"))]


def test_exactly_once_and_history_closed(ledger: Ledger) -> None:
    """I5: re-runs charge nothing; I6: a command before a charged hour is out_of_order."""
    setup(ledger, cash="10")
    borrow(ledger, "1000", 30)
    assert len(run_interest(ledger.app, hour(1)).charges) == 1
    assert run_interest(ledger.app, hour(1) + timedelta(minutes=30)).charges == []
    assert run_interest(ledger.reopen().app, hour(1) + timedelta(minutes=40)).charges == []
    assert len(charges(ledger)) == 1
    ledger.reject({"type": "deposit", "account": "alice", "currency": "USDT", "amount": "1", "at": at(59)}, "out_of_order")


def test_catch_up_equals_hourly_runs(store_env: dict[str, str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    """I5: one run after downtime charges what hourly runs would have, to the last decimal."""
    from tests import pg

    def world(env: dict[str, str], hourly: bool) -> list[tuple]:
        book = Ledger(env)
        setup(book, cash="0.5")
        timeline = [(30, "borrow", "1000"), (100, "borrow", "2500.12345678"), (170, "repay", "0.3"),
                    (230, "borrow", "7"), (290, "repay", "300")]
        done_hours = 0
        for minutes, kind, amount in timeline:
            while hourly and (done_hours + 1) * 60 < minutes:
                done_hours += 1
                run_interest(book.app, hour(done_hours))
            book.ok({"type": kind, "account": "alice", "currency": "USDT", "amount": amount, "at": at(minutes)})
        run_interest(book.app, hour(6) + timedelta(minutes=1))
        out = [(e.hour, e.liability, e.rate, e.interest) for e in charges(book)]
        book.close()
        return out

    if store_env["PERSISTENCE_MODULE"].endswith("sqlite"):
        second = {**store_env, "SQLITE_DBNAME": str(tmp_path / "second.db")}
    else:
        second = pg.env(pg.new_schema())
    hourly, caught_up = world(store_env, True), world(second, False)
    assert len(hourly) == 6 and [h for h, *_ in hourly] == [hour(n) for n in range(1, 7)]
    assert hourly == caught_up


def test_interest_due_index_lists_only_accounts_that_may_owe(ledger: Ledger) -> None:
    """Issue 4 §5: the run reads the accounts with hours due, not every account."""
    setup(ledger, cash="10")
    ledger.open("idle")
    borrow(ledger, "5", 30)
    assert set(ledger.app.find("interest/due").accounts) == {"alice"}
    ledger.ok({"type": "repay", "account": "alice", "currency": "USDT", "amount": "5", "at": at(45)})
    assert set(ledger.app.find("interest/due").accounts) == {"alice"}  # hour 1 may not be charged yet
    run_interest(ledger.app, hour(2))
    assert ledger.app.find("interest/due").accounts == {}


def test_capitalised_interest_is_repaid_before_principal(ledger: Ledger) -> None:
    """R1 order after I4: UPL-generated part, then capitalised interest, then principal."""
    setup(ledger)
    borrow(ledger, "1000", 30)
    ledger.ok({"type": "withdraw", "account": "alice", "currency": "USDT", "amount": "1000", "at": at(31)})
    run_interest(ledger.app, hour(1))
    events = ledger.ok({"type": "deposit", "account": "alice", "currency": "USDT", "amount": "50", "at": at(70)})
    repaid = [e for e in events if e["type"] == "Repaid"][0]
    assert (repaid["interest"], repaid["principal"], repaid["amount"]) == ("0.1", "49.9", "50")


def test_hourly_rate_picks_the_latest_of_each_level() -> None:
    """I3 unit: latest rate per level; beta picks the highest level that has one."""
    from ledger.domain.platform import Platform, default_parameters

    p = Platform(parameters=default_parameters(), at=T0)
    assert hourly_rate(p, "USDT", 0) == 0
    p.set_interest_rate("USDT", D("0.1"), None, T0)
    p.set_interest_rate("USDT", D("0.2"), 3, T0)
    p.set_interest_rate("USDT", D("0.25"), 3, T0 + H)
    assert hourly_rate(p, "USDT", 0) == D("0.25")  # beta on by default
    p.set_flags({"beta_highest_vip_rate": False}, T0 + H)
    assert (hourly_rate(p, "USDT", 0), hourly_rate(p, "USDT", 3)) == (D("0.1"), D("0.25"))


def test_interest_parameters_cannot_be_back_dated_into_charged_hours(ledger: Ledger) -> None:
    """I5/I6: once hour H is charged, the rate, allowance and beta flag in force at H are closed."""
    setup(ledger, cash="10")
    borrow(ledger, "1000", 30)
    run_interest(ledger.app, hour(2))
    for cmd in ({"type": "set_interest_rate", "currency": "USDT", "hourly_rate": "0.005", "at": at(45)},
                {"type": "set_interest_free_allowance", "currency": "USDT", "amount": "1", "at": at(120)},
                {"type": "set_platform_flags", "beta_highest_vip_rate": False, "at": at(100)}):
        ledger.reject(cmd, "out_of_order")
    ledger.ok({"type": "set_interest_rate", "currency": "USDT", "hourly_rate": "0.005", "at": at(121)})
    ledger.ok({"type": "set_platform_flags", "spot_margin_enabled": False, "at": at(121)})  # not an interest parameter


def test_rerunning_the_same_hour_is_quiet_and_a_stopped_run_stays_overdue(ledger: Ledger) -> None:
    """I5: a second run for T neither charges nor reports skips; `status` does not count a stopped run."""
    from workers.status import job_status

    setup(ledger, cash="10")
    borrow(ledger, "1000", 30)
    first = run_interest(ledger.app, hour(1))
    again = run_interest(ledger.app, hour(1))
    assert len(first.charges) == 1 and again.charges == [] and again.skipped == []
    stopped = run_interest(ledger.app, hour(2), stop=lambda: True)
    assert stopped.complete is False
    report = job_status(ledger.app, hour(2) + timedelta(minutes=5))
    assert report["interest"]["last_hour"] == "2026-03-01T01:00:00Z" and report["overdue"]
