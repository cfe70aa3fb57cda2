"""The Account aggregate: modes, wallets, orders, positions and liabilities (M, W, O, B, R).

Command methods check every guard first and only then trigger decorated events, so a
rejected command leaves the aggregate untouched.  Events carry their results (deltas,
resulting positions) so that replay is plain arithmetic.  Margin numbers come from
``ledger.domain.margin``; parameters and prices from the ``Platform`` passed in.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from eventsourcing.domain import event

from ledger.domain import ids
from ledger.domain.base import LedgerAggregate
from ledger.domain.derived import DerivedUpl
from ledger.domain.errors import LedgerError
from ledger.domain.margin import (
    Margin, MarginState, Position, less_unrealized_loss, margin, margin_after, order_margin, total_upl,
)
from ledger.domain.money import ZERO, fmt, round_down, round_up
from ledger.domain.platform import QUOTE, Platform
from ledger.domain.times import HOUR, ceil_hour

CLASSIC, UNIFIED = "classic", "unified"


WALLETS = {CLASSIC: ("spot", "futures"), UNIFIED: ("unified",)}
TRADING_WALLET = {CLASSIC: "spot", UNIFIED: "unified"}


class Account(DerivedUpl, LedgerAggregate):
    @staticmethod
    def create_id(account: str, **_: Any) -> str:
        return ids.account(account)

    @event("AccountOpened")
    def __init__(self, account: str, parent: str | None, vip_level: int, at: datetime) -> None:
        self.account = account
        self.parent = parent
        self.vip_level = vip_level
        self.mode = CLASSIC
        self.whitelisted = False
        self.risk_assessment: dict[str, Any] | None = None
        self.activated = False
        self.api_keys: dict[str, dict[str, Any]] = {}
        self.wallets: dict[str, dict[str, Decimal]] = {"spot": {}, "futures": {}}
        self.principal: dict[str, Decimal] = {}  # borrowed, including the UPL-generated part
        self.interest: dict[str, Decimal] = {}  # capitalised interest (I4)
        self.upl_liability: dict[str, Decimal] = {}  # UPL-generated part of principal (B1)
        self.orders: dict[str, dict[str, Any]] = {}
        # lists, not tuples, in the state: a snapshot (JSON) gives back lists
        self.positions: dict[str, list[Decimal]] = {}  # symbol -> [qty, entry]
        # I1: per currency, the first hour not yet charged at which something may be owed,
        # and the liability changes since then (at, currency, liability delta, UPL-tag delta),
        # one entry per currency and hour: the changes of one hour are summed (_log_liability)
        self.interest_due: dict[str, datetime] = {}
        self.liability_log: list[list[Any]] = []  # [at, currency, delta, upl_delta]
        self.closed_until: datetime | None = None  # I6: the last hour charged or settled
        self.alerted = False  # L4: above the alert level at the last sweep
        self.upl_inputs: list[list[Any]] = []  # I1/I2: what the derived UPL liability reads at H (DerivedUpl)
        self.last_at = at

    # --- reading -----------------------------------------------------------------------
    @property
    def is_master(self) -> bool:
        return self.parent is None

    @property
    def trading_wallet(self) -> str:
        return TRADING_WALLET[self.mode]

    def cash(self, currency: str, wallet: str | None = None) -> Decimal:
        return self.wallets.get(wallet or self.trading_wallet, {}).get(currency, ZERO)

    def liability(self, currency: str) -> Decimal:
        return self.principal.get(currency, ZERO) + self.interest.get(currency, ZERO)

    def liabilities(self) -> dict[str, Decimal]:
        names = set(self.principal) | set(self.interest)
        return {c: self.liability(c) for c in sorted(names) if self.liability(c)}

    def holds(self, currency: str, wallet: str | None = None) -> Decimal:
        wallet = wallet or self.trading_wallet
        return sum(
            (o["hold"] for o in self.orders.values()
             if o["hold_currency"] == currency and o["wallet"] == wallet),
            ZERO,
        )

    def position_list(self) -> list[Position]:
        return [Position(s, q, e) for s, (q, e) in sorted(self.positions.items())]

    def margin_state(self) -> MarginState:
        return MarginState(self.wallets.get("unified", {}), self.liabilities(), self.position_list())

    def margin(self, platform: Platform) -> Margin:
        return margin(self.margin_state(), platform)

    def upl(self, platform: Platform) -> Decimal:
        return total_upl(self.position_list(), platform)

    def balance(self, currency: str, platform: Platform) -> Decimal:
        """What a unified currency balance can pay: cash, and for USDT + negative UPL (W4)."""
        cash = self.cash(currency)
        if currency == QUOTE and self.mode == UNIFIED and self.positions:
            cash = less_unrealized_loss(cash, self.upl(platform))
        return cash

    def available(self, currency: str, platform: Platform, wallet: str | None = None) -> Decimal:
        """W4: cash − holds of open orders (+ negative UPL for unified USDT)."""
        wallet = wallet or self.trading_wallet
        if wallet == "unified":
            return self.balance(currency, platform) - self.holds(currency, wallet)
        return self.cash(currency, wallet) - self.holds(currency, wallet)

    def payable(self, currency: str, platform: Platform) -> Decimal:
        """What the account can pay in ``currency`` now (interest I4, forced repayment L1-L3):
        its W4 available balance at the currency's precision, rounded down, never below 0."""
        return max(ZERO, round_down(self.available(currency, platform), platform.precision(currency)))

    def has_negative_balance(self) -> bool:
        return any(v < 0 for w in self.wallets.values() for v in w.values())

    def check_wallet(self, wallet: str | None) -> str:
        wallet = wallet or self.trading_wallet
        if wallet not in WALLETS[self.mode]:
            raise LedgerError(
                "unknown_wallet", f"a {self.mode} account has no {wallet} wallet"
            )
        return wallet

    def check_time(self, at: datetime) -> None:
        """T1: per account, `at` never goes back; I6: history up to a charged hour is closed."""
        if at < self.last_at:
            raise LedgerError(
                "out_of_order",
                f"account {self.account} has events up to {self.last_at.isoformat()}; "
                f"{at.isoformat()} is earlier",
            )
        if self.closed_until is not None and at <= self.closed_until:
            raise LedgerError(
                "out_of_order",
                f"interest for {self.closed_until.isoformat()} is charged on {self.account}; "
                f"history up to that hour is closed",
            )

    def check_unified(self) -> None:
        if self.mode != UNIFIED:
            raise LedgerError("not_unified", f"account {self.account} is in classic mode")

    # --- accounts and modes (M3-M9) ----------------------------------------------------------
    def require_master(self, action: str) -> None:
        if not self.is_master:
            raise LedgerError("not_master", f"{self.account} is a sub-account; only a master may {action}")

    @event("AccountWhitelisted")
    def whitelist(self, at: datetime) -> None:
        self.whitelisted = True
        self._touch(at)

    @event("RiskAssessmentCompleted")
    def complete_risk_assessment(self, score: int, agreements_version: str, at: datetime) -> None:
        self.risk_assessment = {"score": score, "agreements_version": agreements_version}
        self._touch(at)

    def check_gate(self, platform: Platform) -> None:
        """M3, M4 for a master: whitelisted (while required), risk assessment done."""
        if platform.flags["whitelist_required"] and not self.whitelisted:
            raise LedgerError("not_whitelisted", f"{self.account} is not on the Unified beta whitelist")
        if self.risk_assessment is None:
            raise LedgerError("risk_assessment_required", f"{self.account} must complete the risk assessment first")

    @event("UnifiedActivated")
    def _activated(self, at: datetime) -> None:
        self.activated = True
        self._touch(at)

    def activate_unified(self, platform: Platform, at: datetime) -> None:
        """M7: the master passes the gate but stays classic; its subs may go unified."""
        self.require_master("activate Unified mode")
        self.check_gate(platform)
        if self.activated:
            raise LedgerError("already_activated", f"{self.account} has already activated Unified mode")
        self._activated(at)

    def check_switch(self, mode: str, platform: Platform, master: "Account | None") -> None:
        """M5, in the spec's order: eligibility, already_in_mode, then the prerequisites."""
        if mode == UNIFIED:
            if master is None:
                self.check_gate(platform)
            else:
                if platform.flags["whitelist_required"] and not master.whitelisted:
                    raise LedgerError("not_whitelisted", f"master {master.account} is not on the Unified beta whitelist")
                if not (master.mode == UNIFIED or master.activated):
                    raise LedgerError("master_not_eligible", f"master {master.account} has neither upgraded nor activated Unified mode")
        if self.mode == mode:
            raise LedgerError("already_in_mode", f"{self.account} is already in {mode} mode")
        if self.positions:
            raise LedgerError("open_positions", f"{self.account} has open futures positions: {', '.join(sorted(self.positions))}")
        if self.orders:
            raise LedgerError("pending_orders", f"{self.account} has open orders: {', '.join(sorted(self.orders))}")
        if self.liabilities() or self.has_negative_balance():
            raise LedgerError("outstanding_liabilities", f"{self.account} has liabilities or a negative balance")

    def switch_mode(self, mode: str, platform: Platform, master: "Account | None", at: datetime) -> None:
        self.check_switch(mode, platform, master)
        target = TRADING_WALLET[mode]
        moves = [
            {"currency": c, "from_wallet": w, "to_wallet": target, "amount": amount}
            for w in WALLETS[self.mode] for c, amount in sorted(self.wallets.get(w, {}).items())
            if amount
        ]
        self._mode_switched(self.mode, mode, moves, at)

    @event("ModeSwitched")
    def _mode_switched(self, from_mode: str, to_mode: str, moves: list[dict[str, Any]], at: datetime) -> None:
        """M6: one event moves every wallet, so nobody can see a half-switched account."""
        self.wallets = {w: {} for w in WALLETS[to_mode]}
        target = self.wallets[TRADING_WALLET[to_mode]]
        for move in moves:
            target[move["currency"]] = target.get(move["currency"], ZERO) + move["amount"]
        self.mode = to_mode
        self._touch(at)

    @event("ApiKeyCreated")
    def create_api_key(self, key_id: str, unified: bool, permissions: list[str], at: datetime) -> None:
        self.api_keys[key_id] = {"unified": unified, "permissions": list(permissions)}
        self._touch(at)

    # --- cash movements (W2, W3) ---------------------------------------------------------
    def _move(self, wallet: str, currency: str, delta: Decimal) -> None:
        balances = self.wallets.setdefault(wallet, {})
        value = balances.get(currency, ZERO) + delta
        if value:
            balances[currency] = value
        else:
            balances.pop(currency, None)

    @event("Deposited")
    def deposited(self, currency: str, amount: Decimal, wallet: str, at: datetime) -> None:
        self._move(wallet, currency, amount)
        self._touch(at)

    @event("Withdrawn")
    def withdrawn(self, currency: str, amount: Decimal, wallet: str, at: datetime) -> None:
        self._move(wallet, currency, -amount)
        self._touch(at)

    @event("TransferredOut")
    def transferred_out(self, to_account: str, currency: str, amount: Decimal, wallet: str, at: datetime) -> None:
        self._move(wallet, currency, -amount)
        self._touch(at)

    @event("TransferredIn")
    def transferred_in(self, from_account: str, currency: str, amount: Decimal, wallet: str, at: datetime) -> None:
        self._move(wallet, currency, amount)
        self._touch(at)

    @event("WalletTransferred")
    def wallet_transferred(self, currency: str, amount: Decimal, from_wallet: str, to_wallet: str, at: datetime) -> None:
        self._move(from_wallet, currency, -amount)
        self._move(to_wallet, currency, amount)
        self._touch(at)

    def check_can_pay_out(self, currency: str, amount: Decimal, wallet: str, platform: Platform) -> None:
        """W2: at most the available balance; in unified mode IM must stay ≤ AE."""
        available = self.available(currency, platform, wallet)
        if amount > available:
            raise LedgerError(
                "insufficient_balance",
                f"{self.account} has {fmt(available)} {currency} available in {wallet}; {fmt(amount)} asked",
            )
        if wallet == "unified" and (self.liabilities() or self.positions):
            m = margin_after(self.margin_state(), platform, cash=[(currency, -amount)])
            if m.initial_margin > m.adjusted_equity:
                raise LedgerError(
                    "insufficient_margin",
                    f"after paying out {fmt(amount)} {currency}, {self.account}'s initial margin "
                    f"{fmt(m.initial_margin)} would exceed its adjusted equity {fmt(m.adjusted_equity)}",
                )

    # --- liabilities (B1, B3, R1, R3) ------------------------------------------------------
    @event("Borrowed")
    def borrowed(self, currency: str, amount: Decimal, source: str, upl_generated: bool, at: datetime) -> None:
        self.principal[currency] = self.principal.get(currency, ZERO) + amount
        if upl_generated:
            self.upl_liability[currency] = self.upl_liability.get(currency, ZERO) + amount
        self._move("unified", currency, amount)
        self._log_liability(at, currency, amount, amount if upl_generated else ZERO)
        self._touch(at)

    @event("Repaid")
    def repaid(
        self, currency: str, amount: Decimal, source: str,
        principal: Decimal, interest: Decimal, upl_generated: Decimal, at: datetime,
    ) -> None:
        assert amount == principal + interest and upl_generated <= principal
        self._reduce(self.principal, currency, principal)
        self._reduce(self.interest, currency, interest)
        self._reduce(self.upl_liability, currency, upl_generated)
        self._move("unified", currency, -amount)
        self._log_liability(at, currency, -amount, -upl_generated)
        self._touch(at)

    @event("LiabilityReclassified")
    def reclassified(self, currency: str, amount: Decimal, at: datetime) -> None:
        """The UPL-generated tag is lifted from ``amount`` once the loss is no longer unrealised."""
        self._reduce(self.upl_liability, currency, amount)
        self._log_liability(at, currency, ZERO, -amount)
        self._touch(at)

    # --- the sweep: forced repayment and liquidation (L1-L4) --------------------------------
    @event("AutoSwapped")
    def auto_swapped(
        self, from_currency: str, from_amount: Decimal, to_currency: str, to_amount: Decimal,
        from_price: Decimal, to_price: Decimal, reason: str, at: datetime,
    ) -> None:
        """L1-L3: the swap desk buys ``from_amount`` at mark and pays ``to_amount``."""
        self._move("unified", from_currency, -from_amount)
        self._move("unified", to_currency, to_amount)
        self._touch(at)

    @event("LiquidationStarted")
    def liquidation_started(
        self, risk_ratio: Decimal | None, adjusted_equity: Decimal, maintenance_margin: Decimal, at: datetime
    ) -> None:
        self._touch(at)

    @event("PositionLiquidated")
    def position_liquidated(self, symbol: str, qty: Decimal, price: Decimal, realized_pnl: Decimal, at: datetime) -> None:
        """L3: a futures position closed at mark; the realised P&L goes to USDT cash."""
        del self.positions[symbol]
        self._move("unified", "USDT", realized_pnl)
        self._touch(at)

    @event("BadDebtWrittenOff")
    def bad_debt_written_off(
        self, currency: str, amount: Decimal, principal: Decimal, interest: Decimal,
        upl_generated: Decimal, at: datetime,
    ) -> None:
        """L3: what the assets could not cover is taken over by the insurance fund."""
        self._reduce(self.principal, currency, principal)
        self._reduce(self.interest, currency, interest)
        self._reduce(self.upl_liability, currency, upl_generated)
        self._log_liability(at, currency, -amount, -upl_generated)
        self._touch(at)

    @event("LiquidationCompleted")
    def liquidation_completed(self, risk_ratio: Decimal | None, bad_debt: dict[str, Decimal], at: datetime) -> None:
        self._touch(at)

    @event("RiskAlertRaised")
    def risk_alert_raised(self, risk_ratio: Decimal | None, at: datetime) -> None:
        self.alerted = True
        self._touch(at)

    @event("RiskAlertCleared")
    def risk_alert_cleared(self, risk_ratio: Decimal, at: datetime) -> None:
        self.alerted = False
        self._touch(at)

    def _log_liability(self, at: datetime, currency: str, delta: Decimal, upl_delta: Decimal) -> None:
        """I1: remember changes while an hour may still be charged on them.  Interest reads
        the log only at the top of an hour (``owed_at``, ``next_change_after``), and every
        change in (H − 1 h, H] is on the same side of every top of an hour, so the changes of
        one currency in one such hour are summed into that hour's first entry (kept at its
        first change's instant, even when they sum to zero): the log holds at most one entry
        per currency and uncharged hour, however many changes (a price tick each) there were."""
        if currency not in self.interest_due:
            if not self.liability(currency):
                return
            self.interest_due[currency] = ceil_hour(at)
        self._add_change(at, currency, delta, upl_delta)

    def from_snapshot_state(self) -> None:
        """Snapshots taken before the liability log summed each hour's changes hold one
        entry per change: they are summed the same way, so an account loads from an old
        snapshot exactly as its events replay now."""
        log, self.liability_log = self.liability_log, []
        for at, currency, delta, upl_delta in log:
            self._add_change(at, currency, delta, upl_delta)
        self.__dict__.setdefault("upl_inputs", [])  # snapshots from before issue 15's derived liability

    def _add_change(self, at: datetime, currency: str, delta: Decimal, upl_delta: Decimal) -> None:
        last = next((e for e in reversed(self.liability_log) if e[1] == currency), None)
        if last is not None and ceil_hour(last[0]) == ceil_hour(at):
            last[2] += delta
            last[3] += upl_delta
        else:
            self.liability_log.append([at, currency, delta, upl_delta])

    def owed_at(self, currency: str, hour: datetime) -> tuple[Decimal, Decimal]:
        """I1: (liability, UPL-generated part) at the top of ``hour`` (a top of an hour: the
        log sums each hour's changes): today's, less every logged change after it.  Interest
        of earlier hours is in today's liability already."""
        owed, upl = self.liability(currency), self.upl_liability.get(currency, ZERO)
        for at, c, delta, upl_delta in reversed(self.liability_log):
            if at <= hour:
                break
            if c == currency:
                owed, upl = owed - delta, upl - upl_delta
        return owed, upl

    def next_change_after(self, currency: str, hour: datetime) -> datetime | None:
        """The first logged change after ``hour``; for USDT also the first change of what the
        derived UPL-generated liability reads (positions, cash), which may make it owed."""
        logged = next((at for at, c, _, _ in self.liability_log if c == currency and at > hour), None)
        if currency != QUOTE:
            return logged
        inputs = self.next_inputs_after(hour)
        return min((t for t in (logged, inputs) if t is not None), default=None)

    @event("InterestCharged")
    def interest_charged(
        self, currency: str, hour: datetime, liability: Decimal, interest_free: Decimal,
        rate: Decimal, interest: Decimal, paid: Decimal, capitalized: Decimal, at: datetime,
    ) -> None:
        """I4: paid from the balance, the rest capitalised; hours up to ``hour`` are closed."""
        assert paid + capitalized == interest
        self._move(self.trading_wallet, currency, -paid)
        if capitalized:
            self.interest[currency] = self.interest.get(currency, ZERO) + capitalized
        self._close_hours(currency, hour)
        self.interest_due[currency] = hour + HOUR
        self._touch(at)

    @event("InterestSettled")
    def interest_settled(self, currency: str, through_hour: datetime, at: datetime) -> None:
        """Nothing more is owed in ``currency`` and no later hour can be charged on it."""
        self._close_hours(currency, through_hour)
        self.interest_due.pop(currency, None)
        self._touch(at)

    def _close_hours(self, currency: str, hour: datetime) -> None:
        self.liability_log = [e for e in self.liability_log if e[1] != currency or e[0] > hour]
        if currency == QUOTE:
            self.trim_inputs(hour)
        if self.closed_until is None or hour > self.closed_until:
            self.closed_until = hour

    @staticmethod
    def _reduce(book: dict[str, Decimal], currency: str, amount: Decimal) -> None:
        value = book.get(currency, ZERO) - amount
        assert value >= 0, "a liability can never go negative"
        if value:
            book[currency] = value
        else:
            book.pop(currency, None)

    def split(self, currency: str, amount: Decimal) -> tuple[Decimal, Decimal, Decimal]:
        """R1 order: (principal, capitalised interest, UPL-generated part of the principal)
        of ``amount`` taken off the liability: UPL-generated first, then interest, then the rest."""
        upl_part = min(amount, self.upl_liability.get(currency, ZERO))
        interest = min(amount - upl_part, self.interest.get(currency, ZERO))
        return amount - interest, interest, upl_part

    def repay(self, currency: str, amount: Decimal, source: str, at: datetime) -> Decimal:
        """R1/R3: repay from cash, never more than owed."""
        amount = min(amount, self.liability(currency))
        if amount <= 0:
            return ZERO
        principal, interest, upl_part = self.split(currency, amount)
        self.repaid(currency, amount, source, principal, interest, upl_part, at)
        return amount

    def write_off(self, currency: str, at: datetime) -> Decimal:
        """L3: the whole remaining liability goes to the insurance fund."""
        amount = self.liability(currency)
        if amount > 0:
            self.bad_debt_written_off(currency, amount, *self.split(currency, amount), at)
        return amount

    def auto_repay(self, currency: str, inflow: Decimal, source: str, platform: Platform, at: datetime) -> None:
        """R1: what came in repays the currency's liability, never beyond the cash it left."""
        if self.mode != UNIFIED or not self.liability(currency):
            return
        amount = round_down(min(inflow, self.balance(currency, platform)), platform.precision(currency))
        self.repay(currency, amount, source, at)

    def cover_shortfall(self, currency: str, platform: Platform, at: datetime, source: str) -> Decimal:
        """B1: borrow exactly what takes the balance back to zero."""
        shortfall = -self.balance(currency, platform)
        if shortfall <= 0:
            return ZERO
        amount = round_up(shortfall, platform.precision(currency))
        self.borrowed(currency, amount, source, False, at)
        return amount

    def settle_futures(self, platform: Platform, at: datetime, gain: Decimal, fee: Decimal = ZERO) -> None:
        """B1 / R1 for USDT after UPL moved or a futures fill: borrow a shortfall (source fee
        for the fee's part, futures_upl for a futures loss, tagged UPL-generated only for the
        part covering unrealised loss), repay from a gain, and keep the tag ≤ the loss."""
        if self.mode != UNIFIED:
            return
        places = platform.precision(QUOTE)
        upl = self.upl(platform)
        shortfall = round_up(-self.balance(QUOTE, platform), places)
        if shortfall > 0:
            fee_part = min(fee, shortfall)
            room = max(ZERO, round_up(-min(upl, ZERO), places) - self.upl_liability.get(QUOTE, ZERO))
            tagged = min(shortfall - fee_part, room)
            loss_part = shortfall - fee_part - tagged
            for amount, source, tag in ((fee_part, "fee", False), (tagged, "futures_upl", True),
                                        (loss_part, "futures_upl", False)):
                if amount > 0:
                    self.borrowed(QUOTE, amount, source, tag, at)
        elif gain > 0:
            self.auto_repay(QUOTE, gain, "futures_gain", platform, at)
        excess = self.upl_liability.get(QUOTE, ZERO) - round_up(max(ZERO, -upl), places)
        if excess > 0:
            self.reclassified(QUOTE, excess, at)

    # --- orders and positions (O1-O3) ----------------------------------------------------
    @event("OrderPlaced")
    def order_placed(
        self, order_id: str, market: str, symbol: str, side: str, qty: Decimal, price: Decimal,
        wallet: str, hold_currency: str, hold: Decimal, at: datetime,
    ) -> None:
        self.orders[order_id] = {
            "order_id": order_id, "market": market, "symbol": symbol, "side": side,
            "qty": qty, "filled_qty": ZERO, "price": price, "wallet": wallet,
            "hold_currency": hold_currency, "hold": hold,
        }
        self._touch(at)

    @event("OrderCancelled")
    def order_cancelled(self, order_id: str, released: Decimal, at: datetime) -> None:
        del self.orders[order_id]
        self._touch(at)

    @event("OrderFilled")
    def order_filled(
        self, order_id: str, qty: Decimal, price: Decimal, fee: Decimal,
        cash: dict[str, Decimal], released: Decimal, position: list[Decimal] | None,
        realized_pnl: Decimal, at: datetime,
    ) -> None:
        order = self.orders[order_id]
        for currency, delta in cash.items():
            self._move(order["wallet"], currency, delta)
        order["filled_qty"] += qty
        order["hold"] -= released
        if order["filled_qty"] == order["qty"]:
            del self.orders[order_id]
        if position is not None:
            qty_after, entry = position
            if qty_after:
                self.positions[order["symbol"]] = [qty_after, entry]
            else:
                self.positions.pop(order["symbol"], None)
        self._touch(at)

    def open_order(self, order_id: str) -> dict[str, Any]:
        try:
            return self.orders[order_id]
        except KeyError:
            raise LedgerError("unknown_order", f"{self.account} has no open order {order_id}") from None

    def cancel_order(self, order_id: str, at: datetime) -> None:
        order = self.open_order(order_id)
        self.order_cancelled(order_id, order["hold"], at)

    def futures_order_margin(self, platform: Platform) -> Decimal:
        """IM that open futures orders would need, counted against free margin (O1)."""
        total = ZERO
        for o in self.orders.values():
            if o["market"] == "futures":
                qty, _ = self.positions.get(o["symbol"], (ZERO, ZERO))
                total += order_margin(platform, o["symbol"], qty, o["side"], o["qty"] - o["filled_qty"], o["price"])
        return total
