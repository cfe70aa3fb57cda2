"""Orders and positions (SPEC §3): O1 placing and holds, O2 cancel / fill, O3 futures positions."""
from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import D, Ledger


def order(account: str, order_id: str, side: str, qty: str, price: str,
          market: str = "spot", symbol: str = "BTC-USDT") -> dict[str, Any]:
    return {"type": "place_order", "account": account, "order_id": order_id, "market": market,
            "symbol": symbol, "side": side, "qty": qty, "price": price}


def fill(account: str, order_id: str, qty: str, price: str, fee: str | None = None) -> dict[str, Any]:
    cmd = {"type": "fill_order", "account": account, "order_id": order_id, "qty": qty, "price": price}
    if fee is not None:
        cmd["fee"] = fee
    return cmd


def deposit(account: str, currency: str, amount: str, wallet: str | None = None) -> dict[str, Any]:
    cmd = {"type": "deposit", "account": account, "currency": currency, "amount": amount}
    if wallet:
        cmd["wallet"] = wallet
    return cmd


def holds(ledger: Ledger, account: str, currency: str, wallet: str | None = None) -> Any:
    return ledger.account(account).holds(currency, wallet)


def available(ledger: Ledger, account: str, currency: str, wallet: str | None = None) -> Any:
    return ledger.account(account).available(currency, ledger.platform(), wallet)


def position(ledger: Ledger, account: str, symbol: str = "BTC-USDT") -> Any:
    found = ledger.account(account).positions.get(symbol)
    return tuple(found) if found is not None else None


# --- O1 -------------------------------------------------------------------------------------
def test_spot_buy_holds_qty_times_price_of_quote(ledger: Ledger) -> None:
    """O1: a spot buy holds qty × price USDT in the trading wallet; cash is unchanged."""
    ledger.open("alice")
    ledger.ok(deposit("alice", "USDT", "10000"))
    events = ledger.ok(order("alice", "o1", "buy", "0.15", "40000.5"))
    [e] = events
    assert e["type"] == "OrderPlaced"
    assert (e["order_id"], e["market"], e["symbol"], e["side"], e["qty"], e["price"]) == (
        "o1", "spot", "BTC-USDT", "buy", "0.15", "40000.5")
    assert (e["wallet"], e["hold_currency"], D(e["hold"])) == ("spot", "USDT", D("6000.075"))
    assert ledger.cash("alice", "USDT") == D(10000)
    assert holds(ledger, "alice", "USDT") == D("6000.075")
    assert available(ledger, "alice", "USDT") == D("3999.925")
    assert ledger.view("alice")["open_orders"] == [{
        "order_id": "o1", "market": "spot", "symbol": "BTC-USDT", "side": "buy", "qty": "0.15",
        "filled_qty": "0", "price": "40000.5"}]


def test_spot_buy_hold_is_rounded_up(ledger: Ledger) -> None:
    """O1/W1: a hold below the quote's precision is rounded up, never away."""
    ledger.open("alice")
    ledger.ok(deposit("alice", "USDT", "1"))
    [e] = ledger.ok(order("alice", "o1", "buy", "0.00000003", "0.5"))  # 0.000000015
    assert D(e["hold"]) == D("0.00000002")


def test_spot_sell_holds_base(ledger: Ledger) -> None:
    """O1: a spot sell holds qty of the base currency."""
    ledger.open("alice")
    ledger.ok(deposit("alice", "ETH", "3"))
    [e] = ledger.ok(order("alice", "s1", "sell", "1.25", "3000", symbol="ETH-USDT"))
    assert (e["hold_currency"], D(e["hold"])) == ("ETH", D("1.25"))
    assert holds(ledger, "alice", "ETH") == D("1.25")
    assert holds(ledger, "alice", "USDT") == 0
    assert available(ledger, "alice", "ETH") == D("1.75")


def test_classic_order_needs_cash(ledger: Ledger) -> None:
    """O1: in classic mode the funds must be in cash, counting earlier holds (insufficient_balance)."""
    ledger.open("alice")
    ledger.ok(deposit("alice", "USDT", "1000"))
    ledger.ok(deposit("alice", "BTC", "0.5"))
    ledger.reject(order("alice", "b1", "buy", "0.02000001", "50000"), "insufficient_balance")
    ledger.ok(order("alice", "b1", "buy", "0.012", "50000"))  # 600
    ledger.reject(order("alice", "b2", "buy", "0.00800001", "50000"), "insufficient_balance")
    ledger.ok(order("alice", "b2", "buy", "0.008", "50000"))  # 400: exactly the rest
    ledger.reject(order("alice", "s1", "sell", "0.50000001", "1"), "insufficient_balance")
    ledger.reject(order("alice", "s1", "sell", "1", "1", symbol="ETH-USDT"), "insufficient_balance")
    ledger.ok(order("alice", "s1", "sell", "0.5", "1"))
    # funds in the futures wallet do not count for spot
    ledger.ok(deposit("alice", "USDT", "5000", wallet="futures"))
    ledger.reject(order("alice", "b3", "buy", "0.00000001", "1"), "insufficient_balance")
    assert holds(ledger, "alice", "USDT") == D(1000)


def test_order_exists(ledger: Ledger) -> None:
    """O1: an open order id cannot be placed again (order_exists)."""
    ledger.open("alice")
    ledger.ok(deposit("alice", "USDT", "1000"))
    ledger.ok(order("alice", "o1", "buy", "0.001", "50000"))
    ledger.reject(order("alice", "o1", "buy", "0.001", "50000"), "order_exists")
    ledger.reject(order("alice", "o1", "sell", "1", "1", market="futures"), "order_exists")
    assert holds(ledger, "alice", "USDT") == D(50)


def test_unknown_symbol(ledger: Ledger) -> None:
    """O1: the symbol must be BASE-USDT of a registered currency other than USDT."""
    ledger.open("alice")
    ledger.ok(deposit("alice", "USDT", "1000"))
    ledger.reject(order("alice", "o1", "buy", "1", "1", symbol="DOGE-USDT"), "unknown_symbol")
    ledger.reject(order("alice", "o1", "buy", "1", "1", symbol="USDT-USDT"), "unknown_symbol")
    ledger.reject(order("alice", "o1", "buy", "1", "1", market="futures", symbol="DOGE-USDT"),
                  "unknown_symbol")
    ledger.reject(order("alice", "o1", "buy", "1", "1", symbol="BTC-USDC"), "validation_error")
    ledger.ok({"type": "register_currency", "currency": "DOGE", "precision": 0})
    ledger.ok(order("alice", "o1", "buy", "10", "0.1", symbol="DOGE-USDT"))
    ledger.reject(order("alice", "o2", "buy", "1.5", "0.1", symbol="DOGE-USDT"), "validation_error")


def test_unified_order_covered_by_cash_plus_borrowing_capacity(ledger: Ledger) -> None:
    """O1/B2: unified accepts a buy when cash + borrowing capacity covers it.

    1000 USDT: capacity = (AE − IM) / (1 × 0.2) = 5000, so holds up to 6000 are accepted."""
    ledger.unified_master("uni", deposits={"USDT": "1000"})
    ledger.reject(order("uni", "b1", "buy", "0.12000001", "50000"), "insufficient_balance")
    [e] = ledger.ok(order("uni", "b1", "buy", "0.12", "50000"))
    assert (e["wallet"], D(e["hold"])) == ("unified", D(6000))


# --- O2 -------------------------------------------------------------------------------------
def test_cancel_releases_hold(ledger: Ledger) -> None:
    """O2: cancel_order releases the hold; a second cancel is unknown_order."""
    ledger.open("alice")
    ledger.ok(deposit("alice", "USDT", "1000"))
    ledger.ok(order("alice", "o1", "buy", "0.01", "50000"))
    assert available(ledger, "alice", "USDT") == D(500)
    [e] = ledger.ok({"type": "cancel_order", "account": "alice", "order_id": "o1"})
    assert (e["type"], e["order_id"], D(e["released"])) == ("OrderCancelled", "o1", D(500))
    assert holds(ledger, "alice", "USDT") == 0
    assert available(ledger, "alice", "USDT") == D(1000)
    assert ledger.view("alice")["open_orders"] == []
    ledger.reject({"type": "cancel_order", "account": "alice", "order_id": "o1"}, "unknown_order")


def test_cancel_after_partial_fill_releases_the_rest(ledger: Ledger) -> None:
    """O2: cancelling a partly filled order releases only what is still held."""
    ledger.open("alice")
    ledger.ok(deposit("alice", "USDT", "1000"))
    ledger.ok(order("alice", "o1", "buy", "1", "100"))
    ledger.ok(fill("alice", "o1", "0.4", "100"))
    [e] = ledger.ok({"type": "cancel_order", "account": "alice", "order_id": "o1"})
    assert D(e["released"]) == D(60)
    assert ledger.cash("alice", "USDT") == D(960)
    assert ledger.cash("alice", "BTC") == D("0.4")
    assert available(ledger, "alice", "USDT") == D(960)


def test_partial_fills_then_full_fill_closes_order(ledger: Ledger) -> None:
    """O2: partial fills move cash and shrink the hold; the fill of the rest closes the order."""
    ledger.open("alice")
    ledger.ok(deposit("alice", "USDT", "1000"))
    ledger.ok(order("alice", "o1", "buy", "1", "100"))
    [e] = ledger.ok(fill("alice", "o1", "0.3", "100"))
    assert e["type"] == "OrderFilled"
    assert (e["qty"], e["price"], D(e["released"])) == ("0.3", "100", D(30))
    assert {k: D(v) for k, v in e["cash"].items()} == {"USDT": D(-30), "BTC": D("0.3")}
    assert holds(ledger, "alice", "USDT") == D(70)
    assert ledger.view("alice")["open_orders"][0]["filled_qty"] == "0.3"

    ledger.ok(fill("alice", "o1", "0.5", "99"))  # better price: pays 49.5, releases 50
    assert ledger.cash("alice", "USDT") == D("920.5")
    assert holds(ledger, "alice", "USDT") == D(20)
    assert ledger.view("alice")["open_orders"][0]["filled_qty"] == "0.8"

    [e] = ledger.ok(fill("alice", "o1", "0.2", "100"))
    assert D(e["released"]) == D(20)
    assert ledger.view("alice")["open_orders"] == []
    assert holds(ledger, "alice", "USDT") == 0
    assert ledger.cash("alice", "USDT") == D("900.5")
    assert ledger.cash("alice", "BTC") == D(1)
    assert available(ledger, "alice", "USDT") == D("900.5")
    ledger.reject(fill("alice", "o1", "0.1", "100"), "unknown_order")


def test_spot_sell_fill_credits_proceeds_less_fee(ledger: Ledger) -> None:
    """O2: a sell fill debits the base and credits qty × price − fee of USDT."""
    ledger.open("alice")
    ledger.ok(deposit("alice", "BTC", "1"))
    ledger.ok(order("alice", "s1", "sell", "0.5", "60000"))
    ledger.ok(fill("alice", "s1", "0.5", "61000", fee="30.5"))
    assert ledger.cash("alice", "BTC") == D("0.5")
    assert ledger.cash("alice", "USDT") == D("30469.5")
    assert holds(ledger, "alice", "BTC") == 0


def test_overfill_is_an_error(ledger: Ledger) -> None:
    """O2: a fill larger than what is left of the order is overfill and records nothing."""
    ledger.open("alice")
    ledger.ok(deposit("alice", "USDT", "1000"))
    ledger.ok(order("alice", "o1", "buy", "1", "100"))
    ledger.reject(fill("alice", "o1", "1.00000001", "100"), "overfill")
    ledger.ok(fill("alice", "o1", "0.3", "100"))
    ledger.reject(fill("alice", "o1", "0.70000001", "100"), "overfill")
    ledger.ok(fill("alice", "o1", "0.7", "100"))
    assert ledger.cash("alice", "BTC") == D(1)


def test_unknown_order(ledger: Ledger) -> None:
    """O2: filling or cancelling an order that is not open is unknown_order."""
    ledger.open("alice")
    ledger.open("bob")
    ledger.ok(deposit("alice", "USDT", "1000"))
    ledger.ok(order("alice", "o1", "buy", "1", "100"))
    ledger.reject(fill("alice", "nope", "1", "100"), "unknown_order")
    ledger.reject(fill("bob", "o1", "1", "100"), "unknown_order")
    ledger.reject({"type": "cancel_order", "account": "bob", "order_id": "o1"}, "unknown_order")


def test_classic_fill_fee_beyond_cash_is_refused(ledger: Ledger) -> None:
    """W5 (was O2 "a fee larger than the cash leaves a negative classic balance", which the
    amended spec forbids): in classic mode a fill whose fee the hold plus the available cash
    cannot pay is insufficient_balance; once the cash is there, the same fill is recorded."""
    ledger.open("alice")
    ledger.ok(deposit("alice", "USDT", "100"))
    ledger.ok(order("alice", "o1", "buy", "1", "100"))
    ledger.reject(fill("alice", "o1", "1", "100", fee="2.5"), "insufficient_balance")
    ledger.ok(deposit("alice", "USDT", "2.5"))
    [e] = ledger.ok(fill("alice", "o1", "1", "100", fee="2.5"))
    assert D(e["fee"]) == D("2.5")
    assert ledger.cash("alice", "USDT") == D(0)
    assert ledger.cash("alice", "BTC") == D(1)
    assert ledger.events("alice", "Borrowed") == []  # no auto-borrow in classic
    assert ledger.account("alice").available("USDT", ledger.platform()) == D(0)


def test_fill_worse_than_the_limit_price_is_refused(ledger: Ledger) -> None:
    """O2: a limit order never fills at a worse price; a better price is a normal fill."""
    ledger.open("alice")
    ledger.ok(deposit("alice", "USDT", "100"))
    ledger.ok(deposit("alice", "BTC", "2"))
    ledger.ok(order("alice", "b1", "buy", "1", "100"))
    ledger.reject(fill("alice", "b1", "1", "101"), "price_outside_limit")
    ledger.ok(order("alice", "s1", "sell", "1", "100"))
    ledger.reject(fill("alice", "s1", "1", "99.99999999"), "price_outside_limit")
    ledger.ok(fill("alice", "b1", "1", "99"))
    ledger.ok(fill("alice", "s1", "1", "100.5"))
    assert ledger.cash("alice", "USDT") == D("101.5")


def test_fill_fee_precision_is_checked(ledger: Ledger) -> None:
    """O2/W1: fees are USDT amounts of at most 8 decimals."""
    ledger.open("alice")
    ledger.ok(deposit("alice", "USDT", "100"))
    ledger.ok(order("alice", "o1", "buy", "1", "100"))
    ledger.reject(fill("alice", "o1", "1", "100", fee="0.000000001"), "validation_error")
    ledger.reject(fill("alice", "o1", "1", "100", fee="-1"), "validation_error")


# --- O3 -------------------------------------------------------------------------------------
def test_classic_futures_order_holds_initial_margin_of_futures_wallet(ledger: Ledger) -> None:
    """O3/O1: a classic futures order holds qty × price × imr (0.1) USDT of the futures wallet."""
    ledger.open("alice")
    ledger.ok(deposit("alice", "USDT", "100000"))  # spot does not count
    ledger.reject(order("alice", "f1", "buy", "2", "50000", market="futures"), "insufficient_balance")
    ledger.ok(deposit("alice", "USDT", "10000", wallet="futures"))
    ledger.reject(order("alice", "f1", "buy", "2.00000001", "50000", market="futures"),
                  "insufficient_balance")
    [e] = ledger.ok(order("alice", "f1", "buy", "2", "50000", market="futures"))
    assert (e["wallet"], e["hold_currency"], D(e["hold"])) == ("futures", "USDT", D(10000))
    assert holds(ledger, "alice", "USDT", "futures") == D(10000)
    assert available(ledger, "alice", "USDT", "futures") == 0
    assert available(ledger, "alice", "USDT", "spot") == D(100000)
    ledger.reject({"type": "withdraw", "account": "alice", "currency": "USDT", "amount": "0.00000001",
                   "wallet": "futures"}, "insufficient_balance")
    [e] = ledger.ok({"type": "cancel_order", "account": "alice", "order_id": "f1"})
    assert D(e["released"]) == D(10000)
    # the symbol's own rate when set
    ledger.ok({"type": "set_margin_rates", "symbol": "BTC-USDT", "imr": "0.25", "mmr": "0.1"})
    [e] = ledger.ok(order("alice", "f2", "sell", "0.5", "40000", market="futures"))
    assert D(e["hold"]) == D(5000)


def test_futures_position_lifecycle_classic(ledger: Ledger) -> None:
    """O3: open long, increase (average entry), reduce (realised P&L into futures USDT cash),
    close, flip to a short at the fill price."""
    ledger.open("alice")
    ledger.ok(deposit("alice", "USDT", "100000", wallet="futures"))

    def trade(order_id: str, side: str, qty: str, price: str) -> dict[str, Any]:
        ledger.ok(order("alice", order_id, side, qty, price, market="futures"))
        [e] = ledger.ok(fill("alice", order_id, qty, price))
        return e

    e = trade("f1", "buy", "1", "50000")
    assert position(ledger, "alice") == (D(1), D(50000))
    assert [D(x) for x in e["position"]] == [D(1), D(50000)] and D(e["realized_pnl"]) == 0
    assert ledger.cash("alice", "USDT", "futures") == D(100000)
    assert holds(ledger, "alice", "USDT", "futures") == 0

    trade("f2", "buy", "1", "51000")
    assert position(ledger, "alice") == (D(2), D(50500))

    e = trade("f3", "sell", "0.5", "52000")  # realises 0.5 × 1500
    assert D(e["realized_pnl"]) == D(750)
    assert position(ledger, "alice") == (D("1.5"), D(50500))
    assert ledger.cash("alice", "USDT", "futures") == D(100750)
    assert ledger.cash("alice", "USDT", "spot") == 0

    e = trade("f4", "sell", "1.5", "50000")  # realises 1.5 × −500
    assert D(e["realized_pnl"]) == D(-750)
    assert position(ledger, "alice") is None
    assert ledger.view("alice")["positions"] == []
    assert ledger.cash("alice", "USDT", "futures") == D(100000)

    trade("f5", "buy", "1", "50000")
    e = trade("f6", "sell", "3", "49000")  # closes 1 at −1000, opens −2 at 49000
    assert D(e["realized_pnl"]) == D(-1000)
    assert position(ledger, "alice") == (D(-2), D(49000))
    assert ledger.cash("alice", "USDT", "futures") == D(99000)


def test_average_entry_keeps_twelve_decimals(ledger: Ledger) -> None:
    """O3: an average entry that does not terminate is kept to 12 decimals (half-even)."""
    ledger.open("alice")
    ledger.ok(deposit("alice", "USDT", "100000", wallet="futures"))
    ledger.ok(order("alice", "f1", "buy", "3", "50001", market="futures"))
    ledger.ok(fill("alice", "f1", "1", "50000"))
    ledger.ok(fill("alice", "f1", "2", "50001"))  # (50000 + 100002) / 3
    assert position(ledger, "alice") == (D(3), D("50000.666666666667"))
    ledger.ok(order("alice", "f2", "sell", "3", "50000", market="futures"))
    [e] = ledger.ok(fill("alice", "f2", "3", "50000"))
    assert D(e["realized_pnl"]) == D(-2)  # 3 × −0.666666666667, to 8 places


def test_short_position_upl_sign(ledger: Ledger) -> None:
    """O3: UPL = qty × (mark − entry), qty negative for shorts: a short gains as the mark falls."""
    ledger.open("alice")
    ledger.ok(deposit("alice", "USDT", "100000", wallet="futures"))
    ledger.ok(order("alice", "f1", "sell", "2", "49000", market="futures"))
    ledger.ok(fill("alice", "f1", "2", "49000"))
    assert position(ledger, "alice") == (D(-2), D(49000))
    ledger.price("BTC", "48000")
    [p] = ledger.view("alice")["positions"]
    assert (p["symbol"], D(p["qty"]), D(p["entry_price"]), D(p["mark_price"]), D(p["unrealized_pnl"])) == (
        "BTC-USDT", D(-2), D(49000), D(48000), D(2000))
    ledger.price("BTC", "50500")
    assert D(ledger.view("alice")["positions"][0]["unrealized_pnl"]) == D(-3000)


def test_classic_futures_loss_past_cash_is_refused(ledger: Ledger) -> None:
    """W5 (was O2/O3 "a realised loss larger than the futures cash is still recorded", which
    left −1001 USDT; the amended spec forbids it): a closing fill whose realised loss and fee
    the futures wallet cannot pay is insufficient_balance, the position stays open, and once
    the wallet is funded the same fill is recorded."""
    ledger.open("alice")
    ledger.ok(deposit("alice", "USDT", "1000", wallet="futures"))
    ledger.ok(order("alice", "f1", "buy", "0.2", "50000", market="futures"))  # holds 1000
    ledger.ok(fill("alice", "f1", "0.2", "50000"))
    ledger.ok(order("alice", "f2", "sell", "0.2", "40000", market="futures"))  # reducing: holds 0
    ledger.reject(fill("alice", "f2", "0.2", "40000", fee="1"), "insufficient_balance")  # −2000 realised, −1 fee
    assert ledger.cash("alice", "USDT", "futures") == D(1000)
    assert position(ledger, "alice") == (D("0.2"), D(50000))
    ledger.ok(deposit("alice", "USDT", "1001", wallet="futures"))
    ledger.ok(fill("alice", "f2", "0.2", "40000", fee="1"))
    assert ledger.cash("alice", "USDT", "futures") == D(0)
    assert position(ledger, "alice") is None


def test_unified_futures_realised_pnl_goes_to_unified_usdt(ledger: Ledger) -> None:
    """O3: in unified mode realised P&L lands in USDT cash of the unified wallet."""
    ledger.price("BTC", "50000")
    ledger.unified_master("uni", deposits={"USDT": "20000"})
    ledger.ok(order("uni", "f1", "buy", "1", "50000", market="futures"))
    [e] = ledger.ok(order("uni", "f1b", "sell", "0.00000001", "50000", market="futures"))
    assert D(e["hold"]) == 0  # unified futures orders are covered by free margin, not holds
    ledger.ok({"type": "cancel_order", "account": "uni", "order_id": "f1b"})
    ledger.ok(fill("uni", "f1", "1", "50000"))
    ledger.ok(order("uni", "f2", "sell", "1", "50500", market="futures"))
    [e] = ledger.ok(fill("uni", "f2", "1", "50500", fee="5"))
    assert D(e["realized_pnl"]) == D(500)
    assert ledger.cash("uni", "USDT") == D(20495)
    assert position(ledger, "uni") is None


def test_unified_closing_futures_order_needs_no_new_margin(ledger: Ledger) -> None:
    """O1/O3: an order that only reduces an open unified position adds no risk, so it must not
    need free margin: a long of 1 BTC at 50000 with 10000 USDT (IM 5000 = free 5000) can be closed."""
    ledger.price("BTC", "50000")
    ledger.unified_master("uni", deposits={"USDT": "10000"})
    ledger.ok(order("uni", "f1", "buy", "1", "50000", market="futures"))
    ledger.ok(fill("uni", "f1", "1", "50000"))
    ledger.ok(order("uni", "f2", "sell", "1", "50500", market="futures"))


def test_partial_futures_fill_keeps_hold_of_the_remainder(ledger: Ledger) -> None:
    """O2/W4: after a partial fill the unfilled remainder of a classic futures order stays held,
    even if the symbol's imr changed since the order was placed (hold 10000 at imr 0.1 for 2 BTC;
    filling 1 BTC must leave 5000 held)."""
    ledger.open("alice")
    ledger.ok(deposit("alice", "USDT", "20000", wallet="futures"))
    ledger.ok(order("alice", "f1", "buy", "2", "50000", market="futures"))
    assert holds(ledger, "alice", "USDT", "futures") == D(10000)
    ledger.ok({"type": "set_margin_rates", "symbol": "BTC-USDT", "imr": "0.5", "mmr": "0.1"})
    [e] = ledger.ok(fill("alice", "f1", "1", "50000"))
    assert D(e["released"]) == D(5000)
    assert holds(ledger, "alice", "USDT", "futures") == D(5000)
