"""W5: in classic mode no cash balance ever goes below zero, whatever the command.

The cases of issue 13 replayed as written, every other path that takes cash from a classic
wallet (sell fees, futures fees and losses, partial fills, transfers, withdrawals), and a
property test: no generated command sequence makes a classic balance (or the available part
of it) negative.  Every test runs on SQLite and on PostgreSQL.
"""
from __future__ import annotations

import tempfile
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.domain.account import Account
from tests import pg
from tests.helpers import T0, D, Ledger
from tests.test_properties import COMMON, HUNT  # the same hunt switch and settings

ZERO = D(0)


def deposit(account: str, amount: str, currency: str = "USDT", wallet: str | None = None) -> dict[str, Any]:
    cmd = {"type": "deposit", "account": account, "currency": currency, "amount": amount}
    return {**cmd, "wallet": wallet} if wallet else cmd


def order(account: str, order_id: str, side: str, qty: str, price: str, market: str = "spot") -> dict[str, Any]:
    return {"type": "place_order", "account": account, "order_id": order_id, "market": market,
            "symbol": "BTC-USDT", "side": side, "qty": qty, "price": price}


def fill(account: str, order_id: str, qty: str, price: str, fee: str = "0") -> dict[str, Any]:
    return {"type": "fill_order", "account": account, "order_id": order_id, "qty": qty, "price": price, "fee": fee}


def available(ledger: Ledger, account: str, currency: str = "USDT", wallet: str | None = None) -> Decimal:
    return ledger.account(account).available(currency, ledger.platform(), wallet)


def test_issue_13_buy_with_a_fee_ten_times_its_hold(ledger: Ledger) -> None:
    """Issue 13 as written: a classic buy holding 100 USDT, filled with a 1,000 USDT fee, left
    cash at −700.  Now: insufficient_balance, nothing recorded; a fee the hold and the
    available cash cover (100 + 300) is recorded and leaves exactly zero."""
    ledger.open("carol")
    ledger.ok(deposit("carol", "400"))
    ledger.ok(order("carol", "b1", "buy", "1", "100"))
    error = ledger.reject(fill("carol", "b1", "1", "100", fee="1000"), "insufficient_balance")
    assert error["message"] == ("carol's spot wallet cannot pay this fill: it takes 1100 USDT, the order "
                                "releases 100 and 300 more is available (W5)")
    assert ledger.cash("carol", "USDT") == D(400) and available(ledger, "carol") == D(300)
    ledger.reject(fill("carol", "b1", "1", "100", fee="300.00000001"), "insufficient_balance")
    ledger.ok(fill("carol", "b1", "1", "100", fee="300"))
    assert ledger.account("carol").wallets == {"spot": {"BTC": D(1)}, "futures": {}}
    assert ledger.events("carol", "Borrowed") == [] and not ledger.account("carol").liabilities()


def test_a_fee_cannot_eat_another_orders_hold(ledger: Ledger) -> None:
    """W5/W4: the fee is paid from the hold this fill releases and the *available* cash, not
    from what other open orders hold: their holds stay covered."""
    ledger.open("carol")
    ledger.ok(deposit("carol", "300"))
    ledger.ok(order("carol", "b1", "buy", "1", "100"))
    ledger.ok(order("carol", "b2", "buy", "1", "150"))  # available 50
    ledger.reject(fill("carol", "b1", "1", "100", fee="50.01"), "insufficient_balance")
    ledger.ok(fill("carol", "b1", "1", "90", fee="60"))  # 90 + 60 = 100 released + 50 available
    assert ledger.cash("carol", "USDT") == D(150)
    assert available(ledger, "carol") == ZERO  # b2's 150 still fully backed


def test_a_sell_fee_larger_than_its_proceeds(ledger: Ledger) -> None:
    """W5: a sell's USDT is proceeds − fee; when the fee is larger, the difference comes from
    available USDT, and without it the fill is refused."""
    ledger.open("dan")
    ledger.ok(deposit("dan", "1", currency="BTC"))
    ledger.ok(deposit("dan", "5"))
    ledger.ok(order("dan", "s1", "sell", "0.001", "100"))  # proceeds 0.1
    ledger.reject(fill("dan", "s1", "0.001", "100", fee="5.10000001"), "insufficient_balance")
    ledger.ok(fill("dan", "s1", "0.001", "100", fee="5.1"))
    assert ledger.account("dan").wallets["spot"] == {"BTC": D("0.999")}


def test_partial_fills_each_pay_from_what_they_release(ledger: Ledger) -> None:
    """W5 on partial fills: each fill releases its share of the hold; a fee beyond that share
    and the available cash is refused even though the rest of the order's hold would cover it
    (that part backs the rest of the order)."""
    ledger.open("eve")
    ledger.ok(deposit("eve", "1000"))
    ledger.ok(order("eve", "b1", "buy", "10", "100"))  # holds all 1000
    ledger.reject(fill("eve", "b1", "1", "100", fee="0.01"), "insufficient_balance")
    ledger.ok(fill("eve", "b1", "1", "99", fee="1"))  # 99 + 1 = the 100 it releases
    assert (ledger.cash("eve", "USDT"), available(ledger, "eve")) == (D(900), ZERO)
    ledger.ok(fill("eve", "b1", "9", "100"))
    assert ledger.account("eve").wallets["spot"] == {"BTC": D(10)}


def test_classic_futures_fee_and_loss(ledger: Ledger) -> None:
    """W5 in the classic futures wallet: an opening fill's fee beyond the margin it releases
    (a classic position holds nothing once filled) and the available USDT is refused; a
    closing fill's loss likewise."""
    ledger.open("fay")
    ledger.ok(deposit("fay", "120", wallet="futures"))
    ledger.ok(order("fay", "f1", "buy", "0.02", "50000", market="futures"))  # holds 100
    ledger.reject(fill("fay", "f1", "0.02", "50000", fee="120.00000001"), "insufficient_balance")
    ledger.ok(fill("fay", "f1", "0.02", "50000", fee="20"))
    assert ledger.cash("fay", "USDT", "futures") == D(100)
    ledger.ok(order("fay", "f2", "sell", "0.02", "44000", market="futures"))  # reducing: holds 0
    ledger.reject(fill("fay", "f2", "0.02", "44000"), "insufficient_balance")  # −120 realised
    ledger.ok(deposit("fay", "20", wallet="futures"))
    ledger.ok(fill("fay", "f2", "0.02", "44000"))
    assert ledger.account("fay").wallets == {"spot": {}, "futures": {}}
    assert not ledger.account("fay").positions


def test_transfers_and_withdrawals_stop_at_available(ledger: Ledger) -> None:
    """W2/W3/W5: payouts from a classic wallet never exceed its available balance."""
    ledger.open("gil")
    ledger.open("gil.s", parent="gil")
    ledger.ok(deposit("gil", "100"))
    ledger.ok(order("gil", "b1", "buy", "1", "60"))
    ledger.reject({"type": "withdraw", "account": "gil", "currency": "USDT", "amount": "40.00000001"},
                  "insufficient_balance")
    ledger.reject({"type": "transfer", "from_account": "gil", "to_account": "gil.s", "currency": "USDT",
                   "amount": "41"}, "insufficient_balance")
    ledger.reject({"type": "transfer", "from_account": "gil", "to_account": "gil", "currency": "USDT",
                   "amount": "41", "from_wallet": "spot", "to_wallet": "futures"}, "insufficient_balance")
    ledger.ok({"type": "withdraw", "account": "gil", "currency": "USDT", "amount": "40"})
    assert (ledger.cash("gil", "USDT"), available(ledger, "gil")) == (D(60), ZERO)


# --- the property: no command sequence makes classic cash negative ------------------------------
ACCOUNTS = ("c1", "c1.s", "c2")
WALLETS = ("spot", "futures")


def check_classic(acct: Account, platform: Any) -> None:
    """W5: every classic wallet balance, and the available part of it, is ≥ 0; nothing owed."""
    assert acct.mode == "classic" and not acct.liabilities(), acct.account
    for wallet, balances in acct.wallets.items():
        for currency, cash in balances.items():
            assert cash >= 0, f"{acct.account}: {wallet} {currency} cash {cash} < 0 (W5)"
        for currency in set(balances) | {o["hold_currency"] for o in acct.orders.values() if o["wallet"] == wallet}:
            free = acct.available(currency, platform, wallet)
            assert free >= 0, f"{acct.account}: {wallet} {currency} available {free} < 0 (W5)"


def boundary(value: Decimal) -> st.SearchStrategy[Decimal]:
    """Amounts at, just under and just over what is payable, and some far off."""
    return st.sampled_from([value, value + D("0.00000001"), value - D("0.00000001"), value / 2,
                            value * 3, value + D(1000)]).map(lambda v: max(v, ZERO).quantize(D("0.00000001")))


def draw_classic(data: st.DataObject, book: Ledger, step: int) -> dict[str, Any]:
    at = (T0 + timedelta(seconds=step)).isoformat().replace("+00:00", "Z")
    accounts = {a: book.account(a) for a in ACCOUNTS}
    platform = book.platform()
    name = data.draw(st.sampled_from(ACCOUNTS), label="account")
    acct = accounts[name]
    kind = data.draw(st.sampled_from(["deposit", "withdraw", "transfer", "order", "order", "order", "fill",
                                      "fill", "fill", "fill", "cancel", "price"]), label="kind")
    wallet = data.draw(st.sampled_from(WALLETS), label="wallet")
    currency = data.draw(st.sampled_from(("USDT", "USDT", "BTC")), label="currency")
    free = acct.available(currency, platform, wallet)
    cmd: dict[str, Any] = {"at": at}
    if kind == "deposit":
        amount = data.draw(st.sampled_from(["0.00000001", "1", "100", "2500", "40000"]), label="amount")
        return {**cmd, **deposit(name, amount, currency, wallet)}
    if kind in ("withdraw", "transfer"):
        amount = data.draw(boundary(free) if free > 0 else st.just(D(1)), label="amount")
        amount = max(amount, D("0.00000001"))
        if kind == "withdraw":
            return {**cmd, "type": "withdraw", "account": name, "currency": currency, "amount": f"{amount:f}",
                    "wallet": wallet}
        to = data.draw(st.sampled_from(ACCOUNTS), label="to")
        cmd.update(type="transfer", from_account=name, to_account=to, currency=currency, amount=f"{amount:f}",
                   from_wallet=wallet, to_wallet=data.draw(st.sampled_from(WALLETS), label="to wallet"))
        return cmd
    if kind == "price":
        return {**cmd, "type": "set_price", "currency": "BTC",
                "price": data.draw(st.sampled_from(["100", "25000", "50000", "90000"]), label="mark")}
    if kind == "order":
        market = data.draw(st.sampled_from(("spot", "futures")), label="market")
        qty = data.draw(st.sampled_from(["0.00000001", "0.00000003", "0.001", "0.0137", "0.5", "1"]), label="qty")
        price = data.draw(st.sampled_from(["0.33333333", "99.99", "30000", "50000.01", "70000"]), label="price")
        order_id = f"o{step}"
        return {**cmd, **order(name, order_id, data.draw(st.sampled_from(("buy", "sell")), label="side"),
                               qty, price, market)}
    open_orders = [(a, o) for a, x in accounts.items() for o in x.orders.values()]
    if not open_orders:
        return {**cmd, **deposit(name, "1000", "USDT", wallet)}
    owner, o = data.draw(st.sampled_from(sorted(open_orders, key=lambda p: (p[0], p[1]["order_id"]))), label="order")
    if kind == "cancel":
        return {**cmd, "type": "cancel_order", "account": owner, "order_id": o["order_id"]}
    remaining = o["qty"] - o["filled_qty"]
    qty = data.draw(st.sampled_from([remaining, max((remaining / 3).quantize(D("0.00000001")), D("0.00000001"))]),
                    label="fill qty")
    better = {"buy": ("1", "0.9", "0.5"), "sell": ("1", "1.1", "3")}[o["side"]]
    price = max((o["price"] * D(data.draw(st.sampled_from(better), label="fill price"))).quantize(D("0.01")),
                D("0.01"))
    # a fee around what the wallet can still pay: the hold share plus the available USDT
    payable = o["hold"] + book.account(owner).available("USDT", platform, o["wallet"])
    fee = data.draw(st.one_of(st.just(ZERO), boundary(payable), boundary(payable / 4)), label="fee")
    return {**cmd, **fill(owner, o["order_id"], f"{qty.normalize():f}", f"{price:f}", f"{fee:f}")}


def classic_example(env: dict[str, str], data: st.DataObject, steps: int) -> None:
    book = Ledger(env)
    try:
        for cmd in ({"type": "open_account", "account": "c1"}, {"type": "open_account", "account": "c1.s", "parent": "c1"},
                    {"type": "open_account", "account": "c2"}, {"type": "set_price", "currency": "BTC", "price": "50000"},
                    deposit("c1", "5000"), deposit("c1", "2000", wallet="futures"), deposit("c2", "1", "BTC")):
            book.ok({**cmd, "at": (T0 + timedelta(seconds=0)).isoformat().replace("+00:00", "Z")})
        for step in range(1, steps + 1):
            cmd = draw_classic(data, book, step)
            before = book.app.recorder.max_notification_id()
            [result] = book.apply(cmd)
            if not result["ok"]:
                assert result["error"]["code"] not in ("conflict",), result
                assert book.app.recorder.max_notification_id() == before, f"rejected {cmd} recorded something"
            platform = book.platform()
            for account in ACCOUNTS:
                check_classic(book.account(account), platform)
    finally:
        book.close()


@settings(max_examples=HUNT or 40, **COMMON)
@given(data=st.data())
def test_no_command_sequence_makes_classic_cash_negative_sqlite(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        classic_example({"PERSISTENCE_MODULE": "stores.sqlite", "SQLITE_DBNAME": str(Path(tmp) / "ledger.db")},
                        data, steps=40)


@pytest.mark.postgres
def test_no_command_sequence_makes_classic_cash_negative_postgres() -> None:
    pg.require_server()

    @settings(max_examples=HUNT or 6, **COMMON)
    @given(data=st.data())
    def inner(data: st.DataObject) -> None:
        classic_example(pg.env(pg.new_schema()), data, steps=30)

    inner()
