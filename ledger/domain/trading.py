"""Orders, fills and positions (O1-O3), with auto-borrow (B1) and auto-repay (R1).

Functions here decide; the Account's decorated events record.  Every guard runs before
the first event, so a rejected order or fill leaves the account as it was.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Callable

from ledger.domain.account import CLASSIC, UNIFIED, Account
from ledger.domain.commands import FillOrder, PlaceOrder
from ledger.domain.errors import LedgerError
from ledger.domain.margin import base_of, order_margin
from ledger.domain.money import ENTRY_PRICE_PLACES, ZERO, fmt, round_down, round_even, round_up
from ledger.domain.platform import QUOTE, Platform


def place_order(
    acct: Account, cmd: PlaceOrder, platform: Platform,
    borrowable: Callable[[str], Decimal], at: datetime,
) -> None:
    """O1: hold what the order may spend; classic needs cash, unified cash + B2 capacity."""
    if cmd.order_id in acct.orders:
        raise LedgerError("order_exists", f"{acct.account} already has an open order {cmd.order_id}")
    base = platform.check_symbol(cmd.symbol)
    platform.check_amount(base, cmd.qty)
    platform.check_amount(QUOTE, cmd.price)
    usdt_places = platform.precision(QUOTE)
    if cmd.market == "spot":
        wallet = acct.trading_wallet
        hold_currency, hold = (QUOTE, round_up(cmd.qty * cmd.price, usdt_places)) if cmd.side == "buy" else (base, cmd.qty)
        needed = acct.holds(hold_currency, wallet) + hold
        cash = acct.balance(hold_currency, platform) if acct.mode == UNIFIED else acct.cash(hold_currency, wallet)
        margin_on = acct.mode == UNIFIED and platform.flags["spot_margin_enabled"]  # B4
        # borrowing capacity (which needs every price) only matters when cash falls short
        cover = cash + (borrowable(hold_currency) if margin_on and needed > cash else ZERO)
        if needed > cover:
            what = "cash plus borrowing capacity" if margin_on else "cash"
            raise LedgerError(
                "insufficient_balance",
                f"{acct.account}'s {what} covers {fmt(max(cover, ZERO))} {hold_currency}; "
                f"open orders would hold {fmt(needed)}",
            )
    else:
        position_qty, _ = acct.positions.get(cmd.symbol, (ZERO, ZERO))
        order_im = order_margin(platform, cmd.symbol, position_qty, cmd.side, cmd.qty, cmd.price)
        if acct.mode == CLASSIC:
            wallet, hold_currency, hold = "futures", QUOTE, round_up(order_im, usdt_places)
            available = acct.available(QUOTE, platform, wallet)
            if hold > available:
                raise LedgerError(
                    "insufficient_balance",
                    f"{acct.account}'s futures wallet has {fmt(available)} USDT available; "
                    f"the order's initial margin is {fmt(hold)}",
                )
        else:
            wallet, hold_currency, hold = "unified", QUOTE, ZERO
            platform.price(base)  # a unified position is always marked
            m = acct.margin(platform)
            free = m.adjusted_equity - m.initial_margin - acct.futures_order_margin(platform)
            if order_im > 0 and order_im > free:  # a reducing order is always allowed
                raise LedgerError(
                    "insufficient_margin",
                    f"{acct.account} has {fmt(round_down(max(free, ZERO), usdt_places))} USDT of free "
                    f"margin; the order needs {fmt(round_up(order_im, usdt_places))}",
                )
    acct.order_placed(cmd.order_id, cmd.market, cmd.symbol, cmd.side, cmd.qty, cmd.price,
                      wallet, hold_currency, hold, at)


def next_position(qty: Decimal, entry: Decimal, delta: Decimal, price: Decimal) -> tuple[Decimal, Decimal, Decimal]:
    """O3: one net position: open, increase, reduce, close or flip.

    Returns (qty after, average entry after, realised P&L before rounding)."""
    if qty == 0 or (qty > 0) == (delta > 0):
        new_qty = qty + delta
        entry = (abs(qty) * entry + abs(delta) * price) / abs(new_qty)
        return new_qty, round_even(entry, ENTRY_PRICE_PLACES), ZERO
    closing = min(abs(qty), abs(delta))
    sign = 1 if qty > 0 else -1
    realized = closing * (price - entry) * sign
    new_qty = qty + delta
    if new_qty == 0:
        return ZERO, ZERO, realized
    if (new_qty > 0) == (qty > 0):
        return new_qty, entry, realized
    return new_qty, price, realized  # flipped: the rest opens at the fill price


def fill_order(acct: Account, cmd: FillOrder, platform: Platform, at: datetime) -> None:
    """O2: a fill is a fact: in unified mode never refused for lack of funds (shortfalls are
    borrowed, B1); in classic mode it must be paid without any cash going negative (W5)."""
    order = acct.open_order(cmd.order_id)
    remaining = order["qty"] - order["filled_qty"]
    if cmd.qty > remaining:
        raise LedgerError("overfill", f"order {cmd.order_id} has {fmt(remaining)} left; the fill is {fmt(cmd.qty)}")
    symbol, side = order["symbol"], order["side"]
    if (side == "buy" and cmd.price > order["price"]) or (side == "sell" and cmd.price < order["price"]):
        raise LedgerError("price_outside_limit", f"a {side} limit order at {fmt(order['price'])} cannot fill at {fmt(cmd.price)}")
    base = base_of(symbol)
    platform.check_amount(base, cmd.qty)
    platform.check_amount(QUOTE, cmd.price)
    platform.check_amount(QUOTE, cmd.fee)
    places = platform.precision(QUOTE)
    unified = acct.mode == UNIFIED
    full = cmd.qty == remaining
    if order["market"] == "spot":
        _fill_spot(acct, cmd, order, base, places, full, unified, platform, at)
    else:
        if unified:
            platform.price(base)
        _fill_futures(acct, cmd, order, places, full, unified, platform, at)


def _released(order: dict, full: bool, partial: Decimal) -> Decimal:
    return order["hold"] if full else min(order["hold"], partial)


def check_classic_fill(acct: Account, order: dict, cash: dict[str, Decimal], released: Decimal,
                       platform: Platform) -> None:
    """W5: in classic mode no cash balance goes below zero.  What a fill takes from the
    order's wallet (a buy's cost, a fee, a futures loss) is paid from the hold the fill
    releases plus the wallet's available cash (W4); what they cannot pay is
    ``insufficient_balance``, and the fill records nothing.  Available cash never goes
    below zero either, so the holds of the other open orders stay covered."""
    wallet = order["wallet"]
    for currency, delta in sorted(cash.items()):
        if delta >= 0:
            continue
        freed = released if currency == order["hold_currency"] else ZERO
        available = acct.available(currency, platform, wallet)
        if -delta > freed + available:
            raise LedgerError(
                "insufficient_balance",
                f"{acct.account}'s {wallet} wallet cannot pay this fill: it takes {fmt(-delta)} {currency}, "
                f"the order releases {fmt(freed)} and {fmt(max(available, ZERO))} more is available (W5)",
            )


def _fill_spot(acct: Account, cmd: FillOrder, order: dict, base: str, places: int,
               full: bool, unified: bool, platform: Platform, at: datetime) -> None:
    if order["side"] == "buy":
        cost = round_up(cmd.qty * cmd.price, places)  # what the user pays is rounded up
        cash = {QUOTE: -cost - cmd.fee, base: cmd.qty}
        released = _released(order, full, round_up(cmd.qty * order["price"], places))
        out_currency, out_amount, received, inflow = QUOTE, cost, base, cmd.qty
    else:
        proceeds = round_down(cmd.qty * cmd.price, places)  # what the user gets is rounded down
        cash = {base: -cmd.qty, QUOTE: proceeds - cmd.fee}
        released = _released(order, full, cmd.qty)
        out_currency, out_amount, received, inflow = base, cmd.qty, QUOTE, proceeds - cmd.fee
    if not unified:
        check_classic_fill(acct, order, cash, released, platform)
        acct.order_filled(cmd.order_id, cmd.qty, cmd.price, cmd.fee, cash, released, None, ZERO, at)
        return
    # B1: split the shortfall into what the trade needs (spot) and what the fee adds (fee)
    spot_short = max(ZERO, out_amount - acct.balance(out_currency, platform))
    usdt_after = acct.balance(QUOTE, platform) + cash[QUOTE]
    fee_short = max(ZERO, -usdt_after) - (spot_short if out_currency == QUOTE else ZERO)
    acct.order_filled(cmd.order_id, cmd.qty, cmd.price, cmd.fee, cash, released, None, ZERO, at)
    if spot_short > 0:
        acct.borrowed(out_currency, spot_short, "spot", False, at)
    if fee_short > 0:
        acct.borrowed(QUOTE, fee_short, "fee", False, at)
    if inflow > 0:
        acct.auto_repay(received, inflow, "buy", platform, at)  # R1


def _fill_futures(acct: Account, cmd: FillOrder, order: dict, places: int,
                  full: bool, unified: bool, platform: Platform, at: datetime) -> None:
    qty, entry = acct.positions.get(order["symbol"], (ZERO, ZERO))
    delta = cmd.qty if order["side"] == "buy" else -cmd.qty
    new_qty, new_entry, realized = next_position(qty, entry, delta, cmd.price)
    realized = round_even(realized, places)
    remaining = order["qty"] - order["filled_qty"]
    released = _released(order, full, round_up(order["hold"] * cmd.qty / remaining, places))  # pro rata
    cash = {QUOTE: realized - cmd.fee} if realized != cmd.fee else {}
    if not unified:
        check_classic_fill(acct, order, cash, released, platform)
    acct.order_filled(cmd.order_id, cmd.qty, cmd.price, cmd.fee, cash, released,
                      [new_qty, new_entry], realized, at)
    if unified:
        acct.settle_futures(platform, at, gain=max(realized - cmd.fee, ZERO), fee=cmd.fee)  # R1: what came in, net
