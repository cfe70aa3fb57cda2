"""Hourly interest (SPEC §8, I1-I6): what one account owes for the hours up to a run.

``charge_hours`` is domain logic: it takes the time of the run and a function giving the
platform parameters in force at an hour, and records ``InterestCharged`` for every hour not
yet charged, oldest first.  A late charge equals the on-time one because the liability at
hour H is read from history (``Account.owed_at``), not from the moment of the run; for USDT
the UPL-generated part is the derived figure at the mark in force at H (``derived_upl_at``,
issue 15), the rest the liability booked at H.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Callable

from ledger.domain.account import Account
from ledger.domain.money import ZERO, round_up
from ledger.domain.platform import QUOTE, Platform
from ledger.domain.times import HOUR, ceil_hour, floor_hour

MAX_HOURS_PER_RUN = 24 * 366  # a bound on catch-up work for one account and currency


def hourly_rate(platform: Platform, currency: str, vip_level: int) -> Decimal:
    """I3: the rate for the VIP level (else the all-levels rate), or while
    ``beta_highest_vip_rate`` is on, the rate of the highest VIP level that has one."""
    levels = {lvl: history[-1][1] for lvl, history in platform.rates.get(currency, {}).items() if history}
    if platform.flags["beta_highest_vip_rate"]:
        ranked = sorted(lvl for lvl in levels if lvl is not None)
        if ranked:
            return levels[ranked[-1]]
    return levels.get(vip_level, levels.get(None, ZERO))


@dataclass(frozen=True)
class Charge:
    account: str
    currency: str
    hour: datetime
    liability: Decimal
    interest_free: Decimal
    rate: Decimal
    interest: Decimal
    paid: Decimal
    capitalized: Decimal


def liability_at(acct: Account, currency: str, hour: datetime,
                 platform_at: Callable[[datetime], Platform]) -> tuple[Decimal, Decimal]:
    """I1/I2: (liability, UPL-generated part) at the top of ``hour``: the booked liability at H
    (``owed_at``) with, for USDT, its booked UPL-generated part replaced by the figure derived
    at the marks in force at H (issue 15); history without kept inputs keeps the booked part."""
    owed, upl_owed = acct.owed_at(currency, hour)
    if currency == QUOTE and acct.inputs_at(hour) is not None:
        derived = acct.derived_upl_at(hour, platform_at(hour))
        assert derived is not None
        owed, upl_owed = owed - upl_owed + derived, derived
    return owed, upl_owed


def charge_hours(
    acct: Account, run_at: datetime, platform_at: Callable[[datetime], Platform], platform: Platform
) -> list[Charge]:
    """I1-I5: charge every uncharged hour H ≤ run_at, per currency, oldest first."""
    last = floor_hour(run_at)
    charges: list[Charge] = []
    for currency in sorted(acct.interest_due):
        places = platform.precision(currency)
        hour = acct.interest_due[currency]
        for _ in range(MAX_HOURS_PER_RUN):
            if hour > last:
                break
            owed, upl_owed = liability_at(acct, currency, hour, platform_at)
            if owed <= 0:  # nothing owed at H: jump to the next change, if any
                entry = acct.inputs_at(hour) if currency == QUOTE else None
                if entry is not None and entry[1]:  # a position held: the next hour may owe
                    hour += HOUR
                    continue
                following = acct.next_change_after(currency, hour)
                if following is None:
                    break
                hour = ceil_hour(following)
                continue
            then = platform_at(hour)
            free = min(upl_owed, then.allowance(currency))  # I2
            rate = hourly_rate(then, currency, acct.vip_level)
            interest = round_up((owed - free) * rate, places)  # I3
            payable = acct.payable(currency, platform)
            paid = min(interest, payable)  # I4: from the available balance first
            acct.interest_charged(currency, hour, owed, free, rate, interest, paid, interest - paid, run_at)
            charges.append(Charge(acct.account, currency, hour, owed, free, rate, interest, paid, interest - paid))
            hour += HOUR
        holding = currency == QUOTE and bool(acct.positions)  # the derived figure may be owed later
        if not acct.liability(currency) and not holding and acct.next_change_after(currency, last) is None:
            if currency in acct.interest_due:
                acct.interest_settled(currency, last, run_at)
    return charges
