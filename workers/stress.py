"""`ledger risk stress` (SPEC §17): what the 5-minute sweep would do if marks moved now (or
at T) by given percentages — the sweep's own code on copies of the state, nothing recorded.

Each shocked currency is a ``set_price`` to ``price × (1 + P/100)`` (rounded half-even to
USDT's precision), applied one after the other in currency order on copies of the platform;
each copy of an account is moved by each new mark exactly as ``set_price`` moves it
(``ledger.domain.marks.mark_moved``, the derived UPL-generated liability booked at the last
shocked marks, as the sweep's unit of work books it), then run through the sweep's own tests and actions
(``needs_sweep``, ``sweep_account``: L1, L3, L4) and, once every account has been through,
the platform limits' pass (``platform_excess``: L2), largest borrowers first, with the
platform totals kept in memory as the unit of work keeps them.  Nothing is saved: the copies
are dropped (the store's event count is unchanged).

Memory is bounded: the candidates (the sweep's own: ``workers.sweep.candidates``) are loaded a
chunk at a time; what is kept is one row per account whose state the shock changes (any
event the mark or the sweep would record on it) and, as the sweep keeps it, what each
account owes of a currency that has a platform limit.  The L2 pass loads each borrower it
takes again and re-plays pass 1 on it (deterministic), so no copy outlives its chunk.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Iterable

from ledger.domain import ids
from ledger.domain.account import UNIFIED, Account
from ledger.domain.errors import LedgerError
from ledger.domain.margin import shown_ratio
from ledger.domain.marks import mark_moved
from ledger.domain.money import ZERO, decimal_places, round_even
from ledger.domain.platform import QUOTE, Platform
from ledger.domain.sweep import Actions, needs_sweep, platform_excess, sweep_account
from ledger.service.app import LedgerApp
from ledger.service.topics import stored_topics
from workers.gc_tuning import fewer_collections
from workers.sweep import candidates

CHUNK_ACCOUNTS = 2_000  # accounts loaded at a time
SHOCK = re.compile(r"^\s*([A-Za-z0-9]{1,20})\s*=\s*([+-]?[0-9]+(?:\.[0-9]+)?)\s*%\s*$")
MOST_DOWN, MOST_UP = Decimal(-100), Decimal(1000)  # a percentage P: -100 < P <= 1000
PERCENT_PLACES = 8


@dataclass(frozen=True)
class Shock:
    currency: str
    percent: Decimal
    price_before: Decimal = ZERO
    price_after: Decimal = ZERO


def parse_shocks(texts: Iterable[str]) -> list[Shock]:
    """``CUR=P%`` each (``BTC=-30%``, ``ETH=+10%``), once per currency, at least one; the
    currencies in order.  Only the form is checked here (``shocked`` checks the currency)."""
    shocks: dict[str, Shock] = {}
    for text in texts:
        found = SHOCK.match(text)
        if found is None:
            raise LedgerError("invalid_shock", f"--shock {text!r} is not CUR=P% (such as BTC=-30% or ETH=+10%)")
        currency = found.group(1).upper()
        try:
            percent = Decimal(found.group(2))
        except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
            raise LedgerError("invalid_shock", f"--shock {text!r}: {found.group(2)} is not a number") from None
        if not MOST_DOWN < percent <= MOST_UP:
            raise LedgerError("invalid_shock", f"--shock {text!r}: a price moves by more than -100% and at most "
                                               f"+1000%; {found.group(2)}% is outside")
        if decimal_places(percent.normalize()) > PERCENT_PLACES:
            raise LedgerError("invalid_shock", f"--shock {text!r}: a percentage has at most {PERCENT_PLACES} decimals")
        if currency in shocks:
            raise LedgerError("invalid_shock", f"--shock: {currency} is shocked twice; give each currency once")
        shocks[currency] = Shock(currency, percent)
    if not shocks:
        raise LedgerError("invalid_shock", "give at least one --shock CUR=P% (such as --shock BTC=-30%)")
    return [shocks[c] for c in sorted(shocks)]


def shocked(platform: Platform, shocks: list[Shock]) -> list[Shock]:
    """Each shock with the mark it moves from and to (USDT's precision, half-even)."""
    out = []
    for s in shocks:
        if s.currency == QUOTE:
            raise LedgerError("invalid_shock", "USDT is the quote currency; its price is always 1 and cannot be shocked")
        platform.precision(s.currency)  # unknown_currency
        before = platform.price(s.currency)  # no_price
        after = round_even(before * (1 + s.percent / 100), platform.precision(QUOTE))
        if after <= 0:
            raise LedgerError("invalid_shock", f"--shock {s.currency}={s.percent}% moves the price {before} to {after}; "
                                               "a price stays above zero")
        out.append(Shock(s.currency, s.percent, before, after))
    return out


Step = tuple[str, Platform, Platform]  # (currency, the platform before its new mark, after)


def steps_of(platform: Platform, shocks: list[Shock], at: datetime) -> list[Step]:
    """Copies of the platform, one more mark moved each (the ``set_price`` events stay on
    the copies, never saved)."""
    steps, before = [], copy.deepcopy(platform)
    for s in shocks:
        after = copy.deepcopy(before)
        after.set_price(s.currency, s.price_after, at)
        steps.append((s.currency, before, after))
        before = after
    return steps


def replay_pass_one(acct: Account, steps: list[Step], at: datetime) -> tuple[Decimal | None, int] | None:
    """The new marks, one after the other, as ``set_price`` moves a holder; then pass 1 of
    the sweep (L1, L3, L4) where its own screen says it acts.  When anything would be
    recorded: the account's risk ratio before (at the marks of now) and how many of its
    pending events the marks recorded (the rest are the sweep's); else None.  The ratio
    before is computed only for an account that will be changed (the cost of the screen)."""
    acct.check_time(at)
    before: tuple[Decimal | None] | None = None
    final = steps[-1][2]
    if acct.mode == UNIFIED and (acct.positions or acct.upl_liability):  # as the sweep's unit of work takes it up
        ratio = shown_ratio(acct.margin(steps[0][1]).risk_ratio)
        if mark_moved(acct, final, at):
            before = (ratio,)
    by_marks = acct.pending_count
    if needs_sweep(acct, final):
        before = before or (shown_ratio(acct.margin(steps[0][1]).risk_ratio),)
        sweep_account(acct, final, at)
    if not acct.pending_count:
        return None
    assert before is not None
    return before[0], by_marks


@dataclass
class Row:
    account: str
    risk_ratio_before: Decimal | None
    risk_ratio_after: Decimal | None = None
    liquidated: bool = False
    forced_repayments: dict[str, Decimal] = field(default_factory=dict)
    bad_debt: dict[str, Decimal] = field(default_factory=dict)

    def take(self, events: Iterable[Any]) -> None:
        """What the sweep's events on the copy say: liquidation, repayments, bad debt."""
        for e in events:
            name = type(e).__name__
            if name == "LiquidationStarted":
                self.liquidated = True
            elif name == "Repaid":
                self.forced_repayments[e.currency] = self.forced_repayments.get(e.currency, ZERO) + e.amount
            elif name == "BadDebtWrittenOff":
                self.bad_debt[e.currency] = self.bad_debt.get(e.currency, ZERO) + e.amount

    def as_dict(self) -> dict[str, Any]:
        return {"account": self.account, "risk_ratio_before": self.risk_ratio_before,
                "risk_ratio_after": self.risk_ratio_after, "liquidated": self.liquidated,
                "forced_repayments": dict(sorted(self.forced_repayments.items())),
                "bad_debt": dict(sorted(self.bad_debt.items()))}


@dataclass
class StressRun:
    at: datetime
    as_of: datetime | None
    shocks: list[Shock]
    rows: dict[str, Row] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    insurance_fund: dict[str, Decimal] = field(default_factory=dict)  # the book's balance before
    accounts: int = 0  # candidates examined

    def totals(self) -> dict[str, Any]:
        bad_debt: dict[str, Decimal] = {}
        for row in self.rows.values():
            for c, v in row.bad_debt.items():
                bad_debt[c] = bad_debt.get(c, ZERO) + v
        fund = {c: self.insurance_fund.get(c, ZERO) - bad_debt.get(c, ZERO)
                for c in sorted(set(self.insurance_fund) | set(bad_debt))}
        return {"accounts_liquidated": sum(1 for r in self.rows.values() if r.liquidated),
                "bad_debt": dict(sorted(bad_debt.items())), "insurance_fund_after": fund}


class Source:
    """The accounts, indexes and platform totals now (``as_of`` None) or at ``as_of``."""

    def __init__(self, app: LedgerApp, as_of: datetime | None) -> None:
        self.app, self.as_of = app, as_of

    def platform(self) -> Platform:
        return self.app.reading(lambda: self.app.platform_at(self.as_of))

    def candidates(self, platform: Platform) -> list[str]:
        if self.as_of is None:
            return self.app.reading(lambda: candidates(self.app))
        names = {ids.INTEREST_DUE, ids.RISK_ALERTED} | {ids.holders(f"{c}-{QUOTE}") for c in platform.currencies if c != QUOTE}
        found: set[str] = set()
        for name in sorted(names):
            index = self.app.reading(lambda name=name: self.app.state_at(name, self.as_of))  # type: ignore[misc]
            if index is not None:
                found.update(index.accounts)
        return sorted(found)

    def load(self, accounts: list[str]) -> dict[str, Account]:
        keys = [ids.account(a) for a in accounts]
        if self.as_of is None:
            loaded = self.app.reading(lambda: self.app.repository.get_many(keys))  # type: ignore[attr-defined]
        else:
            loaded = {k: self.app.reading(lambda k=k: self.app.state_at(k, self.as_of)) for k in keys}  # type: ignore[misc]
        return {ids.account_name(k): v for k, v in loaded.items() if v is not None}

    def owed(self, currency: str) -> Decimal:
        return Decimal(self.app.reading(lambda: self.app.platform_owed(currency, self.as_of)))

    def insurance_fund(self) -> dict[str, Decimal]:
        """The insurance fund's book (§10: minus every bad debt written off up to the instant)."""
        topics = stored_topics(Account.BadDebtWrittenOff)
        fund: dict[str, Decimal] = {}
        start = 1
        while True:
            page = self.app.reading(lambda start=start: self.app.recorder.select_notifications(  # type: ignore[misc]
                start=start, limit=1000, topics=topics))
            for n in page:
                e = self.app.mapper.to_domain_event(n)
                if self.as_of is None or e.at <= self.as_of:
                    fund[e.currency] = fund.get(e.currency, ZERO) - e.amount
            if len(page) < 1000:
                return fund
            start = page[-1].id + 1


def run_stress(app: LedgerApp, shocks: list[Shock], at: datetime, as_of: datetime | None = None,
               progress: Callable[[int, int], None] | None = None, chunk: int = CHUNK_ACCOUNTS) -> StressRun:
    """The sweep at ``at`` (events would carry it) on the state at ``as_of`` (None: now)
    with the marks moved by ``shocks``; nothing is saved."""
    source = Source(app, as_of)
    platform = source.platform()
    shocks = shocked(platform, shocks)
    steps = steps_of(platform, shocks, at)
    final = steps[-1][2]
    run = StressRun(at, as_of, shocks, insurance_fund=source.insurance_fund())
    accounts = source.candidates(platform)
    run.accounts = len(accounts)
    limited = final.platform_limits
    owed: dict[str, dict[str, Decimal]] = {}  # L2: what each account owes of a limited currency after pass 1
    moved: dict[str, Decimal] = {}  # the change of what all accounts owe, per currency
    with fewer_collections():
        for start in range(0, len(accounts), chunk):
            part = accounts[start:start + chunk]
            for account, acct in source.load(part).items():
                pass_one(run, acct, steps, at, owed, moved, limited)
            if progress:
                progress(start + len(part), len(accounts))
        platform_pass(run, source, steps, at, owed, moved)
    return run


def change(before: dict[str, Decimal], after: dict[str, Decimal], moved: dict[str, Decimal]) -> None:
    for c in set(before) | set(after):
        delta = after.get(c, ZERO) - before.get(c, ZERO)
        if delta:
            moved[c] = moved.get(c, ZERO) + delta


def pass_one(run: StressRun, acct: Account, steps: list[Step], at: datetime, owed: dict[str, dict[str, Decimal]],
             moved: dict[str, Decimal], limited: dict[str, Decimal]) -> None:
    """One account through the new marks and pass 1; a row if anything would be recorded."""
    if acct.mode != UNIFIED:
        return
    liabilities = acct.liabilities()
    try:
        changed = replay_pass_one(acct, steps, at)
        if changed is not None:
            row = Row(acct.account, changed[0], shown_ratio(acct.margin(steps[-1][2]).risk_ratio))
            row.take(acct._pending_events[changed[1]:])
    except LedgerError as error:  # as the sweep: later events than T, or a price missing
        run.skipped.append({"account": acct.account, **error.as_dict()})
        return
    if changed is not None:
        change(liabilities, acct.liabilities(), moved)
        run.rows[acct.account] = row
    owes = {c: v for c, v in acct.liabilities().items() if c in limited}
    if owes:
        owed[acct.account] = owes


def platform_pass(run: StressRun, source: Source, steps: list[Step], at: datetime,
                  owed: dict[str, dict[str, Decimal]], moved: dict[str, Decimal]) -> None:
    """L2 as ``workers.sweep.platform_pass``: per currency over its limit, the largest
    borrowers (after pass 1) repay first, the total re-read before each."""
    final = steps[-1][2]
    taken: dict[str, tuple[Account, Decimal | None]] = {}  # borrowers L2 moved: their copies, ratio before
    for currency, limit in sorted(final.platform_limits.items()):
        total = source.owed(currency) + moved.get(currency, ZERO)
        if total <= limit:
            continue
        for account in sorted((a for a in owed if owed[a].get(currency)), key=lambda a: (-owed[a][currency], a)):
            excess = total - limit
            if excess <= 0:
                break
            if account in taken:
                acct, before_ratio = taken[account]
            else:
                acct = source.load([account])[account]
                before_ratio = shown_ratio(acct.margin(steps[0][1]).risk_ratio)
                replay_pass_one(acct, steps, at)  # as pass 1 left it (it did not fail there)
            liabilities = acct.liabilities()
            mark = acct.pending_count
            repaid = platform_excess(acct, currency, excess, final, at, Actions(account))
            if not repaid:
                continue
            taken[account] = (acct, before_ratio)
            change(liabilities, acct.liabilities(), moved)
            total -= repaid
            row = run.rows.get(account) or run.rows.setdefault(account, Row(account, before_ratio))
            row.take(acct._pending_events[mark:])
            row.risk_ratio_after = shown_ratio(acct.margin(final).risk_ratio)
