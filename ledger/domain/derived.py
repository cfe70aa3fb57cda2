"""The UPL-generated liability, derived where a rule reads it (B1, I1/I2, R1; issue 15).

A price tick books nothing on the accounts.  The figure is ``margin.upl_generated`` of the
account's positions, its unified USDT cash and the mark in force; it is booked (a
``Borrowed`` futures_upl, tagged, or a ``Repaid`` futures_gain of the tag only) at a rule
instant, when a command, the interest run or the sweep takes the account up (``mark_upl``),
so every rule that was written against booked liabilities reads the figure at that instant.
Between rule instants the books hold it as of the last one; views show it at the mark in
force (``ledger.read.views.at_mark``), and interest at a top of an hour H reads it at the
mark in force at H from ``upl_inputs``: per uncharged hour, the positions and cash the
figure needs, as they stood at its end.  A mixin of ``Account``: pure state and arithmetic, no I/O.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from ledger.domain.errors import LedgerError
from ledger.domain.margin import Position, total_upl, upl_generated
from ledger.domain.money import ZERO
from ledger.domain.platform import QUOTE, Platform
from ledger.domain.times import ceil_hour

UNIFIED = "unified"


class DerivedUpl:
    # the Account's state this reads (declared here for readers and type checkers)
    mode: str
    positions: dict[str, list[Decimal]]
    wallets: dict[str, dict[str, Decimal]]
    upl_liability: dict[str, Decimal]
    interest_due: dict[str, datetime]
    upl_inputs: list[list[Any]]
    closed_until: datetime | None
    last_at: datetime

    def real_quote_cash(self) -> Decimal:
        """Unified USDT cash less the UPL-generated liability booked (cash a tag brought in)."""
        return self.wallets.get(UNIFIED, {}).get(QUOTE, ZERO) - self.upl_liability.get(QUOTE, ZERO)

    def derived_upl(self, platform: Platform) -> Decimal:
        """B1: the UPL-generated liability at ``platform``'s marks (0 without positions)."""
        if self.mode != UNIFIED or not self.positions:
            return ZERO
        upl = total_upl([Position(s, q, e) for s, (q, e) in sorted(self.positions.items())], platform)
        return upl_generated(upl, self.real_quote_cash(), platform.precision(QUOTE))

    def mark_upl(self, platform: Platform, at: datetime) -> bool:
        """Book the UPL-generated liability to the derived figure at ``at`` (a rule instant):
        a tagged Borrowed for a rise, a Repaid of the tag only for a fall (R1 as issue 15
        reads it: an unrealised gain lowers only the liability it created).  Nothing when the
        account cannot take an event at ``at`` (T1, I6) or a mark is missing; True if booked."""
        booked = self.upl_liability.get(QUOTE, ZERO)
        if self.mode != UNIFIED or not (self.positions or booked):
            return False
        if at < self.last_at or (self.closed_until is not None and at <= self.closed_until):
            return False
        try:
            target = self.derived_upl(platform)
        except LedgerError:
            return False  # no price: the command itself says so if it needs one
        if target > booked:
            self.borrowed(QUOTE, target - booked, "futures_upl", True, at)  # type: ignore[attr-defined]
        elif target < booked:
            lifted = booked - target
            self.repaid(QUOTE, lifted, "futures_gain", lifted, ZERO, lifted, at)  # type: ignore[attr-defined]
        return target != booked

    # --- what interest at a top of an hour reads (I1, I2) ------------------------------------
    def _touch(self, at: datetime) -> None:
        """After every event: its instant, and for a unified futures holder the inputs of the
        derived figure at the end of the hour (H − 1 h, H] it falls in (one entry per hour:
        a later change of the same hour replaces it).  Holding a position makes USDT due for
        interest from that hour (the figure may be owed at any top of an hour)."""
        self.last_at = at
        if self.mode != UNIFIED or not (self.positions or self.upl_inputs):
            return
        entry = [at, {s: list(v) for s, v in sorted(self.positions.items())}, self.real_quote_cash()]
        if self.upl_inputs and ceil_hour(self.upl_inputs[-1][0]) == ceil_hour(at):
            self.upl_inputs[-1] = entry
        else:
            self.upl_inputs.append(entry)
        if self.positions and QUOTE not in self.interest_due:
            self.interest_due[QUOTE] = ceil_hour(at)

    def inputs_at(self, hour: datetime) -> list[Any] | None:
        """The entry in force at ``hour`` (the last at or before it), None if none is kept."""
        return next((e for e in reversed(self.upl_inputs) if e[0] <= hour), None)

    def next_inputs_after(self, hour: datetime) -> datetime | None:
        """The first instant after ``hour`` at which the account holds positions (a change)."""
        return next((e[0] for e in self.upl_inputs if e[0] > hour and e[1]), None)

    def derived_upl_at(self, hour: datetime, then: Platform) -> Decimal | None:
        """I1/I2: the figure at the top of ``hour`` with ``then``, the platform in force at it;
        None when no inputs are kept for it (history from before issue 15: the booked tag
        stands)."""
        entry = self.inputs_at(hour)
        if entry is None:
            return None
        _, positions, cash = entry
        if not positions:
            return ZERO
        upl = total_upl([Position(s, q, e) for s, (q, e) in sorted(positions.items())], then)
        return upl_generated(upl, cash, then.precision(QUOTE))

    def trim_inputs(self, hour: datetime) -> None:
        """Hours up to ``hour`` are charged: keep the entry in force at ``hour`` (later hours
        still read it) and the later ones; none at all once no position is held."""
        kept = [e for e in self.upl_inputs if e[0] > hour]
        last = self.inputs_at(hour)
        if last is not None and last[1]:
            kept.insert(0, last)
        self.upl_inputs = kept
