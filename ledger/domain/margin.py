"""Margin arithmetic: the one place that computes F1-F6, B2, an order's margin (O1), the
unrealised-loss part of W4, realised P&L at mark (O3, L3) and margin after a change.

All in USDT, all ``Decimal``.  Every function is pure: it takes balances and the platform
parameters and returns numbers.  A price that is needed and missing raises ``no_price``;
nothing is ever valued at a silent zero.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Callable, Mapping, Protocol, Sequence

from ledger.domain.money import ZERO, round_down, round_even, round_up
from ledger.domain.platform import QUOTE, Platform


@dataclass(frozen=True)
class Position:
    symbol: str
    qty: Decimal  # negative for shorts
    entry_price: Decimal


@dataclass(frozen=True)
class MarginState:
    """What F1-F6 need of one account."""

    cash: Mapping[str, Decimal]  # the unified wallet
    liabilities: Mapping[str, Decimal]
    positions: Sequence[Position]


@dataclass(frozen=True)
class Margin:
    equity: dict[str, Decimal]
    upl: Decimal
    adjusted_equity: Decimal
    initial_margin: Decimal
    maintenance_margin: Decimal
    nav: Decimal
    risk_ratio: Decimal | None  # None: infinite (F5)
    liquidatable: bool


def base_of(symbol: str) -> str:
    return symbol.removesuffix("-" + QUOTE)


def unrealized_pnl(position: Position, mark: Decimal) -> Decimal:
    """O3: qty × (mark − entry); qty is negative for shorts."""
    return position.qty * (mark - position.entry_price)


def closing_pnl(position: Position, price: Decimal, places: int) -> Decimal:
    """O3, L3: the P&L realised by closing ``position`` whole at ``price`` (its O3 UPL at
    that price), rounded half-even to ``places`` (USDT's precision)."""
    return round_even(unrealized_pnl(position, price), places)


def less_unrealized_loss(amount: Decimal, upl: Decimal) -> Decimal:
    """W4: what unified USDT can pay: ``amount`` + UPL when that is negative (a gain adds nothing)."""
    return amount + min(upl, ZERO)


def total_upl(positions: Sequence[Position], platform: Platform) -> Decimal:
    return sum(
        (unrealized_pnl(p, platform.price(base_of(p.symbol))) for p in positions), ZERO
    )


def upl_generated(upl: Decimal, cash: Decimal, places: int) -> Decimal:
    """B1/I2/R1: the UPL-generated liability, derived (issue 15): what an unrealised loss would
    have to borrow beyond the unified USDT cash that covers it, at the mark in force.

    ``upl`` is the account's total futures UPL at that mark, ``cash`` its unified USDT cash
    not counting UPL-generated liability already booked (``Account.real_quote_cash``).  The
    loss is rounded up to USDT's precision first, then what cash covers is taken off (B1:
    the shortfall is borrowed rounded up), so the figure equals what a tick used to book as
    ``Borrowed`` (source futures_upl, tagged) when nothing else was owed.  I2 reads it as the
    part eligible for the interest-free allowance; R1 repays it first, and an unrealised gain
    only lowers it (it moves no cash, so it never repays principal or interest)."""
    return max(ZERO, round_up(-min(upl, ZERO), places) - cash)


def equities(state: MarginState, upl: Decimal) -> dict[str, Decimal]:
    """F1: equity_c = cash_c − liab_c (+ upl for USDT)."""
    currencies = set(state.cash) | set(state.liabilities) | {QUOTE}
    out = {}
    for c in sorted(currencies):
        out[c] = state.cash.get(c, ZERO) - state.liabilities.get(c, ZERO)
    out[QUOTE] += upl
    return out


def collateral_value(currency: str, equity: Decimal, platform: Platform) -> Decimal:
    """F2: price × Σ_tiers ratio × (part of max(equity, 0) in the tier), progressive."""
    quantity = max(equity, ZERO)
    if quantity == 0:
        return ZERO
    weighted, floor = ZERO, ZERO
    for up_to, ratio in platform.collateral_tiers(currency):
        ceiling = quantity if up_to is None else min(quantity, up_to)
        if ceiling > floor:
            weighted += ratio * (ceiling - floor)
            floor = ceiling
        if up_to is None or quantity <= up_to:
            break
    if weighted == 0:
        return ZERO
    return platform.price(currency) * weighted


def margin(state: MarginState, platform: Platform) -> Margin:
    upl = total_upl(state.positions, platform)
    equity = equities(state, upl)
    # F3: AE = Σ CV_c − Σ price_c × max(−equity_c, 0)
    adjusted = sum((collateral_value(c, e, platform) for c, e in equity.items()), ZERO)
    adjusted -= sum((platform.price(c) * -e for c, e in equity.items() if e < 0), ZERO)
    # F4: IM / MM of liabilities and futures positions
    im = mm = ZERO
    for c, owed in state.liabilities.items():
        if owed:
            imr, mmr = platform.liability_rates(c)
            value = platform.price(c) * owed
            im, mm = im + value * imr, mm + value * mmr
    for p in state.positions:
        imr, mmr = platform.futures_rates(p.symbol)
        notional = abs(p.qty) * platform.price(base_of(p.symbol))
        im, mm = im + notional * imr, mm + notional * mmr
    # F6: NAV = Σ price_c × equity_c (every currency held or owed needs a price)
    nav = sum((platform.price(c) * e for c, e in equity.items() if e), ZERO)
    # F5: MM / AE when AE > 0; 0 when MM = 0; otherwise infinite
    if mm == 0:
        ratio: Decimal | None = ZERO
    elif adjusted > 0:
        ratio = mm / adjusted
    else:
        ratio = None
    liquidatable = ratio_at_least(mm, adjusted, platform.thresholds["liquidation"])
    return Margin(equity, upl, adjusted, im, mm, nav, ratio, liquidatable)


def margin_after(state: MarginState, platform: Platform, cash: Sequence[tuple[str, Decimal]] = (),
                 repaid: Sequence[tuple[str, Decimal]] = ()) -> Margin:
    """F1-F6 of ``state`` as it would be after a change, for a guard that asks "what if"
    (W2: paying out; L3: selling and repaying) without touching the account: each
    (currency, delta) of ``cash`` added to the wallet in order, then each (currency, amount)
    of ``repaid`` taken off both the wallet and the liability."""
    wallet, owed = dict(state.cash), dict(state.liabilities)
    for currency, delta in cash:
        wallet[currency] = wallet.get(currency, ZERO) + delta
    for currency, amount in repaid:
        wallet[currency] = wallet.get(currency, ZERO) - amount
        owed[currency] = owed.get(currency, ZERO) - amount
    return margin(MarginState(wallet, owed, state.positions), platform)


RATIO_PLACES = 8


def shown_ratio(ratio: Decimal | None) -> Decimal | None:
    """A risk ratio as recorded and shown: 8 decimals, None when infinite (F5)."""
    return None if ratio is None else ratio.quantize(Decimal(1).scaleb(-RATIO_PLACES))


def ratio_at_least(mm: Decimal, adjusted: Decimal, level: Decimal) -> bool:
    """F5 compared without dividing: risk_ratio ≥ level (an infinite ratio is ≥ any level)."""
    return mm > 0 and (adjusted <= 0 or mm >= level * adjusted)


def ratio_at_most(m: Margin, level: Decimal) -> bool:
    """F5 compared without dividing: risk_ratio ≤ level."""
    return m.maintenance_margin == 0 or (m.adjusted_equity > 0 and m.maintenance_margin <= level * m.adjusted_equity)


def opening_qty(position_qty: Decimal, side: str, qty: Decimal) -> Decimal:
    """The part of a futures order that would open or enlarge exposure if it filled whole:
    reducing or closing a position adds no risk (O1)."""
    delta = qty if side == "buy" else -qty
    return max(ZERO, abs(position_qty + delta) - abs(position_qty))


def order_margin(platform: Platform, symbol: str, position_qty: Decimal, side: str, qty: Decimal,
                 price: Decimal) -> Decimal:
    """O1 with F4's rate: the IM a futures limit order needs, unrounded: opening qty × order
    price × imr of the symbol (``position_qty`` is the account's position in it now)."""
    return opening_qty(position_qty, side, qty) * price * platform.futures_rates(symbol)[0]


@dataclass(frozen=True)
class BorrowLimit:
    personal: Decimal  # min(quota − liab, margin capacity), floored at 0
    limit: Decimal  # B2: personal, further capped by the platform's remaining limit


def borrow_limit(
    currency: str,
    owed: Decimal,
    vip_level: int,
    account_margin: Margin,
    platform: Platform,
    platform_owed: Decimal,
) -> BorrowLimit:
    """B2: min(quota − liab, max(0, AE − IM) / (price × imr), limit − platform liab), ≥ 0."""
    places = platform.precision(currency)
    imr, _ = platform.liability_rates(currency)
    free = max(ZERO, account_margin.adjusted_equity - account_margin.initial_margin)
    capacity = free / (platform.price(currency) * imr)
    personal = max(ZERO, round_down(min(platform.quota(currency, vip_level) - owed, capacity), places))
    platform_limit = platform.platform_limit(currency)
    if platform_limit is None:
        return BorrowLimit(personal, personal)
    remaining = max(ZERO, round_down(platform_limit - platform_owed, places))
    return BorrowLimit(personal, min(personal, remaining))


class Borrower(Protocol):
    """What B2 reads of an account (``ledger.domain.account.Account`` is one)."""

    vip_level: int

    def liability(self, currency: str) -> Decimal: ...

    def margin(self, platform: Platform) -> Margin: ...


def account_borrow_limit(account: Borrower, currency: str, platform: Platform,
                         platform_owed: Callable[[str], Decimal],
                         account_margin: Margin | None = None) -> BorrowLimit:
    """B2 of ``account`` for ``currency``: its liability and VIP level, its margin (computed
    here unless the caller has it already) and what all accounts owe (``platform_owed``,
    asked after the margin, exactly once)."""
    m = account.margin(platform) if account_margin is None else account_margin
    return borrow_limit(currency, account.liability(currency), account.vip_level, m, platform,
                        platform_owed(currency))
