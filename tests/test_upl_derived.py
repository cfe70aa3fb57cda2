"""Issue 15: the UPL-generated liability is derived (docs/rules.md §16) — a tick writes only its
PriceSet whatever the number of holders; interest at H, the sweep and views read the figure at
the marks in force; stores written with per-tick booking still load and reconcile."""
from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from decimal import Decimal as D
from pathlib import Path

from entrypoints.machine import account_at
from ledger.domain.margin import upl_generated
from ledger.read.views import account_view
from ledger.service.app import LedgerApp
from tests.helpers import Ledger
from workers.interest import run_interest
from workers.sweep import run_sweep

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
WALL = datetime(2026, 12, 1, tzinfo=timezone.utc)
OLD_STORE = Path(__file__).parent / "fixtures" / "store-upl-ticks.sqlite"


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def apply(ledger: Ledger, *commands: dict) -> list[dict]:
    results = ledger.app.apply(list(commands), lambda: WALL, lambda: WALL)
    assert all(r["ok"] for r in results), results
    return results


def holders(ledger: Ledger, n: int, cash: str = "1000") -> None:
    """``n`` unified accounts, each long 0.1 BTC-USDT at 50,000 with ``cash`` USDT."""
    apply(ledger, {"type": "set_platform_flags", "whitelist_required": False, "at": at(0)},
          {"type": "set_price", "currency": "BTC", "price": "50000", "at": at(0)},
          {"type": "set_interest_rate", "currency": "USDT", "hourly_rate": "0.0001", "at": at(0)},
          {"type": "set_interest_free_allowance", "currency": "USDT", "amount": "100", "at": at(0)})
    for k in range(n):
        a = f"h{k}"
        apply(ledger, {"type": "open_account", "account": a, "vip_level": 0, "at": at(0)},
              {"type": "complete_risk_assessment", "account": a, "score": 60, "agreements_version": "v1", "at": at(0)},
              {"type": "switch_mode", "account": a, "mode": "unified", "at": at(0)},
              {"type": "deposit", "account": a, "currency": "USDT", "amount": cash, "at": at(0)},
              {"type": "place_order", "account": a, "order_id": "f", "market": "futures", "symbol": "BTC-USDT",
               "side": "buy", "qty": "0.1", "price": "50000", "at": at(1)},
              {"type": "fill_order", "account": a, "order_id": "f", "qty": "0.1", "price": "50000", "at": at(1)})


def tick(ledger: Ledger, price: str, minutes: float) -> list[dict]:
    return apply(ledger, {"type": "set_price", "currency": "BTC", "price": price, "at": at(minutes)})


def test_the_figure_is_the_loss_rounded_up_less_cash() -> None:
    assert upl_generated(D("-1500.000000001"), D(1000), 8) == D("500.00000001")
    assert upl_generated(D(-700), D(1000), 8) == 0 and upl_generated(D(300), D(0), 8) == 0


def test_a_tick_over_many_holders_writes_a_bounded_number_of_events(ledger: Ledger) -> None:
    holders(ledger, 30)
    before = ledger.app.recorder.max_notification_id()
    [result] = tick(ledger, "35000", 10)  # every holder now owes 500 UPL-generated
    written = ledger.app.recorder.max_notification_id() - before
    assert [e["type"] for e in result["events"]] == ["PriceSet"] and written == 1
    for k in range(0, 30, 7):
        view = account_view(ledger.app.account(f"h{k}"), ledger.app.platform(), ledger.app.platform_owed)
        assert view["balances"]["USDT"]["upl_liability"] == "500" and view["balances"]["USDT"]["liability"] == "500"
    before = ledger.app.recorder.max_notification_id()
    for n in range(10):
        tick(ledger, str(34000 + n), 11 + n)
    assert ledger.app.recorder.max_notification_id() - before == 10


def test_interest_at_h_reads_the_figure_at_the_mark_in_force_at_h(ledger: Ledger) -> None:
    holders(ledger, 1)
    tick(ledger, "36000", 10)  # loss 1400: 400
    tick(ledger, "30000", 50)  # loss 2000: 1000, in force at 01:00
    tick(ledger, "45000", 70)  # loss 500: nothing, after 01:00
    assert ledger.events("h0", "Borrowed") == []  # no tick booked anything
    run = run_interest(ledger.app, T0 + timedelta(hours=1, minutes=30))
    [charge] = run.charges
    assert (charge.hour, charge.liability, charge.interest_free) == (T0 + timedelta(hours=1), D(1000), D(100))
    assert charge.interest == D("0.09")  # (1000 − 100) × 0.0001
    # the run is a rule instant: the figure at its mark (45,000: none) is what is booked
    assert ledger.booked("h0").upl_liability == {}


def test_the_sweep_books_and_reads_the_figure_at_its_mark(ledger: Ledger) -> None:
    holders(ledger, 2, cash="600")
    tick(ledger, "8000", 3)  # loss 4200 against 600 cash: liquidatable
    run = run_sweep(ledger.app, T0 + timedelta(minutes=5), processes=1)
    assert {a["account"] for a in run.actions if a["kind"] == "liquidation"} == {"h0", "h1"}
    borrowed = [e for e in ledger.events("h0", "Borrowed") if e.source == "futures_upl"]
    assert [(e.amount, e.upl_generated) for e in borrowed] == [(D(3600), True)]


def test_as_of_shows_the_figure_at_the_marks_then(ledger: Ledger) -> None:
    holders(ledger, 1)
    tick(ledger, "35000", 10)
    tick(ledger, "49000", 20)
    then = T0 + timedelta(minutes=15)
    view = account_at(ledger.app, ledger.app.state_at("account/h0", then), then)  # `account show --as-of`
    assert view["balances"]["USDT"]["upl_liability"] == "500" and view["balances"]["USDT"]["cash"] == "1500"
    now = account_view(ledger.app.account("h0"), ledger.app.platform(), ledger.app.platform_owed)
    assert now["balances"]["USDT"]["upl_liability"] == "0" and now["balances"]["USDT"]["cash"] == "1000"


def test_a_store_with_per_tick_bookings_loads_and_reconciles(tmp_path: Path) -> None:
    """tests/fixtures/store-upl-ticks.sqlite was written by per-tick booking (commit b1a412b,
    tests/fixtures/make_upl_ticks_store.py): ann's Borrowed 500, 500 and Repaid 300 at ticks."""
    path = tmp_path / "ledger.db"
    shutil.copy(OLD_STORE, path)
    app = LedgerApp(env={"PERSISTENCE_MODULE": "stores.sqlite", "SQLITE_DBNAME": str(path)})
    try:
        ann = app.account("ann")
        assert ann.upl_liability == {"USDT": D(700)} and ann.derived_upl(app.platform()) == D(700)
        before = app.recorder.max_notification_id()
        apply_app(app, {"type": "set_price", "currency": "BTC", "price": "31000", "at": "2026-03-01T00:40:00Z"})
        assert app.recorder.max_notification_id() - before == 1  # new code books nothing at a tick
        view = account_view(app.account("ann"), app.platform(), app.platform_owed)
        assert view["balances"]["USDT"]["upl_liability"] == "900"  # loss 1900 − 1000 cash
        [result] = apply_app(app, {"type": "deposit", "account": "ann", "currency": "USDT", "amount": "100",
                                   "at": "2026-03-01T00:41:00Z"})
        types = [(e["type"], e.get("source"), e.get("amount")) for e in result["events"]]
        assert types == [("Borrowed", "futures_upl", "200"), ("Deposited", None, "100"), ("Repaid", "deposit", "100")]
        assert app.account("ann").upl_liability == {"USDT": D(800)}
        run = run_interest(app, datetime(2026, 3, 1, 1, 5, tzinfo=timezone.utc))
        [charge] = [c for c in run.charges if c.account == "ann"]
        allowance = app.platform_at(charge.hour).allowance("USDT")
        assert (charge.liability, charge.interest_free) == (D(800), min(D(800), allowance))  # 01:00, mark 31,000
    finally:
        app.close()


def apply_app(app: LedgerApp, *commands: dict) -> list[dict]:
    results = app.apply(list(commands), lambda: WALL, lambda: WALL)
    assert all(r["ok"] for r in results), results
    return results
