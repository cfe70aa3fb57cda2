"""The 5-minute sweep for one account (SPEC §9, L1-L4): forced repayment over the personal
quota, forced repayment for the platform limit, liquidation, and risk alerts.

Every action is idempotent by construction: once an excess is repaid or the risk ratio is
back at target, evaluating the account again finds nothing to do.  Swaps are at mark price
through the swap desk; the user pays the rounding (what is sold rounds up, what is bought
rounds down).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from ledger.domain.account import UNIFIED, Account
from ledger.domain.margin import (
    Margin, base_of, closing_pnl, margin_after, ratio_at_least, ratio_at_most, shown_ratio,
)
from ledger.domain.money import ZERO, quantum, round_down, round_up
from ledger.domain.platform import QUOTE, Platform

MAX_BISECTIONS = 128


@dataclass
class Actions:
    """What the sweep did to one account, for `ledger repayment run --json`."""

    account: str
    items: list[dict[str, Any]] = field(default_factory=list)

    def add(self, kind: str, **details: Any) -> None:
        self.items.append({"account": self.account, "kind": kind, **details})


def sellable(acct: Account, platform: Platform, exclude: str) -> list[tuple[str, Decimal]]:
    """Priced assets that can be swapped, largest USDT value first (ties by currency code)."""
    out = []
    for currency in acct.wallets.get("unified", {}):
        if currency != exclude and (currency == QUOTE or currency in platform.prices):
            amount = acct.payable(currency, platform)
            if amount > 0:
                out.append((currency, amount))
    return sorted(out, key=lambda item: (-item[1] * platform.price(item[0]), item[0]))


def swap(acct: Account, source: str, target: str, wanted: Decimal, platform: Platform, reason: str, at: datetime) -> Decimal:
    """Sell ``source`` at mark for up to ``wanted`` of ``target``; returns what was bought."""
    p_src, p_tgt = platform.price(source), platform.price(target)
    src_places, tgt_places = platform.precision(source), platform.precision(target)
    available = acct.payable(source, platform)
    cost = round_up(wanted * p_tgt / p_src, src_places)
    if cost > available:
        cost, wanted = available, round_down(available * p_src / p_tgt, tgt_places)
    if wanted <= 0 or cost <= 0:
        return ZERO
    acct.auto_swapped(source, cost, target, wanted, p_src, p_tgt, reason, at)
    return wanted


def force_repay(acct: Account, currency: str, amount: Decimal, platform: Platform, reason: str, at: datetime) -> Decimal:
    """L1/L2: repay ``amount`` of ``currency`` from its cash, then by swapping other assets;
    open orders are cancelled when what is free does not suffice."""
    for attempt in range(2):
        short = amount - acct.payable(currency, platform)
        for source, _ in sellable(acct, platform, exclude=currency):
            if short <= 0:
                break
            short -= swap(acct, source, currency, short, platform, reason, at)
        if short <= 0 or not acct.orders or attempt:
            break
        for order_id in sorted(acct.orders):
            acct.cancel_order(order_id, at)
    return acct.repay(currency, min(amount, acct.payable(currency, platform)), reason, at)


def over_quota(acct: Account, platform: Platform) -> dict[str, Decimal]:
    """L1: each currency where liab_c > quota_c(vip), with the excess."""
    excess = {c: owed - platform.quota(c, acct.vip_level) for c, owed in sorted(acct.liabilities().items())}
    return {c: amount for c, amount in excess.items() if amount > 0}


def quota_excess(acct: Account, platform: Platform, at: datetime, actions: Actions) -> None:
    """L1: where liab_c > quota_c(vip), repay the excess."""
    for currency, excess in over_quota(acct, platform).items():
        repaid = force_repay(acct, currency, excess, platform, "forced_quota", at)
        actions.add("forced_quota", currency=currency, excess=excess, repaid=repaid)


def platform_excess(acct: Account, currency: str, excess: Decimal, platform: Platform, at: datetime, actions: Actions) -> Decimal:
    """L2: repay up to ``excess`` of the platform's total over its limit; returns what was repaid."""
    amount = min(acct.liability(currency), excess)
    if amount <= 0:
        return ZERO
    repaid = force_repay(acct, currency, amount, platform, "forced_platform", at)
    if repaid:
        actions.add("forced_platform", currency=currency, repaid=repaid)
    return repaid


def least_sale(acct: Account, platform: Platform, currency: str, source: str | None, most: Decimal,
               target: Decimal) -> tuple[Decimal, Decimal]:
    """L3: the least (cost in ``source``, amount of ``currency`` repaid) that brings the risk
    ratio to the target — from own cash when ``source`` is None — else the most there is.

    The search runs over whole units of the coarser side (the currency whose smallest unit is
    worth more), pricing the other side at its best rounding, so each step of the search moves
    the repayment forward and rounding cannot make a larger sale look necessary."""
    tgt_places = platform.precision(currency)
    if source is None:
        step = quantum(tgt_places)
        pair = lambda n: (ZERO, n * step)  # noqa: E731
        top = int(most / step)
    else:
        p_src, p_tgt, src_places = platform.price(source), platform.price(currency), platform.precision(source)
        if quantum(src_places) * p_src >= quantum(tgt_places) * p_tgt:  # sell whole units of the source
            step = quantum(src_places)
            pair = lambda n: (n * step, min(most, round_down(n * step * p_src / p_tgt, tgt_places)))  # noqa: E731
            top = int(round_up(most * p_tgt / p_src, src_places) / step)
        else:  # buy whole units of the target
            step = quantum(tgt_places)
            pair = lambda n: (round_up(n * step * p_tgt / p_src, src_places), n * step)  # noqa: E731
            top = int(most / step)

    def enough(n: int) -> bool:
        """Whether selling ``cost`` of ``source`` for ``amount`` of ``currency`` and repaying it
        brings the risk ratio to the target."""
        cost, amount = pair(n)
        sold = [] if source is None else [(source, -cost), (currency, amount)]
        after = margin_after(acct.margin_state(), platform, cash=sold, repaid=[(currency, amount)])
        return ratio_at_most(after, target)

    if top <= 0 or not enough(top):
        return pair(max(top, 0))
    low, high = 0, top  # enough(high) holds, and the answer is in (low, high]
    for _ in range(MAX_BISECTIONS):
        if high - low <= 1:
            break
        middle = (low + high) // 2
        if enough(middle):
            high = middle
        else:
            low = middle
    return pair(low if enough(low) else high)


def can_buy(acct: Account, platform: Platform, currency: str) -> bool:
    """Whether anything is left that could pay at least one smallest unit of ``currency``."""
    if acct.payable(currency, platform) > 0:
        return True
    unit = quantum(platform.precision(currency)) * platform.price(currency)
    return any(amount * platform.price(source) >= unit for source, amount in sellable(acct, platform, exclude=currency))


def liquidate(acct: Account, platform: Platform, m: Margin, at: datetime, actions: Actions) -> None:
    """L3: at or above the liquidation level (``m`` is the account's margin now), cancel orders,
    close positions at mark, then sell and repay until the risk ratio is at or below target or
    nothing is owed; the rest is bad debt."""
    target = platform.thresholds["target"]
    acct.liquidation_started(shown_ratio(m.risk_ratio), m.adjusted_equity, m.maintenance_margin, at)
    for order_id in sorted(acct.orders):
        acct.cancel_order(order_id, at)
    realized_total = ZERO
    for position in acct.position_list():
        mark = platform.price(base_of(position.symbol))
        realized = closing_pnl(position, mark, platform.precision(QUOTE))
        acct.position_liquidated(position.symbol, position.qty, mark, realized, at)
        realized_total += realized
    acct.settle_futures(platform, at, gain=max(realized_total, ZERO))
    for currency in sorted(acct.liabilities(), key=lambda c: (-acct.liability(c) * platform.price(c), c)):
        if ratio_at_most(acct.margin(platform), target):
            break
        for source in [None] + [s for s, _ in sellable(acct, platform, exclude=currency)]:
            owed = acct.liability(currency)
            if owed <= 0 or ratio_at_most(acct.margin(platform), target):
                break
            if source is None:
                most = min(owed, acct.payable(currency, platform))
            else:
                value = round_down(acct.payable(source, platform) * platform.price(source) / platform.price(currency),
                                   platform.precision(currency))
                most = min(owed, value)
            cost, amount = least_sale(acct, platform, currency, source, most, target)
            if amount <= 0:
                continue
            if source is not None:
                acct.auto_swapped(source, cost, currency, amount, platform.price(source), platform.price(currency),
                                  "liquidation", at)
            acct.repay(currency, amount, "liquidation", at)
    bad_debt: dict[str, Decimal] = {}
    if acct.liabilities() and not ratio_at_most(acct.margin(platform), target):
        if not any(can_buy(acct, platform, c) for c in acct.liabilities()):  # dust cannot pay
            for currency in sorted(acct.liabilities()):
                bad_debt[currency] = acct.write_off(currency, at)
    after = acct.margin(platform)
    acct.liquidation_completed(shown_ratio(after.risk_ratio), bad_debt, at)
    actions.add("liquidation", risk_ratio_before=shown_ratio(m.risk_ratio),
                risk_ratio_after=shown_ratio(after.risk_ratio), bad_debt=bad_debt)


def alert(acct: Account, platform: Platform, m: Margin, at: datetime, actions: Actions) -> None:
    """L4: RiskAlertRaised once per crossing of the alert level (cleared when below it);
    ``m`` is the account's margin now."""
    above = at_alert_level(m, platform)
    if above and not acct.alerted:
        acct.risk_alert_raised(shown_ratio(m.risk_ratio), at)
        actions.add("alert", risk_ratio=shown_ratio(m.risk_ratio))
    elif not above and acct.alerted:
        acct.risk_alert_cleared(shown_ratio(m.risk_ratio) or ZERO, at)


def at_alert_level(m: Margin, platform: Platform) -> bool:
    return ratio_at_least(m.maintenance_margin, m.adjusted_equity, platform.thresholds["alert"])


def needs_sweep(acct: Account, platform: Platform) -> bool:
    """Whether ``sweep_account`` may change the account, by its own tests and without acting:
    a currency over quota (L1), the liquidation level (L3), or an alert to raise or clear
    (L4).  False means the sweep leaves the account as it is."""
    if acct.mode != UNIFIED:
        return False
    if over_quota(acct, platform):
        return True
    m = acct.margin(platform)
    return m.liquidatable or at_alert_level(m, platform) != acct.alerted


def sweep_account(acct: Account, platform: Platform, at: datetime) -> Actions:
    """L1, L3 and L4 for one unified account (L2 needs every account: see workers.sweep)."""
    actions = Actions(acct.account)
    if acct.mode != UNIFIED:
        return actions
    quota_excess(acct, platform, at, actions)
    m = acct.margin(platform)
    if m.liquidatable:
        liquidate(acct, platform, m, at, actions)
        m = acct.margin(platform)
    alert(acct, platform, m, at, actions)
    return actions
