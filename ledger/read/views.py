"""Read views of an account (SPEC §14), built from the aggregates and ``ledger.domain.margin``."""
from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any, Callable

from ledger.domain.account import UNIFIED, Account
from ledger.domain.errors import LedgerError
from ledger.domain.margin import account_borrow_limit, base_of, less_unrealized_loss, shown_ratio, unrealized_pnl
from ledger.domain.money import ZERO, round_down
from ledger.domain.platform import QUOTE, Platform
from ledger.read.render import plain


def at_mark(acct: Account, platform: Platform) -> Account:
    """The account with its UPL-generated liability booked at ``platform``'s marks, for
    reading (views, ``--as-of``; §16): a copy when that books anything, the account and the
    store untouched."""
    booked = acct.upl_liability.get(QUOTE, ZERO)
    if acct.mode != UNIFIED or not (acct.positions or booked):
        return acct
    try:
        if acct.derived_upl(platform) == booked:
            return acct
    except LedgerError:
        return acct
    marked = copy.deepcopy(acct)
    marked.closed_until = None
    marked.mark_upl(platform, marked.last_at)
    return marked


def account_view(acct: Account, platform: Platform, platform_owed: Callable[[str], Decimal]) -> dict[str, Any]:
    """Every §14 field; margin fields are null for classic accounts, or when a price is missing
    (then ``margin_error`` says which)."""
    acct = at_mark(acct, platform)  # the UPL-generated liability derived at the marks in force (issue 15)
    unified = acct.mode == UNIFIED
    view: dict[str, Any] = {
        "account": acct.account,
        "parent": acct.parent,
        "mode": acct.mode,
        "vip_level": acct.vip_level,
        "wallets": {w: dict(sorted(b.items())) for w, b in acct.wallets.items()},
        "balances": {},
        "positions": [],
        "open_orders": [
            {k: o[k] for k in ("order_id", "market", "symbol", "side", "qty", "filled_qty", "price")}
            for o in acct.orders.values()
        ],
        "adjusted_equity": None, "initial_margin": None, "maintenance_margin": None,
        "risk_ratio": None, "liquidatable": False, "nav": None, "borrowable": {},
    }
    currencies = sorted({c for b in acct.wallets.values() for c in b} | set(acct.liabilities()))
    try:
        m = acct.margin(platform) if unified else None
    except LedgerError as error:
        m, view["margin_error"] = None, error.as_dict()
    for c in currencies:
        cash = sum((b.get(c, ZERO) for b in acct.wallets.values()), ZERO)
        available = sum((acct.cash(c, w) - acct.holds(c, w) for w in acct.wallets), ZERO)
        if unified and c == QUOTE and m is not None:
            available = round_down(less_unrealized_loss(available, m.upl), platform.precision(c))  # W4
        view["balances"][c] = {
            "cash": cash,
            "liability": acct.liability(c),
            "upl_liability": acct.upl_liability.get(c, ZERO),
            "available": available,
            "equity": m.equity.get(c, ZERO) if m is not None else cash - acct.liability(c),
        }
    for p in acct.position_list():
        try:
            mark: Decimal | None = platform.price(base_of(p.symbol))
        except LedgerError:
            mark = None
        view["positions"].append({
            "symbol": p.symbol, "qty": p.qty, "entry_price": p.entry_price, "mark_price": mark,
            "unrealized_pnl": unrealized_pnl(p, mark) if mark is not None else None,
        })
    if m is not None:
        view.update({
            "adjusted_equity": m.adjusted_equity, "initial_margin": m.initial_margin,
            "maintenance_margin": m.maintenance_margin,
            "risk_ratio": shown_ratio(m.risk_ratio),
            "liquidatable": m.liquidatable, "nav": m.nav,
        })
        def owed(c: str) -> Decimal:
            """What all accounts owe of ``c``, asked only when c has a platform limit (B2 needs it only then)."""
            return platform_owed(c) if platform.platform_limit(c) is not None else ZERO

        for c in sorted(platform.currencies):
            try:
                limit = account_borrow_limit(acct, c, platform, owed, m)
            except LedgerError:
                continue  # no price: nothing can be lent against it
            view["borrowable"][c] = limit.limit
    return plain(view)
