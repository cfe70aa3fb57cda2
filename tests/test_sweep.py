"""The 5-minute sweep (SPEC §9, L1-L4; §13-14 `ledger repayment run`), on SQLite and PostgreSQL.

Every amount below is computed by hand in the comments (F1-F6 of §5 with the §4 defaults:
BTC collateral 0.98 up to 500 coins, ETH 0.95, USDT 1; liabilities imr/mmr 0.2/0.1; futures
0.1/0.05; thresholds alert 0.8, liquidation 1, target 0.7).  Swaps are at mark: what is sold
rounds up, what is bought rounds down, at 8 decimals.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from entrypoints.cli import cli
from ledger.service.app import LedgerApp
from ledger.domain.money import fmt, round_down
from ledger.domain.platform import QUOTE
from ledger.adapters.store import persistence_env
from tests import pg
from tests.helpers import D, T0, Ledger, at, latest
from ledger.domain.sweep import needs_sweep, sweep_account
from workers.sweep import run_sweep

M = timedelta(minutes=1)


def mark(minutes: float) -> datetime:
    return T0 + minutes * M


def prices(ledger: Ledger, minutes: float = 0, **marks: str) -> None:
    for currency, value in marks.items():
        ledger.ok({"type": "set_price", "currency": currency, "price": value, "at": at(minutes)})


def cmd(kind: str, minutes: float, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "at": at(minutes), **fields}


def borrow_and_withdraw(ledger: Ledger, account: str, amount: str, minutes: float) -> None:
    """Borrow USDT and take the cash out, so the liability is not backed by USDT cash."""
    ledger.oks(cmd("borrow", minutes, account=account, currency="USDT", amount=amount),
               cmd("withdraw", minutes, account=account, currency="USDT", amount=amount))


def swept(ledger: Ledger, account: str, run_at: datetime) -> list[tuple]:
    """The account's events recorded by the sweep at ``run_at`` (they carry at = run_at),
    as (type, interesting fields)."""
    out = []
    for e in ledger.events(account):
        if e.at != run_at:
            continue
        name = type(e).__name__
        if name == "AutoSwapped":
            out.append((name, e.from_currency, e.from_amount, e.to_currency, e.to_amount, e.from_price, e.to_price, e.reason))
        elif name == "Repaid":
            out.append((name, e.currency, e.amount, e.source, e.principal, e.interest))
        elif name == "LiquidationStarted":
            out.append((name, e.risk_ratio, e.adjusted_equity, e.maintenance_margin))
        elif name == "LiquidationCompleted":
            out.append((name, e.risk_ratio, dict(e.bad_debt)))
        elif name == "BadDebtWrittenOff":
            out.append((name, e.currency, e.amount, e.principal, e.interest))
        elif name == "PositionLiquidated":
            out.append((name, e.symbol, e.qty, e.price, e.realized_pnl))
        elif name == "OrderCancelled":
            out.append((name, e.order_id, e.released))
        elif name in ("RiskAlertRaised", "RiskAlertCleared"):
            out.append((name, e.risk_ratio))
        else:
            out.append((name,))
    return out


def count_sweep_events(ledger: Ledger, account: str) -> int:
    sweep_types = {"AutoSwapped", "LiquidationStarted", "LiquidationCompleted", "BadDebtWrittenOff",
                   "PositionLiquidated", "RiskAlertRaised", "RiskAlertCleared"}
    return sum(1 for e in ledger.events(account)
               if type(e).__name__ in sweep_types
               or (type(e).__name__ == "Repaid" and e.source in ("forced_quota", "forced_platform", "liquidation")))


# --- L1: personal quota ------------------------------------------------------------------------------
def test_l1_excess_repaid_from_own_cash_only_when_it_suffices(ledger: Ledger) -> None:
    """L1: alice owes 1000 USDT and still holds the 1000 borrowed; the quota drops to 600:
    the excess 400 is repaid from USDT cash, nothing is swapped."""
    prices(ledger, BTC="20000")
    ledger.unified_master("alice", {"BTC": "1"})
    ledger.oks(cmd("borrow", 1, account="alice", currency="USDT", amount="1000"),
               cmd("set_borrow_quota", 2, currency="USDT", amount="600"))
    run = run_sweep(ledger.app, mark(5))
    assert swept(ledger, "alice", mark(5)) == [("Repaid", "USDT", D(400), "forced_quota", D(400), D(0))]
    assert run.actions == [{"account": "alice", "kind": "forced_quota", "currency": "USDT", "excess": D(400), "repaid": D(400)}]
    acct = ledger.account("alice")
    assert acct.liability("USDT") == D(600) and acct.cash("USDT") == D(600) and acct.cash("BTC") == D(1)
    assert ledger.app.platform_owed("USDT") == D(600)


def test_l1_cash_first_then_largest_asset_first_btc_then_eth(ledger: Ledger) -> None:
    """L1 with a swap across two assets.

    BTC 43210.5, ETH 2345.67.  alice: BTC 0.12345679 (worth 5334.629624295), ETH 2 (4691.34),
    USDT 50; borrows 6000 USDT and withdraws it (cash 50, liability 6000).
    Margin before: AE = 0.98×5334.629624295 + 0.95×4691.34 + (50 − 6000) < 6000 is fine.
    Quota lowered to 500 → excess 5500.
      own cash 50 first                     → still short 5450
      BTC first (5334.63 > 4691.34): all of it, 0.12345679 BTC sold,
        bought round_down(5334.629624295) = 5334.62962429 USDT → short 115.37037571
      ETH: sold round_up(115.37037571 / 2345.67 = 0.04918440177…) = 0.04918441 ETH,
        bought exactly 115.37037571 USDT
      USDT cash 50 + 5334.62962429 + 115.37037571 = 5500 → Repaid 5500 forced_quota.
    Ends at the quota exactly: liability 500, USDT cash 0, BTC 0, ETH 1.95081559.
    """
    prices(ledger, BTC="43210.5", ETH="2345.67")
    ledger.unified_master("alice", {"BTC": "0.12345679", "ETH": "2", "USDT": "50"})
    borrow_and_withdraw(ledger, "alice", "6000", 1)
    ledger.ok(cmd("set_borrow_quota", 2, currency="USDT", amount="500"))
    run_at = mark(5) + timedelta(seconds=30)  # a run at 00:05:30 sweeps mark 00:05; events carry 00:05:30
    run = run_sweep(ledger.app, run_at)
    assert run.mark == mark(5) and not run.already_swept
    assert swept(ledger, "alice", run_at) == [
        ("AutoSwapped", "BTC", D("0.12345679"), "USDT", D("5334.62962429"), D("43210.5"), D(1), "forced_quota"),
        ("AutoSwapped", "ETH", D("0.04918441"), "USDT", D("115.37037571"), D("2345.67"), D(1), "forced_quota"),
        ("Repaid", "USDT", D(5500), "forced_quota", D(5500), D(0)),
    ]
    acct = ledger.account("alice")
    assert acct.liability("USDT") == D(500) == ledger.platform().quota("USDT", 0)
    assert acct.wallets["unified"] == {"ETH": D("1.95081559")}
    assert run.actions == [{"account": "alice", "kind": "forced_quota", "currency": "USDT",
                            "excess": D(5500), "repaid": D(5500)}]
    assert ledger.app.platform_owed("USDT") == D(500)


def test_l1_cannot_cover_repays_what_there_is(ledger: Ledger) -> None:
    """L1 when the assets cannot cover the excess.  BTC 20000; alice: BTC 0.2 (4000), borrows
    3000 USDT and withdraws it.  BTC falls to 11000 (BTC 0.2 = 2200) and the quota drops to 0:
    excess 3000, no USDT cash: all 0.2 BTC is sold for 0.2 × 11000 = 2200 USDT, repaid
    forced_quota.  800 remains owed with nothing to sell: AE = −800 ≤ 0, MM = 0.1 × 800 = 80,
    so L3 then liquidates and writes the 800 off as bad debt."""
    prices(ledger, BTC="20000")
    ledger.unified_master("alice", {"BTC": "0.2"})
    borrow_and_withdraw(ledger, "alice", "3000", 1)
    ledger.oks(cmd("set_price", 2, currency="BTC", price="11000"),
               cmd("set_borrow_quota", 2, currency="USDT", amount="0"))
    run_sweep(ledger.app, mark(5))
    events = swept(ledger, "alice", mark(5))
    assert events[:2] == [
        ("AutoSwapped", "BTC", D("0.2"), "USDT", D(2200), D(11000), D(1), "forced_quota"),
        ("Repaid", "USDT", D(2200), "forced_quota", D(2200), D(0)),
    ]
    # after L1: nothing to sell, 800 owed, AE = −800 → liquidation writes the 800 off
    assert events[2:] == [
        ("LiquidationStarted", None, D(-800), D(80)),
        ("BadDebtWrittenOff", "USDT", D(800), D(800), D(0)),
        ("LiquidationCompleted", D(0), {"USDT": D(800)}),
    ]
    assert ledger.account("alice").liabilities() == {}


# --- L2: platform limit ------------------------------------------------------------------------------
def test_l2_largest_borrowers_first_ties_by_account_id(ledger: Ledger) -> None:
    """L2 across three accounts.

    BTC 23456.78; a, b, c each hold BTC 1.  a borrows 6000 USDT, b 5000, c 5000 (b withdraws its
    5000, a and c keep the cash).  The platform limit of USDT is then lowered to 7000:
    total 16000, excess 9000.  Order: a (6000), then the tie b/c (5000) by account id: b, c.
      a: repays min(6000, 9000) = 6000 from its own cash          → excess 3000
      b: repays 3000; no USDT cash, so BTC is sold:
         round_up(3000 / 23456.78 = 0.127894792…) = 0.12789480 BTC for 3000 USDT → excess 0
      c: nothing (had c gone before b, c would have repaid 3000 from cash).
    After: a 0, b 2000, c 5000; the platform total 7000 = the limit.
    """
    prices(ledger, BTC="23456.78")
    for name in ("c", "b", "a"):
        ledger.unified_master(name, {"BTC": "1"})
    ledger.oks(cmd("borrow", 1, account="a", currency="USDT", amount="6000"),
               cmd("borrow", 1, account="c", currency="USDT", amount="5000"))
    borrow_and_withdraw(ledger, "b", "5000", 1)
    ledger.ok(cmd("set_platform_borrow_limit", 2, currency="USDT", amount="7000"))
    assert ledger.app.platform_owed("USDT") == D(16000)
    run = run_sweep(ledger.app, mark(5))
    assert swept(ledger, "a", mark(5)) == [("Repaid", "USDT", D(6000), "forced_platform", D(6000), D(0))]
    assert swept(ledger, "b", mark(5)) == [
        ("AutoSwapped", "BTC", D("0.1278948"), "USDT", D(3000), D("23456.78"), D(1), "forced_platform"),
        ("Repaid", "USDT", D(3000), "forced_platform", D(3000), D(0)),
    ]
    assert swept(ledger, "c", mark(5)) == []
    assert [ledger.liability(n, "USDT") for n in ("a", "b", "c")] == [D(0), D(2000), D(5000)]
    assert ledger.cash("b", "BTC") == D("0.8721052")
    assert ledger.app.platform_owed("USDT") == D(7000)
    assert run.actions == [
        {"account": "a", "kind": "forced_platform", "currency": "USDT", "repaid": D(6000)},
        {"account": "b", "kind": "forced_platform", "currency": "USDT", "repaid": D(3000)},
    ]


def test_l2_exact_tie_goes_to_the_smaller_account_id(ledger: Ledger) -> None:
    """L2 tie: x and y both owe 4000 and keep the cash, limit 5000 → excess 3000: x (id first)
    repays all 3000; y repays nothing.  z owes less (1000) and is never reached."""
    prices(ledger, BTC="20000")
    for name in ("z", "y", "x"):
        ledger.unified_master(name, {"BTC": "1"})
    ledger.oks(cmd("borrow", 1, account="y", currency="USDT", amount="4000"),
               cmd("borrow", 1, account="x", currency="USDT", amount="4000"),
               cmd("borrow", 1, account="z", currency="USDT", amount="1000"),
               cmd("set_platform_borrow_limit", 2, currency="USDT", amount="6000"))
    run_sweep(ledger.app, mark(5))
    assert swept(ledger, "x", mark(5)) == [("Repaid", "USDT", D(3000), "forced_platform", D(3000), D(0))]
    assert swept(ledger, "y", mark(5)) == [] and swept(ledger, "z", mark(5)) == []
    assert [ledger.liability(n, "USDT") for n in ("x", "y", "z")] == [D(1000), D(4000), D(1000)]
    assert ledger.app.platform_owed("USDT") == D(6000)


# --- L3: liquidation ---------------------------------------------------------------------------------
def liquidation_world(ledger: Ledger) -> None:
    """L3 with an open spot order, an open futures order and a short futures position.

    BTC 20000.  alice: BTC 1; short 0.1 BTC-USDT at 20000; borrows 10287.5 USDT and withdraws it;
    then a spot sell order s1 (0.1 BTC at 30000: holds 0.1 BTC) and a futures buy order f1
    (0.01 at 5000).  BTC falls to 10000: the short gains 0.1 × 10000 = 1000 (UPL).
      AE = 0.98 × 10000 (BTC) + (0 − 10287.5 + 1000) (USDT) = 9800 − 9287.5 = 512.5
      MM = 0.1 × 10287.5 + 0.05 × 0.1 × 10000 = 1028.75 + 50 = 1078.75
      risk ratio 1078.75 / 512.5 = 2.104878048… ≥ 1 → LiquidationStarted(2.10487805, 512.5, 1078.75)
    Orders cancelled (f1 releases 0, s1 releases 0.1 BTC); the short is closed at mark 10000:
      realized_pnl = −0.1 × (10000 − 20000) = 1000 → USDT cash 1000 repays 1000 (futures_gain).
    Now BTC 1, owed 9287.5: selling s BTC for r USDT and repaying r, with s = r / 10000:
      MM = 0.1 (9287.5 − r) ≤ 0.7 × (0.98 × 10000 × (1 − r/10000) − 9287.5 + r)
      928.75 − 0.1 r ≤ 0.7 × (512.5 + 0.02 r) = 358.75 + 0.014 r  →  r ≥ 570 / 0.114 = 5000
    so 0.5 BTC → 5000 USDT, repaid 5000 (liquidation); one unit less (4999.99999999 still costs
    0.5 BTC) leaves MM 428.750000001 > 0.7 × 612.49999999.  After: BTC 0.5, owed 4287.5,
      AE = 4900 − 4287.5 = 612.5, MM = 428.75, risk ratio 428.75 / 612.5 = 0.7 exactly.
    """
    prices(ledger, BTC="20000")
    ledger.unified_master("alice", {"BTC": "1"})
    ledger.oks(cmd("place_order", 1, account="alice", order_id="p", market="futures", symbol="BTC-USDT",
                   side="sell", qty="0.1", price="20000"),
               cmd("fill_order", 1, account="alice", order_id="p", qty="0.1", price="20000"))
    borrow_and_withdraw(ledger, "alice", "10287.5", 2)
    ledger.oks(cmd("place_order", 3, account="alice", order_id="s1", market="spot", symbol="BTC-USDT",
                   side="sell", qty="0.1", price="30000"),
               cmd("place_order", 3, account="alice", order_id="f1", market="futures", symbol="BTC-USDT",
                   side="buy", qty="0.01", price="5000"),
               cmd("set_price", 4, currency="BTC", price="10000"))
    view = ledger.view("alice")
    assert (view["adjusted_equity"], view["maintenance_margin"], view["liquidatable"]) == ("512.5", "1078.75", True)


def test_l3_liquidation_cancels_closes_sells_and_reaches_the_target(ledger: Ledger) -> None:
    """L3 (numbers in liquidation_world): started at 2.10487805 with AE 512.5 and MM 1078.75,
    both orders cancelled, the short closed at mark with realized P&L 1000 (repaid as
    futures_gain), BTC sold at mark for USDT that is repaid (liquidation), completed at ≤ 0.7.
    The sale is at least the 0.5 BTC the hand computation needs, and far below selling all."""
    liquidation_world(ledger)
    run = run_sweep(ledger.app, mark(5))
    events = swept(ledger, "alice", mark(5))
    assert events[:5] == [
        ("LiquidationStarted", D("2.10487805"), D("512.5"), D("1078.75")),
        ("OrderCancelled", "f1", D(0)),
        ("OrderCancelled", "s1", D("0.1")),
        ("PositionLiquidated", "BTC-USDT", D("-0.1"), D(10000), D(1000)),
        ("Repaid", "USDT", D(1000), "futures_gain", D(1000), D(0)),
    ]
    [swap, repaid, completed] = events[5:]
    _, sold_currency, sold, bought_currency, bought, p_from, p_to, reason = swap
    assert (sold_currency, bought_currency, p_from, p_to, reason) == ("BTC", "USDT", D(10000), D(1), "liquidation")
    assert sold == (bought / 10000).quantize(D("0.00000001"), rounding="ROUND_CEILING")  # sold rounds up
    assert D("0.5") <= sold < D("0.5001")
    assert repaid == ("Repaid", "USDT", bought, "liquidation", bought, D(0))
    assert completed[0] == "LiquidationCompleted" and completed[2] == {} and completed[1] <= D("0.7")
    acct = ledger.account("alice")
    assert acct.positions == {} and acct.orders == {}
    assert acct.wallets["unified"] == {"BTC": 1 - sold} and acct.liabilities() == {"USDT": D("9287.5") - bought}
    m = acct.margin(ledger.platform())
    assert m.maintenance_margin <= D("0.7") * m.adjusted_equity and completed[1] == m.risk_ratio.quantize(D("0.00000001"))
    assert ledger.app.find("holders/BTC-USDT").accounts == {}
    assert run.actions == [{"account": "alice", "kind": "liquidation", "risk_ratio_before": D("2.10487805"),
                            "risk_ratio_after": completed[1], "bad_debt": {}}]
    # below alert 0.8: no alert; a second mark finds nothing to do
    run_sweep(ledger.app, mark(10))
    assert swept(ledger, "alice", mark(10)) == []


def test_l3_liquidation_sells_the_least_that_restores_the_target(ledger: Ledger) -> None:
    """L3 least sale (hand computation in liquidation_world): exactly 0.5 BTC → 5000 USDT,
    completed at risk ratio 0.7 exactly (AE 612.5, MM 428.75)."""
    liquidation_world(ledger)
    run_sweep(ledger.app, mark(5))
    assert swept(ledger, "alice", mark(5))[5:] == [
        ("AutoSwapped", "BTC", D("0.5"), "USDT", D(5000), D(10000), D(1), "liquidation"),
        ("Repaid", "USDT", D(5000), "liquidation", D(5000), D(0)),
        ("LiquidationCompleted", D("0.7"), {}),
    ]
    acct = ledger.account("alice")
    assert acct.wallets["unified"] == {"BTC": D("0.5")} and acct.liabilities() == {"USDT": D("4287.5")}
    m = acct.margin(ledger.platform())
    assert (m.adjusted_equity, m.maintenance_margin, m.risk_ratio) == (D("612.5"), D("428.75"), D("0.7"))


def test_l3_least_repayment_from_a_swap_without_rounding(ledger: Ledger) -> None:
    """L3 where the swap needs no rounding (USDT sold for BTC at an integer price), so the least
    repayment is exact.  BTC 20000.  alice: USDT 12000, borrows 0.5 BTC and withdraws it.
      AE = 12000 − 0.5 × 20000 = 2000, MM = 0.1 × 10000 = 1000 → ratio 0.5
    BTC rises to 22000: AE = 12000 − 11000 = 1000, MM = 1100 → ratio 1.1 ≥ 1 → liquidation.
    Buying b BTC with 22000 b USDT and repaying it:
      0.1 × 22000 (0.5 − b) ≤ 0.7 × (12000 − 22000 b − 22000 (0.5 − b)) = 0.7 × 1000 = 700
      1100 − 2200 b ≤ 700  →  b ≥ 400 / 2200 = 0.181818…  →  b = 0.18181819 (8 decimals)
    sold: 0.18181819 × 22000 = 4000.00018 USDT.  After: USDT 7999.99982, owed 0.31818181 BTC,
      AE = 7999.99982 − 6999.99982 = 1000, MM = 699.999982 → ratio 0.699999982 → 0.69999998.
    One unit less (0.18181818) leaves MM 700.00002 > 700."""
    prices(ledger, BTC="20000")
    ledger.unified_master("alice", {"USDT": "12000"})
    ledger.oks(cmd("borrow", 1, account="alice", currency="BTC", amount="0.5"),
               cmd("withdraw", 1, account="alice", currency="BTC", amount="0.5"),
               cmd("set_price", 2, currency="BTC", price="22000"))
    run_sweep(ledger.app, mark(5))
    assert swept(ledger, "alice", mark(5)) == [
        ("LiquidationStarted", D("1.1"), D(1000), D(1100)),
        ("AutoSwapped", "USDT", D("4000.00018"), "BTC", D("0.18181819"), D(1), D(22000), "liquidation"),
        ("Repaid", "BTC", D("0.18181819"), "liquidation", D("0.18181819"), D(0)),
        ("LiquidationCompleted", D("0.69999998"), {}),
    ]
    acct = ledger.account("alice")
    assert acct.wallets["unified"] == {"USDT": D("7999.99982")} and acct.liabilities() == {"BTC": D("0.31818181")}


def test_l3_crash_ends_in_bad_debt(ledger: Ledger) -> None:
    """L3 bad debt.  BTC 20000, ETH 2000; alice: BTC 1, ETH 2, borrows 10000 USDT and withdraws it.
    BTC falls to 5000 and ETH to 500:
      AE = 0.98 × 5000 + 0.95 × 1000 − 10000 = 4900 + 950 − 10000 = −4150 ≤ 0 → infinite (None)
      MM = 0.1 × 10000 = 1000
    Largest first: BTC 1 → 5000 USDT (repaid), ETH 2 → 1000 USDT (repaid); still 4000 owed and
    nothing to sell: BadDebtWrittenOff 4000; liabilities zero; ratio after 0 (MM = 0)."""
    prices(ledger, BTC="20000", ETH="2000")
    ledger.unified_master("alice", {"BTC": "1", "ETH": "2"})
    borrow_and_withdraw(ledger, "alice", "10000", 1)
    ledger.oks(cmd("set_price", 2, currency="BTC", price="5000"), cmd("set_price", 2, currency="ETH", price="500"))
    run = run_sweep(ledger.app, mark(5))
    assert swept(ledger, "alice", mark(5)) == [
        ("LiquidationStarted", None, D(-4150), D(1000)),
        ("AutoSwapped", "BTC", D(1), "USDT", D(5000), D(5000), D(1), "liquidation"),
        ("Repaid", "USDT", D(5000), "liquidation", D(5000), D(0)),
        ("AutoSwapped", "ETH", D(2), "USDT", D(1000), D(500), D(1), "liquidation"),
        ("Repaid", "USDT", D(1000), "liquidation", D(1000), D(0)),
        ("BadDebtWrittenOff", "USDT", D(4000), D(4000), D(0)),
        ("LiquidationCompleted", D(0), {"USDT": D(4000)}),
    ]
    acct = ledger.account("alice")
    assert acct.liabilities() == {} and acct.wallets["unified"] == {}
    assert ledger.app.platform_owed("USDT") == D(0)
    assert run.actions == [{"account": "alice", "kind": "liquidation", "risk_ratio_before": None,
                            "risk_ratio_after": D(0), "bad_debt": {"USDT": D(4000)}}]


def test_l3_unsellable_dust_does_not_block_the_write_off(ledger: Ledger) -> None:
    """L3: alice as in the bad-debt case but also holding 0.00000001 ETH at 0.5 USDT: it is
    worth 0.000000005 USDT, which rounds down to nothing — it cannot cover anything, so the 800
    the BTC cannot cover must still be written off (and the liabilities end at zero)."""
    prices(ledger, BTC="20000", ETH="2000")
    ledger.unified_master("alice", {"BTC": "0.2", "ETH": "0.00000001"})
    borrow_and_withdraw(ledger, "alice", "3000", 1)
    ledger.oks(cmd("set_price", 2, currency="BTC", price="11000"), cmd("set_price", 2, currency="ETH", price="0.5"))
    run_sweep(ledger.app, mark(5))
    # BTC 0.2 → 2200 repaid; 800 left, ETH dust worth round_down(0.000000005) = 0 USDT
    assert [e.amount for e in ledger.events("alice", "BadDebtWrittenOff")] == [D(800)]
    assert ledger.account("alice").liabilities() == {}


# --- L4: alerts --------------------------------------------------------------------------------------
def test_l4_alert_once_per_crossing(ledger: Ledger) -> None:
    """L4.  alice: BTC 1, owes 9800 USDT (withdrawn): MM = 980, AE = 0.98 P − 9800.
      P 20000 → AE 9800, ratio 0.1            : nothing
      P 11250 → AE 1225, ratio 980/1225 = 0.8  : ≥ alert 0.8 → RiskAlertRaised(0.8)
      P 11200 → AE 1176, ratio 0.83333333     : still above → nothing more
      P 11500 → AE 1470, ratio 0.66666667     : below → RiskAlertCleared(0.66666667)
      P 11250 → ratio 0.8 again               : a new crossing → RiskAlertRaised(0.8)"""
    prices(ledger, BTC="20000")
    ledger.unified_master("alice", {"BTC": "1"})
    borrow_and_withdraw(ledger, "alice", "9800", 1)
    steps = [(None, []), ("11250", [("RiskAlertRaised", D("0.8"))]), ("11200", []),
             ("11500", [("RiskAlertCleared", D("0.66666667"))]), ("11250", [("RiskAlertRaised", D("0.8"))])]
    for n, (price, expected) in enumerate(steps, start=1):
        if price:
            ledger.ok(cmd("set_price", 5 * n - 1, currency="BTC", price=price))
        run = run_sweep(ledger.app, mark(5 * n))
        assert swept(ledger, "alice", mark(5 * n)) == expected, (n, price)
        raised = [a for a in run.actions if a["kind"] == "alert"]
        assert raised == ([{"account": "alice", "kind": "alert", "risk_ratio": D("0.8")}] if price == "11250" else [])
    assert len(ledger.events("alice", "RiskAlertRaised")) == 2
    assert len(ledger.events("alice", "RiskAlertCleared")) == 1


def test_l4_alert_raised_again_after_position_closed_and_reopened(ledger: Ledger) -> None:
    """L4 with a futures-only account.  mmr of BTC-USDT set to 0.09 (imr 0.1).  bob: 100 USDT,
    long 1 BTC-USDT at 1000 (mark 1000): MM = 0.09 × 1000 = 90, AE = 100 → ratio 0.9 ≥ 0.8:
    RiskAlertRaised(0.9).  bob closes the position (ratio 0: below the alert level) and the
    next mark passes; he opens the same position again (ratio 0.9): a new crossing, so a second
    RiskAlertRaised is expected (and a RiskAlertCleared in between)."""
    prices(ledger, BTC="1000")
    ledger.ok(cmd("set_margin_rates", 0, symbol="BTC-USDT", imr="0.1", mmr="0.09"))
    ledger.unified_master("bob", {"USDT": "100"})

    def trade(order_id: str, side: str, minutes: float) -> None:
        ledger.oks(cmd("place_order", minutes, account="bob", order_id=order_id, market="futures", symbol="BTC-USDT",
                       side=side, qty="1", price="1000"),
                   cmd("fill_order", minutes, account="bob", order_id=order_id, qty="1", price="1000"))

    trade("o1", "buy", 1)
    run_sweep(ledger.app, mark(5))
    assert swept(ledger, "bob", mark(5)) == [("RiskAlertRaised", D("0.9"))]
    trade("o2", "sell", 6)
    run_sweep(ledger.app, mark(10))
    trade("o3", "buy", 11)
    run_sweep(ledger.app, mark(15))
    assert swept(ledger, "bob", mark(15)) == [("RiskAlertRaised", D("0.9"))]
    assert len(ledger.events("bob", "RiskAlertCleared")) == 1


# --- exactly once per mark ---------------------------------------------------------------------------
def test_a_mark_is_swept_once_and_a_later_mark_acts(ledger: Ledger) -> None:
    """§9: re-running mark t does nothing, even when a new breach appeared since; mark t+5 acts.
    alice owes 1000 USDT and keeps the cash.  Quota 800 → the 00:05 run repays 200.  Quota then
    700 (at 00:06): a re-run at 00:08 (mark 00:05 again) does nothing; the 00:10 run repays 100."""
    prices(ledger, BTC="20000")
    ledger.unified_master("alice", {"BTC": "1"})
    ledger.oks(cmd("borrow", 1, account="alice", currency="USDT", amount="1000"),
               cmd("set_borrow_quota", 2, currency="USDT", amount="800"))
    first = run_sweep(ledger.app, mark(5))
    assert (first.already_swept, len(first.actions)) == (False, 1)
    assert swept(ledger, "alice", mark(5)) == [("Repaid", "USDT", D(200), "forced_quota", D(200), D(0))]
    ledger.ok(cmd("set_borrow_quota", 6, currency="USDT", amount="700"))
    before = ledger.app.recorder.max_notification_id()
    again = run_sweep(ledger.app, mark(8))
    assert again.already_swept is True and again.mark == mark(5) and again.actions == []
    assert ledger.app.recorder.max_notification_id() == before  # nothing recorded at all
    again_elsewhere = run_sweep(ledger.reopen().app, mark(9))  # another process, same mark
    assert again_elsewhere.already_swept is True
    assert ledger.liability("alice", "USDT") == D(800)
    later = run_sweep(ledger.app, mark(10))
    assert later.already_swept is False and later.mark == mark(10)
    assert swept(ledger, "alice", mark(10)) == [("Repaid", "USDT", D(100), "forced_quota", D(100), D(0))]
    assert ledger.liability("alice", "USDT") == D(700)
    assert ledger.app.find("runs/sweep").last_mark == mark(10)
    # an older mark after a later one is also already swept
    assert run_sweep(ledger.app, mark(7)).already_swept is True
    assert count_sweep_events(ledger, "alice") == 2


# --- two processes at once (PostgreSQL) --------------------------------------------------------------
def sweep_world(url: str, quota_accounts: int = 12) -> None:
    """q-accounts: BTC 1 at 20000, owe 3000 USDT (withdrawn) and the quota drops to 2000 → L1
    sells round_up(1000 / 20000) = 0.05 BTC for 1000 USDT each.
    l-accounts: ETH 1 at 2000, owe 1500 USDT (withdrawn); ETH falls to 1700:
      AE = 0.95 × 1700 − 1500 = 115, MM = 150, ratio 1.30434783 → liquidated.
    The platform limit of USDT (15000) is below what is owed after L1 and L3, so L2 acts too."""
    cmds: list[dict] = [
        {"type": "set_platform_flags", "whitelist_required": False, "at": at(0)},
        {"type": "set_price", "currency": "BTC", "price": "20000", "at": at(0)},
        {"type": "set_price", "currency": "ETH", "price": "2000", "at": at(0)},
    ]
    names = [(f"q{n:02d}", "BTC", "3000") for n in range(quota_accounts)] + [(f"l{n}", "ETH", "1500") for n in range(2)]
    for name, coin, owed in names:
        cmds += [{"type": "open_account", "account": name, "at": at(1)},
                 {"type": "complete_risk_assessment", "account": name, "score": 50, "agreements_version": "v1", "at": at(1)},
                 {"type": "switch_mode", "account": name, "mode": "unified", "at": at(1)},
                 {"type": "deposit", "account": name, "currency": coin, "amount": "1", "at": at(1)},
                 {"type": "borrow", "account": name, "currency": "USDT", "amount": owed, "at": at(2)},
                 {"type": "withdraw", "account": name, "currency": "USDT", "amount": owed, "at": at(2)}]
    cmds += [{"type": "set_borrow_quota", "currency": "USDT", "amount": "2000", "at": at(3)},
             {"type": "set_price", "currency": "ETH", "price": "1700", "at": at(3)},
             {"type": "set_platform_borrow_limit", "currency": "USDT", "amount": "15000", "at": at(3)}]
    app = LedgerApp.open(persistence_env(url))
    try:
        results = app.apply(cmds, lambda: T0, latest)
        assert all(r["ok"] for r in results), [r for r in results if not r["ok"]]
    finally:
        app.close()


def sweep_record(url: str) -> dict[str, list[tuple]]:
    """Every account's sweep events, without times and ids."""
    app = LedgerApp.open(persistence_env(url))
    try:
        book = Ledger.__new__(Ledger)
        book.app = app
        out = {}
        for account in app.account_ids():
            out[account] = [e for e in swept(book, account, mark(5) + timedelta(seconds=7))]
        return out
    finally:
        app.close()


@pytest.mark.postgres
def test_two_repayment_run_processes_at_once_act_once(tmp_path: Path) -> None:
    """§9 exactly once: two `ledger repayment run --at T --json` processes started together on
    one PostgreSQL database record each action once — the same events as one run alone."""
    url = pg.new_database()
    sweep_world(url)
    run_at = (mark(5) + timedelta(seconds=7)).isoformat().replace("+00:00", "Z")
    env = {**os.environ, "LEDGER_SWEEP_BATCH_ACCOUNTS": "3"}
    procs = [subprocess.Popen([sys.executable, "-m", "entrypoints", "--db", url, "repayment", "run", "--at", run_at, "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    reported: Counter = Counter()
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        body = json.loads(stdout)
        assert body["mark"] == "2026-03-01T00:05:00Z" and body["skipped"] == []
        for action in body["actions"]:
            reported[json.dumps(action, sort_keys=True)] += 1
    concurrent = sweep_record(url)

    # the same world swept once, alone, on SQLite
    alone_url = f"sqlite:///{tmp_path / 'alone.db'}"
    sweep_world(alone_url)
    app = LedgerApp.open(persistence_env(alone_url))
    try:
        alone_run = run_sweep(app, mark(5) + timedelta(seconds=7))
        from ledger.read.render import plain
        expected_actions = Counter(json.dumps(plain(a), sort_keys=True) for a in alone_run.actions)
    finally:
        app.close()
    alone = sweep_record(alone_url)
    assert concurrent == alone
    assert reported == expected_actions  # every action reported by exactly one of the two processes
    kinds = Counter(json.loads(a)["kind"] for a in reported.elements())
    assert kinds["forced_quota"] == 12 and kinds["liquidation"] == 2 and kinds["forced_platform"] >= 1
    for n in range(12):  # each quota breach acted on exactly once
        events = concurrent[f"q{n:02d}"]
        assert events.count(("AutoSwapped", "BTC", D("0.05"), "USDT", D(1000), D(20000), D(1), "forced_quota")) == 1
        assert events.count(("Repaid", "USDT", D(1000), "forced_quota", D(1000), D(0))) == 1
    for name in ("l0", "l1"):
        types = [e[0] for e in concurrent[name]]
        assert types.count("LiquidationStarted") == 1 and types.count("LiquidationCompleted") == 1
        assert concurrent[name][0] == ("LiquidationStarted", D("1.30434783"), D(115), D(150))


# --- property: after a sweep every limit holds, or nothing is left to sell ---------------------------
def nothing_to_sell(acct: Any, platform: Any, currency: str) -> bool:
    """No cash of ``currency`` and no other priced asset that could buy 10^-precision of it."""
    if round_down(acct.available(currency, platform), platform.precision(currency)) > 0:
        return False
    for other in acct.wallets.get("unified", {}):
        if other == currency or (other != QUOTE and other not in platform.prices):
            continue
        free = round_down(acct.available(other, platform), platform.precision(other))
        if free > 0 and round_down(free * platform.price(other) / platform.price(currency), platform.precision(currency)) > 0:
            return False
    return True


amounts = st.decimals(min_value=D("0.001"), max_value=D(5), places=3)
fractions = st.decimals(min_value=D("0.05"), max_value=D(1), places=2)
account_plan = st.fixed_dictionaries({
    "BTC": amounts, "ETH": st.decimals(min_value=D(0), max_value=D(40), places=2),
    "USDT": st.decimals(min_value=D(0), max_value=D(20000), places=2),
    "borrow": st.lists(st.tuples(st.sampled_from(["USDT", "BTC", "ETH"]), fractions), min_size=1, max_size=3),
    "withdraw": st.booleans(),
})
world_plan = st.fixed_dictionaries({
    "accounts": st.lists(account_plan, min_size=1, max_size=3),
    "btc": st.decimals(min_value=D("0.2"), max_value=D("1.5"), places=2),
    "eth": st.decimals(min_value=D("0.2"), max_value=D("1.5"), places=2),
    "quotas": st.lists(st.tuples(st.sampled_from(["USDT", "BTC", "ETH"]), fractions), max_size=3),
    "limits": st.lists(st.tuples(st.sampled_from(["USDT", "BTC", "ETH"]), fractions), max_size=3),
})


def check_world(env: dict[str, str], plan: dict[str, Any]) -> None:
    book = Ledger(env)
    try:
        prices(book, BTC="30000", ETH="2000")
        names = [f"u{n}" for n in range(len(plan["accounts"]))]
        for name, spec in zip(names, plan["accounts"]):
            book.unified_master(name, {c: str(spec[c]) for c in ("BTC", "ETH", "USDT") if spec[c] > 0})
        for name, spec in zip(names, plan["accounts"]):
            for currency, fraction in spec["borrow"]:
                room = D(book.view(name)["borrowable"][currency])
                amount = round_down(room * fraction, 8)
                if amount > 0:
                    book.ok(cmd("borrow", 1, account=name, currency=currency, amount=fmt(amount)))
                    out = amount  # take the borrowed cash out, as much as the margin allows (W2)
                    while spec["withdraw"] and out > 0:
                        [result] = book.apply(cmd("withdraw", 1, account=name, currency=currency, amount=fmt(out)))
                        out = D(0) if result["ok"] else round_down(out / 2, 8)
        book.oks(cmd("set_price", 2, currency="BTC", price=fmt(30000 * plan["btc"])),
                 cmd("set_price", 2, currency="ETH", price=fmt(2000 * plan["eth"])))
        for currency, fraction in plan["quotas"]:
            most = max([book.liability(n, currency) for n in names])
            book.ok(cmd("set_borrow_quota", 2, currency=currency, amount=fmt(round_down(most * fraction, 8))))
        for currency, fraction in plan["limits"]:
            total = D(book.app.platform_owed(currency))
            book.ok(cmd("set_platform_borrow_limit", 2, currency=currency, amount=fmt(round_down(total * fraction, 8))))
        platform = book.platform()
        for name in names:  # the screen's test: where it says no, the sweep changes nothing
            acct = book.account(name)  # a copy: acting on it in memory saves nothing
            if not needs_sweep(acct, platform):
                sweep_account(acct, platform, mark(5))
                assert not acct.pending_count, name
        run = run_sweep(book.app, mark(5))
        assert run.skipped == [] and run.complete
        for kind in sorted({a["kind"] for a in run.actions}):
            event(kind)  # shown by --hypothesis-show-statistics
        platform = book.platform()
        accounts = {n: book.account(n) for n in names}
        for name, acct in accounts.items():
            for currency, owed in acct.liabilities().items():
                assert owed > 0
                assert owed <= platform.quota(currency, acct.vip_level) or nothing_to_sell(acct, platform, currency), (
                    name, currency, owed, acct.wallets)
            assert all(v >= 0 for v in acct.principal.values()) and all(v >= 0 for v in acct.interest.values())
        for currency in ("USDT", "BTC", "ETH"):
            total = sum((a.liability(currency) for a in accounts.values()), D(0))
            assert D(book.app.platform_owed(currency)) == total
            limit = platform.platform_limit(currency)
            if limit is not None and total > limit:
                assert all(nothing_to_sell(a, platform, currency) for a in accounts.values() if a.liability(currency)), (
                    currency, total, limit)
        # and the mark is done: a re-run changes nothing
        before = book.app.recorder.max_notification_id()
        assert run_sweep(book.app, mark(6)).already_swept
        assert book.app.recorder.max_notification_id() == before
    finally:
        book.close()


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(plan=world_plan)
def test_property_limits_hold_after_a_sweep_sqlite(plan: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        check_world({"PERSISTENCE_MODULE": "stores.sqlite", "SQLITE_DBNAME": str(Path(folder) / "p.db")}, plan)


@pytest.mark.postgres
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(plan=world_plan)
def test_property_limits_hold_after_a_sweep_postgres(plan: dict[str, Any]) -> None:
    check_world(pg.env(pg.new_schema()), plan)


# --- `ledger repayment run` ---------------------------------------------------------------------------
runner = CliRunner()


def test_repayment_run_cli_json_and_table(tmp_path: Path) -> None:
    """§13/§14: `ledger repayment run --at T --json` → {"at", "mark", "actions": [...]}; the
    people's table; a second run for the same mark says so.  alice owes 1000 USDT (cash kept),
    quota 800 → forced_quota 200 at mark 00:05 for a run at 00:07:30."""
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    lines = [
        {"type": "set_platform_flags", "whitelist_required": False, "at": at(0)},
        {"type": "set_price", "currency": "BTC", "price": "20000", "at": at(0)},
        {"type": "open_account", "account": "alice", "at": at(0)},
        {"type": "complete_risk_assessment", "account": "alice", "score": 50, "agreements_version": "v1", "at": at(0)},
        {"type": "switch_mode", "account": "alice", "mode": "unified", "at": at(0)},
        {"type": "deposit", "account": "alice", "currency": "BTC", "amount": "1", "at": at(1)},
        {"type": "borrow", "account": "alice", "currency": "USDT", "amount": "1000", "at": at(1)},
        {"type": "set_borrow_quota", "currency": "USDT", "amount": "800", "at": at(2)},
    ]
    applied = runner.invoke(cli, ["--db", db, "apply", "-"], input="".join(json.dumps(l) + "\n" for l in lines))
    assert applied.exit_code == 0, applied.stdout
    result = runner.invoke(cli, ["--db", db, "repayment", "run", "--at", "2026-03-01T00:07:30Z", "--json"])
    assert result.exit_code == 0, result.stdout
    body = json.loads(result.stdout)
    assert body["at"] == "2026-03-01T00:07:30Z" and body["mark"] == "2026-03-01T00:05:00Z"
    assert body["actions"] == [{"account": "alice", "kind": "forced_quota", "currency": "USDT",
                                "excess": "200", "repaid": "200"}]
    history = json.loads(runner.invoke(cli, ["--db", db, "history", "alice", "--type", "Repaid", "--json"]).stdout)
    assert [(e["amount"], e["source"], e["at"]) for e in history] == [("200", "forced_quota", "2026-03-01T00:07:30Z")]
    again = json.loads(runner.invoke(cli, ["--db", db, "repayment", "run", "--at", "2026-03-01T00:09:00Z", "--json"]).stdout)
    assert again["actions"] == [] and again["already_swept"] is True and again["mark"] == "2026-03-01T00:05:00Z"
    # a new breach, swept by the next mark, shown for people
    applied = runner.invoke(cli, ["--db", db, "apply", "-"], input=json.dumps(
        {"type": "set_borrow_quota", "currency": "USDT", "amount": "750", "at": at(9)}) + "\n")
    assert applied.exit_code == 0
    table = runner.invoke(cli, ["--db", db, "repayment", "run", "--at", "2026-03-01T00:10:00Z"])
    assert table.exit_code == 0, table.stdout
    assert "alice" in table.stdout and "forced_quota" in table.stdout and "repaid=50" in table.stdout
    assert "mark 2026-03-01T00:10:00Z: 1 accounts examined, 1 actions" in table.stdout
    quiet = runner.invoke(cli, ["--db", db, "repayment", "run", "--at", "2026-03-01T00:12:00Z"])
    assert "mark 2026-03-01T00:10:00Z was swept already: nothing done" in quiet.stdout


def test_the_screen_in_processes_acts_as_the_screen_in_process(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """workers.screen: spreading the read-only screen over two processes, in chunks of three
    accounts, flags the same accounts, so the sweep's events (L1, L2, L3) are the same."""
    import workers.screen as screen

    other = f"sqlite:///{tmp_path / 'other.db'}" if db_url.startswith("sqlite") else pg.new_database()
    runs = {}
    for url, parallel_from in ((db_url, 10**9), (other, 1)):
        monkeypatch.setattr(screen, "CHUNK_ACCOUNTS", 3)
        sweep_world(url)
        app = LedgerApp.open(persistence_env(url))
        try:
            runs[url] = run_sweep(app, mark(5) + timedelta(seconds=7), processes=2, parallel_from=parallel_from)
        finally:
            app.close()
    single, parallel = runs[db_url], runs[other]
    assert Counter(a["kind"] for a in single.actions) == {"forced_quota": 12, "forced_platform": 6, "liquidation": 2}
    assert single.actions == parallel.actions
    assert sweep_record(db_url) == sweep_record(other)
    assert parallel.complete and single.accounts == parallel.accounts == 14
