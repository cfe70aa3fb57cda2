"""Borrowing and repayment through the application (SPEC §6 B1-B4, §7 R1-R3, §14), on
SQLite and PostgreSQL.  Every expected number is worked out by hand in the comments.

Defaults used throughout (§4): liabilities imr/mmr 0.2/0.1, futures 0.1/0.05, BTC collateral
0.98 (to 500 BTC), ETH 0.95, quotas USDT 1,000,000 / BTC 20 / ETH 300.
"""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from ledger.domain.account import Account
from ledger.domain.money import ZERO
from tests.helpers import D, Ledger

MONEY = ("amount", "principal", "interest", "upl_generated")


def norm(event: dict[str, Any]) -> dict[str, Any]:
    """An event without `at`/`account`, money compared as decimals ("5000" == "5000.0")."""
    out = {k: v for k, v in event.items() if k not in ("at", "account")}
    for k in MONEY:
        if isinstance(out.get(k), str):
            out[k] = D(out[k])
    return out


def of(events: list[dict[str, Any]], *types: str) -> list[dict[str, Any]]:
    return [norm(e) for e in events if e["type"] in types]


def borrowed(currency: str, amount: str, source: str, upl: bool = False) -> dict[str, Any]:
    """As shown: ``upl_generated`` is an amount on every event (all of it here, or 0)."""
    return {"type": "Borrowed", "currency": currency, "amount": D(amount), "source": source,
            "upl_generated": D(amount) if upl else D(0)}


def repaid(currency: str, amount: str, source: str, principal: str | None = None,
           interest: str = "0", upl: str = "0") -> dict[str, Any]:
    return {"type": "Repaid", "currency": currency, "amount": D(amount), "source": source,
            "principal": D(principal if principal is not None else amount),
            "interest": D(interest), "upl_generated": D(upl)}


def order(ledger: Ledger, account: str, order_id: str, side: str, qty: str, price: str,
          market: str = "spot", symbol: str = "BTC-USDT") -> list[dict[str, Any]]:
    return ledger.ok({"type": "place_order", "account": account, "order_id": order_id,
                      "market": market, "symbol": symbol, "side": side, "qty": qty,
                      "price": price})


def place(account: str, order_id: str, side: str, qty: str, price: str,
          market: str = "spot", symbol: str = "BTC-USDT") -> dict[str, Any]:
    return {"type": "place_order", "account": account, "order_id": order_id, "market": market,
            "symbol": symbol, "side": side, "qty": qty, "price": price}


def fill(ledger: Ledger, account: str, order_id: str, qty: str, price: str,
         fee: str = "0") -> list[dict[str, Any]]:
    return ledger.ok({"type": "fill_order", "account": account, "order_id": order_id,
                      "qty": qty, "price": price, "fee": fee})


def borrow(account: str, currency: str, amount: str) -> dict[str, Any]:
    return {"type": "borrow", "account": account, "currency": currency, "amount": amount}


def repay(account: str, currency: str, amount: str) -> dict[str, Any]:
    return {"type": "repay", "account": account, "currency": currency, "amount": amount}


def deposit(account: str, currency: str, amount: str) -> dict[str, Any]:
    return {"type": "deposit", "account": account, "currency": currency, "amount": amount}


def long_btc(ledger: Ledger, deposits: dict[str, str], account: str = "alice") -> None:
    """A unified master opens a 1 BTC long at 50000 (IM 50000 × 0.1 = 5000)."""
    ledger.unified_master(account, deposits=deposits)
    ledger.price("BTC", "50000")
    order(ledger, account, "f1", "buy", "1", "50000", market="futures")
    fill(ledger, account, "f1", "1", "50000")


# --- B3 explicit borrow ---------------------------------------------------------------------
def test_b3_borrow_within_b2_then_limit_exceeded_by_margin(ledger: Ledger) -> None:
    """B2/B3: USDT limit = (AE − IM) / (1 × 0.2); borrowing uses it up exactly."""
    ledger.unified_master("alice", deposits={"USDT": "10000"})
    # AE 10000, IM 0 → 10000 / 0.2 = 50000 (quota 1,000,000 not binding)
    assert D(ledger.view("alice")["borrowable"]["USDT"]) == D(50000)
    ledger.reject(borrow("alice", "USDT", "50000.00000001"), "borrow_limit_exceeded")
    events = ledger.ok(borrow("alice", "USDT", "50000"))
    assert of(events, "Borrowed") == [borrowed("USDT", "50000", "manual")]
    assert ledger.cash("alice", "USDT") == D(60000)
    assert ledger.liability("alice", "USDT") == D(50000)
    # AE still 60000 − 50000 = 10000; IM = 50000 × 0.2 = 10000 → nothing left
    assert D(ledger.view("alice")["borrowable"]["USDT"]) == D(0)
    ledger.reject(borrow("alice", "USDT", "0.00000001"), "borrow_limit_exceeded")


def test_b3_btc_margin_term_binding(ledger: Ledger) -> None:
    """B2: BTC limit = 10000 / (50000 × 0.2) = 1 BTC, below the 20 BTC quota."""
    ledger.unified_master("alice", deposits={"USDT": "10000"})
    ledger.price("BTC", "50000")
    assert D(ledger.view("alice")["borrowable"]["BTC"]) == D(1)
    ledger.reject(borrow("alice", "BTC", "1.00000001"), "borrow_limit_exceeded")
    assert of(ledger.ok(borrow("alice", "BTC", "1")), "Borrowed") == [borrowed("BTC", "1", "manual")]
    assert ledger.cash("alice", "BTC") == D(1)
    assert ledger.account("alice").principal == {"BTC": D(1)}


def test_b3_borrow_limit_exceeded_by_quota(ledger: Ledger) -> None:
    """B2: the personal quota (BTC 20) binds when margin would allow more."""
    ledger.unified_master("alice", deposits={"USDT": "1000000"})
    ledger.price("BTC", "50000")
    # margin term 1,000,000 / 10000 = 100 BTC; quota 20 → 20
    assert D(ledger.view("alice")["borrowable"]["BTC"]) == D(20)
    ledger.reject(borrow("alice", "BTC", "20.00000001"), "borrow_limit_exceeded")
    ledger.ok(borrow("alice", "BTC", "15"))
    # 20 − 15 = 5 left of the quota
    ledger.reject(borrow("alice", "BTC", "5.00000001"), "borrow_limit_exceeded")
    ledger.ok(borrow("alice", "BTC", "5"))
    ledger.reject(borrow("alice", "BTC", "0.00000001"), "borrow_limit_exceeded")
    assert ledger.liability("alice", "BTC") == D(20)


def test_b3_quota_per_vip_level(ledger: Ledger) -> None:
    """B2 / §4 set_borrow_quota with vip_level: the level's own quota applies."""
    ledger.unified_master("vip", deposits={"USDT": "1000000"}, vip_level=3)
    ledger.price("BTC", "50000")
    ledger.ok({"type": "set_borrow_quota", "currency": "BTC", "amount": "30", "vip_level": 3})
    ledger.reject(borrow("vip", "BTC", "30.00000001"), "borrow_limit_exceeded")
    ledger.ok(borrow("vip", "BTC", "30"))


def test_b3_platform_limit_shared_by_two_accounts(ledger: Ledger) -> None:
    """B2/B3: platform_limit − all accounts' liabilities; over it is platform_limit_exceeded."""
    ledger.unified_master("alice", deposits={"USDT": "10000"})
    ledger.unified_master("bob", deposits={"USDT": "10000"})
    ledger.ok({"type": "set_platform_borrow_limit", "currency": "USDT", "amount": "30000"})
    ledger.ok(borrow("alice", "USDT", "20000"))
    # bob's personal limit is 50000, the platform has 30000 − 20000 = 10000 left
    assert D(ledger.view("bob")["borrowable"]["USDT"]) == D(10000)
    ledger.reject(borrow("bob", "USDT", "10000.00000001"), "platform_limit_exceeded")
    ledger.ok(borrow("bob", "USDT", "10000"))
    # alice personally could borrow (10000 − 4000) / 0.2 = 30000 more, the platform 0
    ledger.reject(borrow("alice", "USDT", "1"), "platform_limit_exceeded")
    # the personal check comes first: 30000.00000001 is over alice's own limit
    ledger.reject(borrow("alice", "USDT", "30000.00000001"), "borrow_limit_exceeded")
    # a repayment frees platform room again
    ledger.ok(repay("alice", "USDT", "500"))
    ledger.reject(borrow("bob", "USDT", "500.00000001"), "platform_limit_exceeded")
    ledger.ok(borrow("bob", "USDT", "500"))


def test_b3_platform_limit_within_one_batch(ledger: Ledger) -> None:
    """B2: the platform's remaining limit is current between commands of one batch."""
    ledger.unified_master("alice", deposits={"USDT": "10000"})
    ledger.unified_master("bob", deposits={"USDT": "10000"})
    ledger.ok({"type": "set_platform_borrow_limit", "currency": "USDT", "amount": "30000"})
    first, second = ledger.apply(borrow("alice", "USDT", "20000"), borrow("bob", "USDT", "10000.00000001"))
    assert first["ok"] is True
    assert second["ok"] is False and second["error"]["code"] == "platform_limit_exceeded"
    assert ledger.liability("bob", "USDT") == ZERO
    assert ledger.liability("alice", "USDT") == D(20000)


def test_b3_borrow_not_unified(ledger: Ledger) -> None:
    """B3: a classic account cannot borrow (not_unified)."""
    ledger.open("carol")
    ledger.ok(deposit("carol", "USDT", "10000"))
    ledger.reject(borrow("carol", "USDT", "1"), "not_unified")


# --- B3 / R2 manual repay -------------------------------------------------------------------------
def test_r2_manual_repay_caps_at_owed_then_nothing_to_repay(ledger: Ledger) -> None:
    """B3/R2/R3: repay never takes more than owed; with nothing owed it is nothing_to_repay."""
    ledger.unified_master("alice", deposits={"USDT": "10000"})
    ledger.reject(repay("alice", "USDT", "1"), "nothing_to_repay")
    ledger.ok(borrow("alice", "USDT", "1000"))
    assert of(ledger.ok(repay("alice", "USDT", "400")), "Repaid") == [repaid("USDT", "400", "manual")]
    # 600 still owed; asking 5000 repays 600
    events = ledger.ok(repay("alice", "USDT", "5000"))
    assert of(events, "Repaid") == [repaid("USDT", "600", "manual")]
    assert ledger.liability("alice", "USDT") == ZERO
    assert ledger.cash("alice", "USDT") == D(10000)  # 10000 + 1000 − 400 − 600
    ledger.reject(repay("alice", "USDT", "1"), "nothing_to_repay")


def test_r2_manual_repay_insufficient_balance(ledger: Ledger) -> None:
    """B3: repay is from cash: more than the available balance is insufficient_balance."""
    ledger.unified_master("alice", deposits={"USDT": "10000"})
    ledger.price("BTC", "50000")
    ledger.ok(borrow("alice", "BTC", "0.1"))
    # withdraw the borrowed 0.1 BTC: AE = 10000 − 5000 = 5000 ≥ IM 1000, allowed (W2)
    ledger.ok({"type": "withdraw", "account": "alice", "currency": "BTC", "amount": "0.1"})
    ledger.reject(repay("alice", "BTC", "0.05"), "insufficient_balance")
    ledger.ok(deposit("alice", "BTC", "0.02"))  # R1 repays 0.02 at once
    assert ledger.liability("alice", "BTC") == D("0.08")
    ledger.reject(repay("alice", "BTC", "0.01"), "insufficient_balance")


def test_r2_manual_repay_cannot_use_cash_held_by_orders(ledger: Ledger) -> None:
    """B3/W4: repay uses the available balance: cash held by an open order is not available."""
    ledger.unified_master("alice", deposits={"USDT": "1000"})
    ledger.price("BTC", "50000")
    ledger.ok(borrow("alice", "USDT", "1000"))
    order(ledger, "alice", "o1", "buy", "0.03", "50000")  # holds 1500 of the 2000 cash
    ledger.reject(repay("alice", "USDT", "500.00000001"), "insufficient_balance")
    assert of(ledger.ok(repay("alice", "USDT", "500")), "Repaid") == [repaid("USDT", "500", "manual")]


# --- O1 / B4 spot margin ------------------------------------------------------------------------
def test_o1_unified_order_covered_by_cash_plus_borrowing_capacity(ledger: Ledger) -> None:
    """O1: a unified spot order needs cash + B2 capacity: 10000 + 50000 = 60000 USDT."""
    ledger.unified_master("alice", deposits={"USDT": "10000"})
    ledger.price("BTC", "50000")
    ledger.reject(place("alice", "o1", "buy", "1.20000001", "50000"), "insufficient_balance")
    order(ledger, "alice", "o1", "buy", "1.2", "50000")  # 60000
    # a short sale: 0 BTC + 10000 / (50000 × 0.2) = 1 BTC
    ledger.ok({"type": "cancel_order", "account": "alice", "order_id": "o1"})
    ledger.reject(place("alice", "s1", "sell", "1.00000001", "50000"), "insufficient_balance")
    order(ledger, "alice", "s1", "sell", "1", "50000")


def test_b4_spot_margin_disabled_needs_cash(ledger: Ledger) -> None:
    """B4: with spot_margin_enabled off, unified spot orders need cash as in classic mode."""
    ledger.unified_master("alice", deposits={"USDT": "10000"})
    ledger.price("BTC", "50000")
    ledger.ok({"type": "set_platform_flags", "spot_margin_enabled": False})
    ledger.reject(place("alice", "o1", "buy", "0.20000001", "50000"), "insufficient_balance")
    ledger.reject(place("alice", "s1", "sell", "0.1", "50000"), "insufficient_balance")
    order(ledger, "alice", "o1", "buy", "0.2", "50000")  # exactly the 10000 cash
    ledger.ok({"type": "cancel_order", "account": "alice", "order_id": "o1"})
    ledger.ok({"type": "set_platform_flags", "spot_margin_enabled": True})
    order(ledger, "alice", "o2", "buy", "0.3", "50000")  # 15000 ≤ 10000 + 50000


# --- B1 / R1 scenarios ----------------------------------------------------------------------------
def test_scenario_1_spot_buy_beyond_cash_borrows_shortfall_and_fee(ledger: Ledger) -> None:
    """B1: a buy beyond cash borrows exactly the shortfall (source spot) and the fee part (fee)."""
    ledger.unified_master("alice", deposits={"USDT": "10000"})
    ledger.price("BTC", "50000")
    order(ledger, "alice", "o1", "buy", "0.3", "50000")
    events = fill(ledger, "alice", "o1", "0.3", "50000", fee="10")
    # cost 0.3 × 50000 = 15000: 10000 from cash, 5000 borrowed; the fee 10 borrowed on top
    assert [e["type"] for e in events] == ["OrderFilled", "Borrowed", "Borrowed"]
    assert of(events, "Borrowed") == [borrowed("USDT", "5000", "spot"), borrowed("USDT", "10", "fee")]
    assert of(events, "Repaid") == []
    assert ledger.cash("alice", "USDT") == ZERO
    assert ledger.cash("alice", "BTC") == D("0.3")
    assert ledger.liability("alice", "USDT") == D(5010)
    assert ledger.account("alice").upl_liability == {}


def test_scenario_1b_fee_only_shortfall(ledger: Ledger) -> None:
    """B1: when cash covers the trade but not the fee, only the fee part is borrowed (source fee)."""
    ledger.unified_master("alice", deposits={"USDT": "15005"})
    ledger.price("BTC", "50000")
    order(ledger, "alice", "o1", "buy", "0.3", "50000")
    events = fill(ledger, "alice", "o1", "0.3", "50000", fee="10")
    # 15005 − 15000 − 10 = −5 → borrow 5 for the fee
    assert of(events, "Borrowed") == [borrowed("USDT", "5", "fee")]
    assert ledger.cash("alice", "USDT") == ZERO
    assert ledger.liability("alice", "USDT") == D(5)


def test_scenario_2_and_3_short_sale_then_buy_back(ledger: Ledger) -> None:
    """B1: selling BTC not held borrows it (source spot); R1: buying it back repays (source buy)."""
    ledger.unified_master("alice", deposits={"USDT": "10000"})
    ledger.price("BTC", "50000")
    order(ledger, "alice", "s1", "sell", "0.1", "50000")
    events = fill(ledger, "alice", "s1", "0.1", "50000")
    assert of(events, "Borrowed") == [borrowed("BTC", "0.1", "spot")]
    assert of(events, "Repaid") == []
    # proceeds 0.1 × 50000 = 5000
    assert ledger.cash("alice", "USDT") == D(15000)
    assert ledger.cash("alice", "BTC") == ZERO
    assert ledger.liability("alice", "BTC") == D("0.1")

    order(ledger, "alice", "b1", "buy", "0.1", "48000")
    events = fill(ledger, "alice", "b1", "0.1", "48000")
    assert [e["type"] for e in events] == ["OrderFilled", "Repaid"]
    assert of(events, "Repaid") == [repaid("BTC", "0.1", "buy")]
    # 15000 − 0.1 × 48000 = 10200: the short made 200
    assert ledger.cash("alice", "USDT") == D(10200)
    assert ledger.cash("alice", "BTC") == ZERO
    assert ledger.liability("alice", "BTC") == ZERO


def test_partial_buy_back_repays_what_came_in(ledger: Ledger) -> None:
    """R1: a buy fill repays up to the amount that came in."""
    ledger.unified_master("alice", deposits={"USDT": "10000"})
    ledger.price("BTC", "50000")
    order(ledger, "alice", "s1", "sell", "0.1", "50000")
    fill(ledger, "alice", "s1", "0.1", "50000")
    order(ledger, "alice", "b1", "buy", "0.1", "50000")
    assert of(fill(ledger, "alice", "b1", "0.04", "50000"), "Repaid") == [repaid("BTC", "0.04", "buy")]
    assert ledger.liability("alice", "BTC") == D("0.06")
    assert ledger.cash("alice", "BTC") == ZERO


def test_sell_proceeds_repay_usdt_liability(ledger: Ledger) -> None:
    """R1 (documented rule: the received currency repays, source buy): USDT proceeds of a sell."""
    ledger.unified_master("alice", deposits={"BTC": "1"})
    ledger.price("BTC", "50000")
    order(ledger, "alice", "b1", "buy", "0.01", "50000")
    events = fill(ledger, "alice", "b1", "0.01", "50000")
    assert of(events, "Borrowed") == [borrowed("USDT", "500", "spot")]  # no USDT cash at all
    order(ledger, "alice", "s1", "sell", "0.02", "50000")
    events = fill(ledger, "alice", "s1", "0.02", "50000", fee="1")
    # proceeds 1000 − fee 1 = 999 came in; 500 owed → Repaid 500
    assert of(events, "Repaid") == [repaid("USDT", "500", "buy")]
    assert of(events, "Borrowed") == []
    assert ledger.cash("alice", "USDT") == D(499)
    assert ledger.cash("alice", "BTC") == D("0.99")  # 1 + 0.01 − 0.02
    assert ledger.liability("alice", "USDT") == ZERO


def test_scenario_4_deposit_repays_btc_liability(ledger: Ledger) -> None:
    """R1: a deposit of a currency owed repays it at once, up to the amount deposited."""
    ledger.unified_master("alice", deposits={"USDT": "10000"})
    ledger.price("BTC", "50000")
    ledger.ok(borrow("alice", "BTC", "0.1"))
    events = ledger.ok(deposit("alice", "BTC", "0.04"))
    assert [e["type"] for e in events] == ["Deposited", "Repaid"]
    assert of(events, "Repaid") == [repaid("BTC", "0.04", "deposit")]
    assert ledger.liability("alice", "BTC") == D("0.06")
    assert ledger.cash("alice", "BTC") == D("0.1")  # 0.1 borrowed + 0.04 − 0.04
    # a deposit of another currency repays nothing
    assert of(ledger.ok(deposit("alice", "USDT", "5")), "Repaid") == []


def test_scenario_4_deposit_repays_upl_generated_before_principal(ledger: Ledger) -> None:
    """R1: order of repayment — UPL-generated liability first, then (interest, then) principal."""
    # ETH collateral keeps margin free so the manual borrow is allowed: 10 × 2000 × 0.95 = 19000
    ledger.price("ETH", "2000")
    long_btc(ledger, {"USDT": "5000", "ETH": "10"})
    events = ledger.price("BTC", "40000")
    # UPL −10000: USDT balance 5000 − 10000 = −5000 → 5000 UPL-generated (derived: the tick books nothing)
    assert of(events, "Borrowed") == []
    assert ledger.account("alice").upl_liability == {"USDT": D(5000)}
    # AE = −5000 + 19000 = 14000; IM = 5000 × 0.2 + 40000 × 0.1 = 5000 → 9000 / 0.2 = 45000
    events = ledger.ok(borrow("alice", "USDT", "1000"))
    # the rule instant books the 5000 first (§16), then the loan
    assert of(events, "Borrowed") == [borrowed("USDT", "5000", "futures_upl", upl=True), borrowed("USDT", "1000", "manual")]
    acct = ledger.account("alice")  # the borrowed 1000 covers 1000 of the loss at once (§16, B3)
    assert acct.principal == {"USDT": D(5000)} and acct.upl_liability == {"USDT": D(4000)}

    events = ledger.ok(deposit("alice", "USDT", "300"))
    assert of(events, "Repaid") == [repaid("USDT", "1000", "futures_gain", upl="1000"),
                                    repaid("USDT", "300", "deposit", upl="300")]
    events = ledger.ok(deposit("alice", "USDT", "4200"))
    # 3700 UPL-generated left first, then 500 of the manual principal
    assert of(events, "Repaid") == [repaid("USDT", "4200", "deposit", upl="3700")]
    acct = ledger.account("alice")
    assert acct.principal == {"USDT": D(500)}
    assert acct.upl_liability == {}
    assert acct.interest == {}
    assert ledger.cash("alice", "USDT") == D(10000)  # 5000 + 1000 + 4500 − 500 (repaid): the loss is covered


def test_r1_repayment_order_with_capitalised_interest_on_the_aggregate() -> None:
    """R1/R3: UPL-generated part first, then capitalised interest, then principal.

    No command capitalises interest yet, so the interest book is set on the aggregate."""
    at = datetime(2026, 3, 1, tzinfo=timezone.utc)
    acct = Account(account="x", parent=None, vip_level=0, at=at)
    acct._mode_switched("classic", "unified", [], at)
    acct.borrowed("USDT", D(300), "futures_upl", True, at)
    acct.borrowed("USDT", D(700), "manual", False, at)
    acct.interest["USDT"] = D(50)  # capitalised interest (I4)
    assert acct.liability("USDT") == D(1050)
    acct.repay("USDT", D(320), "deposit", at)
    last = acct._pending_events[-1]
    # 300 UPL-generated (principal), then 20 of the 50 interest
    assert (last.amount, last.principal, last.interest, last.upl_generated) == (D(320), D(300), D(20), D(300))
    acct.repay("USDT", D(100), "deposit", at)
    last = acct._pending_events[-1]
    # the 30 interest left, then 70 principal
    assert (last.amount, last.principal, last.interest, last.upl_generated) == (D(100), D(70), D(30), D(0))
    assert acct.principal == {"USDT": D(630)} and acct.interest == {} and acct.upl_liability == {}
    # more than owed repays what is owed: 630
    acct.repay("USDT", D(1000), "manual", at)
    last = acct._pending_events[-1]
    assert (last.amount, last.principal, last.interest) == (D(630), D(630), D(0))
    assert acct.liability("USDT") == ZERO


def test_scenario_5_transfer_in_from_master_repays(ledger: Ledger) -> None:
    """R1: a transfer into a borrowing sub-account repays (source transfer_in)."""
    ledger.unified_master("alice", deposits={"USDT": "10000"})
    ledger.price("BTC", "50000")
    ledger.open("bob", parent="alice")
    ledger.ok({"type": "switch_mode", "account": "bob", "mode": "unified"})
    ledger.ok(deposit("bob", "BTC", "0.1"))
    order(ledger, "bob", "b1", "buy", "0.01", "50000")
    assert of(fill(ledger, "bob", "b1", "0.01", "50000"), "Borrowed") == [borrowed("USDT", "500", "spot")]
    events = ledger.ok({"type": "transfer", "from_account": "alice", "to_account": "bob",
                        "currency": "USDT", "amount": "300"})
    assert [e["type"] for e in events] == ["TransferredOut", "TransferredIn", "Repaid"]
    assert [e["account"] for e in events] == ["alice", "bob", "bob"]
    assert of(events, "Repaid") == [repaid("USDT", "300", "transfer_in")]
    assert ledger.liability("bob", "USDT") == D(200)
    assert ledger.cash("bob", "USDT") == ZERO
    assert ledger.cash("alice", "USDT") == D(9700)
    # a second transfer of 1000 repays only the 200 still owed
    events = ledger.ok({"type": "transfer", "from_account": "alice", "to_account": "bob",
                        "currency": "USDT", "amount": "1000"})
    assert of(events, "Repaid") == [repaid("USDT", "200", "transfer_in")]
    assert ledger.cash("bob", "USDT") == D(800)
    assert ledger.liability("bob", "USDT") == ZERO


def test_scenario_6_futures_loss_then_recovery(ledger: Ledger) -> None:
    """B1/R1: an unrealised loss borrows (futures_upl, UPL-generated); a recovery repays (futures_gain)."""
    long_btc(ledger, {"USDT": "5000"})
    assert ledger.liability("alice", "USDT") == ZERO
    events = ledger.price("BTC", "40000")
    # UPL 1 × (40000 − 50000) = −10000; balance 5000 − 10000 = −5000 → 5000 UPL-generated, derived
    assert [e["type"] for e in events] == ["PriceSet"]
    acct = ledger.account("alice")
    assert acct.cash("USDT") == D(10000)
    assert acct.principal == {"USDT": D(5000)}
    assert acct.upl_liability == {"USDT": D(5000)}

    events = ledger.price("BTC", "45000")
    # UPL −5000, covered by the 5000 cash: nothing UPL-generated any more
    assert [e["type"] for e in events] == ["PriceSet"]
    acct = ledger.account("alice")
    assert acct.cash("USDT") == D(5000)
    assert acct.liability("USDT") == ZERO and acct.upl_liability == {}
    # back to 50000: a positive move with nothing owed records nothing for alice
    assert of(ledger.price("BTC", "50000"), "Borrowed", "Repaid", "LiabilityReclassified") == []


def test_scenario_6_deeper_loss_borrows_the_increment(ledger: Ledger) -> None:
    """B1: a further fall borrows only the new shortfall, still UPL-generated."""
    long_btc(ledger, {"USDT": "5000"})
    ledger.price("BTC", "40000")
    events = ledger.price("BTC", "38000")
    # UPL −12000 against 5000 cash → 7000 UPL-generated, derived at the mark
    assert [e["type"] for e in events] == ["PriceSet"]
    acct = ledger.account("alice")
    assert acct.principal == {"USDT": D(7000)} and acct.upl_liability == {"USDT": D(7000)}
    # partial recovery to 41000: UPL −9000 → 4000
    assert [e["type"] for e in ledger.price("BTC", "41000")] == ["PriceSet"]
    acct = ledger.account("alice")
    assert acct.principal == {"USDT": D(4000)} and acct.upl_liability == {"USDT": D(4000)}
    assert acct.cash("USDT") == D(9000)
    # a rule instant books it: a deposit books the 4000, then the 1 repays 1 of it (R1)
    events = ledger.ok(deposit("alice", "USDT", "1"))
    assert of(events, "Borrowed") == [borrowed("USDT", "4000", "futures_upl", upl=True)]
    assert of(events, "Repaid") == [repaid("USDT", "1", "deposit", upl="1")]
    assert ledger.booked("alice").upl_liability == {"USDT": D(3999)} and ledger.cash("alice", "USDT") == D(9000)


def test_scenario_6_closing_at_a_loss_reclassifies_the_upl_tag(ledger: Ledger) -> None:
    """B1: once the loss is realised the liability is no longer UPL-generated (LiabilityReclassified)."""
    ledger.price("ETH", "2000")
    long_btc(ledger, {"USDT": "5000", "ETH": "10"})  # ETH CV 19000 leaves margin for the close
    ledger.price("BTC", "40000")
    assert ledger.account("alice").upl_liability == {"USDT": D(5000)}
    order(ledger, "alice", "f2", "sell", "1", "40000", market="futures")
    events = fill(ledger, "alice", "f2", "1", "40000")
    # realised 1 × (40000 − 50000) = −10000: cash 10000 → 0; the 5000 owed stays, untagged
    assert [e["type"] for e in events] == ["OrderFilled", "LiabilityReclassified"]
    assert D(events[0]["realized_pnl"]) == D(-10000)
    assert of(events, "LiabilityReclassified") == [
        {"type": "LiabilityReclassified", "currency": "USDT", "amount": D(5000)}]
    acct = ledger.account("alice")
    assert acct.positions == {}
    assert acct.cash("USDT") == ZERO
    assert acct.principal == {"USDT": D(5000)}
    assert acct.upl_liability == {}


def test_scenario_6_closing_order_accepted_when_underwater(ledger: Ledger) -> None:
    """O1/O3 (exchange practice): an order that only reduces a position needs no new margin."""
    long_btc(ledger, {"USDT": "5000"})
    ledger.price("BTC", "40000")
    order(ledger, "alice", "f2", "sell", "1", "40000", market="futures")
    events = fill(ledger, "alice", "f2", "1", "40000")
    assert of(events, "LiabilityReclassified") == [
        {"type": "LiabilityReclassified", "currency": "USDT", "amount": D(5000)}]


def test_futures_realised_gain_repays(ledger: Ledger) -> None:
    """R1: a realised futures gain repays a USDT liability (source futures_gain)."""
    long_btc(ledger, {"USDT": "20000"})
    ledger.ok(borrow("alice", "USDT", "1000"))
    # free margin 20000 − (1000 × 0.2 + 5000) = 14800 ≥ the order's 5100
    order(ledger, "alice", "f2", "sell", "1", "51000", market="futures")
    events = fill(ledger, "alice", "f2", "1", "51000")
    # realised 1 × (51000 − 50000) = +1000 → repays the 1000 owed
    assert of(events, "Repaid") == [repaid("USDT", "1000", "futures_gain")]
    assert ledger.cash("alice", "USDT") == D(21000)  # 20000 + 1000 borrowed + 1000 gain − 1000
    assert ledger.liability("alice", "USDT") == ZERO


# --- §14 view --------------------------------------------------------------------------------------
VIEW_FIELDS = {"account", "parent", "mode", "vip_level", "wallets", "balances", "positions",
               "open_orders", "adjusted_equity", "initial_margin", "maintenance_margin",
               "risk_ratio", "liquidatable", "nav", "borrowable"}
BALANCE_FIELDS = {"cash", "liability", "upl_liability", "available", "equity"}


def decimals(d: dict[str, Any]) -> dict[str, Decimal]:
    return {k: D(v) for k, v in d.items()}


def test_view_after_spot_buy_on_margin(ledger: Ledger) -> None:
    """§14 with F1-F6 and B2: every field, hand-computed after scenario 1."""
    ledger.unified_master("alice", deposits={"USDT": "10000"})
    ledger.price("BTC", "50000")
    order(ledger, "alice", "o1", "buy", "0.3", "50000")
    fill(ledger, "alice", "o1", "0.3", "50000", fee="10")
    v = ledger.view("alice")
    assert VIEW_FIELDS <= set(v)
    assert v["mode"] == "unified" and v["parent"] is None and v["vip_level"] == 0
    assert set(v["balances"]) == {"USDT", "BTC"}
    for b in v["balances"].values():
        assert set(b) == BALANCE_FIELDS
    # USDT: cash 0, owes 5010 → equity −5010; BTC: 0.3
    assert decimals(v["balances"]["USDT"]) == {"cash": D(0), "liability": D(5010), "upl_liability": D(0),
                                               "available": D(0), "equity": D(-5010)}
    assert decimals(v["balances"]["BTC"]) == {"cash": D("0.3"), "liability": D(0), "upl_liability": D(0),
                                              "available": D("0.3"), "equity": D("0.3")}
    # AE = 0.3 × 0.98 × 50000 (14700) − 5010 = 9690
    assert D(v["adjusted_equity"]) == D(9690)
    # IM = 5010 × 0.2 = 1002; MM = 501
    assert D(v["initial_margin"]) == D(1002)
    assert D(v["maintenance_margin"]) == D(501)
    # 501 / 9690 = 0.051702786… → 0.05170279 (8 places)
    assert D(v["risk_ratio"]) == D("0.05170279")
    assert v["liquidatable"] is False
    # NAV = −5010 + 0.3 × 50000 = 9990
    assert D(v["nav"]) == D(9990)
    # borrowable: free = 9690 − 1002 = 8688; USDT min(1e6 − 5010, 8688 / 0.2 = 43440) = 43440;
    # BTC min(20, 8688 / 10000 = 0.8688); USDC quota 0; ETH, KCS have no price
    assert decimals(v["borrowable"]) == {"USDT": D(43440), "BTC": D("0.8688"), "USDC": D(0)}
    assert v["positions"] == [] and v["open_orders"] == []


def test_view_underwater_futures_is_infinite_and_liquidatable(ledger: Ledger) -> None:
    """§14 / F5: AE ≤ 0 with MM > 0 shows risk_ratio null and liquidatable true."""
    long_btc(ledger, {"USDT": "5000"})
    ledger.price("BTC", "40000")
    v = ledger.view("alice")
    assert VIEW_FIELDS <= set(v)
    # cash 10000, owes 5000 (all UPL-generated), UPL −10000: available 0, equity −5000
    assert decimals(v["balances"]["USDT"]) == {"cash": D(10000), "liability": D(5000),
                                               "upl_liability": D(5000), "available": D(0),
                                               "equity": D(-5000)}
    assert len(v["positions"]) == 1
    assert {k: v["positions"][0][k] for k in ("symbol",)} == {"symbol": "BTC-USDT"}
    assert decimals({k: v["positions"][0][k] for k in ("qty", "entry_price", "mark_price", "unrealized_pnl")}) == {
        "qty": D(1), "entry_price": D(50000), "mark_price": D(40000), "unrealized_pnl": D(-10000)}
    assert D(v["adjusted_equity"]) == D(-5000)
    # IM = 5000 × 0.2 + 40000 × 0.1 = 5000; MM = 500 + 2000 = 2500
    assert D(v["initial_margin"]) == D(5000)
    assert D(v["maintenance_margin"]) == D(2500)
    assert v["risk_ratio"] is None
    assert v["liquidatable"] is True
    assert D(v["nav"]) == D(-5000)
    assert decimals(v["borrowable"]) == {"USDT": D(0), "BTC": D(0), "USDC": D(0)}


def test_view_classic_has_null_margin_fields(ledger: Ledger) -> None:
    """§14: margin fields are null for classic accounts."""
    ledger.open("carol")
    ledger.ok(deposit("carol", "USDT", "100"))
    v = ledger.view("carol")
    assert VIEW_FIELDS - {"borrowable"} <= set(v)
    assert [v[k] for k in ("adjusted_equity", "initial_margin", "maintenance_margin", "risk_ratio", "nav")] == [None] * 5
    assert decimals(v["balances"]["USDT"]) == {"cash": D(100), "liability": D(0), "upl_liability": D(0),
                                               "available": D(100), "equity": D(100)}


# --- more B1 / R1 edges ---------------------------------------------------------------------------
def close_below_mark(ledger: Ledger) -> list[dict[str, Any]]:
    """Long 1 BTC at 50000, marked 40000 (5000 UPL-generated owed), closed at 38000."""
    ledger.price("ETH", "2000")
    long_btc(ledger, {"USDT": "5000", "ETH": "10"})
    ledger.price("BTC", "40000")
    order(ledger, "alice", "f2", "sell", "1", "38000", market="futures")
    return fill(ledger, "alice", "f2", "1", "38000")


def test_realised_loss_beyond_cash_borrows_exactly_untagged(ledger: Ledger) -> None:
    """B1: a realised loss past cash borrows exactly the shortfall, not UPL-generated."""
    events = close_below_mark(ledger)
    # realised 1 × (38000 − 50000) = −12000; cash 10000 → −2000 → borrow 2000;
    # the position is gone, so the 5000 tag is lifted
    [b] = of(events, "Borrowed")
    assert (b["currency"], b["amount"], b["upl_generated"]) == ("USDT", D(2000), D(0))
    assert of(events, "LiabilityReclassified") == [
        {"type": "LiabilityReclassified", "currency": "USDT", "amount": D(5000)}]
    acct = ledger.account("alice")
    assert acct.cash("USDT") == ZERO
    assert acct.principal == {"USDT": D(7000)} and acct.upl_liability == {}


def test_realised_loss_borrow_source_is_a_b1_source(ledger: Ledger) -> None:
    """B1: Borrowed.source is one of spot / futures_upl / fee."""
    events = close_below_mark(ledger)
    assert {e["source"] for e in of(events, "Borrowed")} <= {"spot", "futures_upl", "fee"}


def test_short_futures_loss_then_recovery(ledger: Ledger) -> None:
    """B1/R1 for a short: UPL = −1 × (mark − entry)."""
    ledger.unified_master("alice", deposits={"USDT": "5000"})
    ledger.price("BTC", "50000")
    order(ledger, "alice", "f1", "sell", "1", "50000", market="futures")
    fill(ledger, "alice", "f1", "1", "50000")
    # mark 60000: UPL −10000 → balance −5000 → 5000 UPL-generated, derived (the tick books nothing)
    assert [e["type"] for e in ledger.price("BTC", "60000")] == ["PriceSet"]
    assert ledger.account("alice").upl_liability == {"USDT": D(5000)}
    # mark 52000: UPL −2000, covered by the 5000 cash: nothing owed
    assert [e["type"] for e in ledger.price("BTC", "52000")] == ["PriceSet"]
    assert ledger.cash("alice", "USDT") == D(5000)
    assert ledger.liability("alice", "USDT") == ZERO


def test_platform_limit_caps_order_capacity_but_not_fills(ledger: Ledger) -> None:
    """O1/B2: order capacity uses the platform remainder; O2/B1: a fill borrows even past it."""
    ledger.unified_master("alice", deposits={"USDT": "10000"})
    ledger.price("BTC", "50000")
    ledger.ok({"type": "set_platform_borrow_limit", "currency": "USDT", "amount": "1000"})
    # cover = 10000 + min(50000, 1000) = 11000 → 0.22 BTC at 50000
    ledger.reject(place("alice", "o1", "buy", "0.22000001", "50000"), "insufficient_balance")
    order(ledger, "alice", "o1", "buy", "0.22", "50000")
    # the fill and its fee are facts: 0.22 × 50000 + 220 = 11220 → borrow 1000 + 220, past the limit
    events = fill(ledger, "alice", "o1", "0.22", "50000", fee="220")
    assert of(events, "Borrowed") == [borrowed("USDT", "1000", "spot"), borrowed("USDT", "220", "fee")]
    assert ledger.liability("alice", "USDT") == D(1220)
    assert D(ledger.view("alice")["borrowable"]["USDT"]) == D(0)
    ledger.reject(borrow("alice", "USDT", "1"), "platform_limit_exceeded")
