"""Property tests: random command sequences against the ledger's invariants.

Hypothesis draws sequences of commands — accounts (a master with two subs, another master),
whitelist / risk assessment / mode switches, deposits, withdrawals, transfers, mark prices
for BTC and ETH, spot and futures orders and (partial) fills at random prices with random
fees, cancels, borrows and repays, and deliberately invalid ones — and applies them in small
batches.  After every batch (every command when the batch has one) it checks:

P1  T3: a rejected command records nothing: a rejected single command leaves the
    recorder's max notification id and every account's state as they were; in a larger
    batch the account/platform events stored are exactly those the accepted commands
    answered with, and the cross-account indexes agree with the accounts.
P2  Replay: every aggregate as the saving application held it equals the aggregate a fresh
    ``LedgerApp`` on the same store rebuilds from the stored events.
P3  Liabilities (principal, interest, upl_liability) are never negative, after every single
    stored event; upl_liability ≤ principal.
P4  R1/R3: a ``Repaid`` never exceeds what was owed just before it, principal + interest ==
    amount, and the order is UPL-generated part, then interest, then principal.
P5  B1: in unified mode cash of every currency is ≥ 0, and the USDT balance
    cash + min(UPL, 0) is ≥ 0.
P6  F1/F6: NAV == Σ price_c × (cash_c − liab_c) + UPL exactly, equity per currency as F1;
    each ``Borrowed`` / ``Repaid`` moves cash and liability by the same amount (equity of
    the currency unchanged).  After an accepted manual borrow or payout IM ≤ AE (B2, W2).
P7  B2/O2: a liability above the personal quota was pushed there only by a fill or a
    set_price (the facts that may borrow past the limit); all accounts together likewise
    for the platform limit.
P8  B2/B3: borrowing exactly the ``borrowable`` the account view shows is accepted; one
    tick (or one unit) more is refused with ``borrow_limit_exceeded`` /
    ``platform_limit_exceeded``.
P9  W5: in classic mode no wallet balance is ever negative (tests/test_classic_cash.py
    hunts for it with classic accounts only).

Run on SQLite and on PostgreSQL (one fresh store per example).
"""
from __future__ import annotations

import copy
import os
import tempfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ledger.domain.account import UNIFIED, Account
from ledger.service.app import LedgerApp
from ledger.domain.errors import LedgerError
from ledger.domain.margin import base_of
from ledger.read.views import at_mark
from tests import pg
from tests.helpers import T0, Ledger

D = Decimal
ZERO = D(0)
USDT = "USDT"
MASTER, SUB1, SUB2, OTHER, GHOST = "m1", "s1", "s2", "m2", "ghost"
ACCOUNTS = (MASTER, SUB1, SUB2, OTHER)
CURRENCIES = ("USDT", "BTC", "ETH")
SYMBOLS = ("BTC-USDT", "ETH-USDT")
MAY_BORROW_PAST_QUOTA = {"fill_order", "set_price"}  # O2 / B1: facts, never refused
# (B1's UPL-generated borrow, booked at whatever rule instant takes the holder up since issue 15,
# is a fact too: a Borrowed with source futures_upl is never held to the quota)


def rfc(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def dec(units: int, places: int) -> str:
    return format(D(units).scaleb(-places), "f")


def state_of(agg: Any) -> dict[str, Any]:
    return copy.deepcopy({k: v for k, v in agg.__dict__.items() if k != "_pending_events"})


ACCOUNT_FIELDS = ("mode", "whitelisted", "risk_assessment", "activated", "api_keys", "wallets",
                  "principal", "interest", "upl_liability", "orders", "positions", "last_at")


def account_fields(acct: Account) -> dict[str, Any]:
    return copy.deepcopy({k: getattr(acct, k) for k in ACCOUNT_FIELDS} | {"version": acct.version})


# --- the run ---------------------------------------------------------------------------------
class Run:
    """One example: a ledger, a second application on the same store, and the checks."""

    def __init__(self, env: dict[str, str]) -> None:
        self.book = Ledger(env)
        self.fresh = LedgerApp(env=env)  # rebuilds aggregates from the store only (P2)
        self.step = 0
        self.opened: set[str] = set()
        self.saved: dict[str, dict[str, Any]] = {}
        self.order_seq = 0
        self.borrow_expect: dict[str, tuple[Decimal, Decimal]] = {}  # at -> (B2 limit shown, amount)
        self.log: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (command, result)
        app = self.book.app
        original_save = app.save

        def capturing_save(*aggs: Any, **kw: Any) -> Any:
            out = original_save(*aggs, **kw)
            for agg in aggs:
                self.saved[agg.id] = state_of(agg)
            return out

        app.save = capturing_save  # type: ignore[method-assign]

    def close(self) -> None:
        self.fresh.close()
        self.book.close()

    @property
    def app(self) -> LedgerApp:
        return self.book.app

    def next_at(self) -> str:
        self.step += 1
        return rfc(T0 + timedelta(seconds=self.step))

    def accounts(self) -> dict[str, Account]:
        return {a: self.app.account(a) for a in sorted(self.opened)}

    # --- applying --------------------------------------------------------------------------
    def apply(self, cmds: list[dict[str, Any]]) -> list[dict[str, Any]]:
        before_accounts = self.accounts()
        before_fields = {a: account_fields(x) for a, x in before_accounts.items()}
        before_platform = state_of(self.app.platform())
        before_max = self.app.recorder.max_notification_id() or 0
        self.saved = {}
        results = self.app.apply(cmds, self.book.now, self.book.latest)
        assert len(results) == len(cmds)
        self.log.extend(zip(cmds, results))
        for cmd, result in zip(cmds, results):
            event(f"{cmd['type']}: {'ok' if result['ok'] else result['error']['code']}")
            for e in result.get("events", []):
                if e["type"] in ("Borrowed", "Repaid"):
                    event(f"event {e['type']} {e.get('source')}")
                if e["type"] == "Repaid" and D(e["upl_generated"]):
                    event("event Repaid a UPL-generated part")
        for cmd, result in zip(cmds, results):
            if result["ok"] and cmd["type"] == "open_account":
                self.opened.add(cmd["account"])
            if not result["ok"]:
                assert result["error"]["code"] != "conflict", result  # one writer only
        after = self.accounts()
        self.check_t3(cmds, results, before_max, before_fields, before_platform, after)
        self.check_replay()
        self.check_events(before_accounts, after)
        self.check_quota(cmds, results, before_accounts, after)
        self.check_state(after)
        self.check_indexes(after)
        if len(cmds) == 1 and results[0]["ok"]:
            self.check_margin_after_payout(cmds[0], after)
        if len(cmds) == 1 and cmds[0]["at"] in self.borrow_expect:
            limit, amount = self.borrow_expect.pop(cmds[0]["at"])
            [result] = results
            if amount <= limit:  # B2/B3: the account view's borrowable is what borrow accepts
                assert result["ok"], f"borrow of {amount} within the shown limit {limit} refused: {result}"
            else:
                assert not result["ok"] and result["error"]["code"] in (
                    "borrow_limit_exceeded", "platform_limit_exceeded"), (
                    f"borrow of {amount} past the shown limit {limit}: {result}")
        return results

    def ok(self, cmd: dict[str, Any]) -> None:
        [result] = self.apply([cmd])
        assert result["ok"], (cmd, result)

    # --- P1: T3 --------------------------------------------------------------------------------
    def check_t3(self, cmds, results, before_max, before_fields, before_platform, after) -> None:  # type: ignore[no-untyped-def]
        recorder = self.app.recorder
        after_max = recorder.max_notification_id() or 0
        if len(cmds) == 1 and not results[0]["ok"]:
            assert after_max == before_max, f"rejected {cmds[0]} recorded something: {results[0]}"
            assert {a: account_fields(x) for a, x in after.items() if a in before_fields} == before_fields
            assert set(after) == set(before_fields)
            assert state_of(self.app.platform()) == before_platform
        # every stored account/platform event is one an accepted command answered with
        stored: Counter[tuple[str, str]] = Counter()
        if after_max > before_max:
            for n in recorder.select_notifications(start=before_max + 1, limit=after_max - before_max + 10):
                name = n.topic.rsplit(".", 1)[-1]
                if (n.originator_id.startswith("account/") or n.originator_id == "platform") \
                        and name != "PlatformInitialised":
                    stored[(n.originator_id, name)] += 1
        answered: Counter[tuple[str, str]] = Counter()
        for result in results:
            for e in result.get("events", []) if result["ok"] else []:
                key = f"account/{e['account']}" if "account" in e else "platform"
                answered[(key, e["type"])] += 1
        assert stored == answered, f"stored {stored} != answered {answered}"

    # --- P2: replay ------------------------------------------------------------------------------
    def check_replay(self) -> None:
        for key, saved in self.saved.items():
            rebuilt = self.fresh.repository.get(key)
            assert state_of(rebuilt) == saved, f"{key}: rebuilt from events differs from the saved state"

    # --- P3, P4, P6: every stored event of every account ---------------------------------------
    def check_events(self, before: dict[str, Account], after: dict[str, Account]) -> None:
        for name, acct_after in after.items():
            agg = copy.deepcopy(before.get(name))
            gt = agg.version if agg is not None else None
            for e in self.app.events.get(f"account/{name}", gt=gt):
                kind = type(e).__name__
                if kind in ("Borrowed", "Repaid"):
                    assert agg is not None and agg.mode == UNIFIED, f"{kind} on a classic account"
                    c = e.currency
                    cash0, liab0 = agg.cash(c, "unified"), agg.liability(c)
                    upl0, int0 = agg.upl_liability.get(c, ZERO), agg.interest.get(c, ZERO)
                    if kind == "Repaid":
                        assert e.amount > 0
                        assert e.amount <= liab0, f"repaid {e.amount} {c} but owed {liab0}"  # P4
                        assert e.principal + e.interest == e.amount, e.__dict__  # P4 / R3
                        assert 0 <= e.upl_generated <= e.principal
                        assert e.upl_generated == min(e.amount, upl0), "R1: UPL-generated first"
                        assert e.interest == min(e.amount - e.upl_generated, int0), "R1: then interest"
                    else:
                        assert e.amount > 0
                agg = e.mutate(agg)
                check_liabilities(agg, f"after {kind}")  # P3 after every single event
                if kind in ("Borrowed", "Repaid"):
                    dc = agg.cash(c, "unified") - cash0
                    dl = agg.liability(c) - liab0
                    sign = 1 if kind == "Borrowed" else -1
                    assert dc == dl == sign * e.amount, f"{kind}: cash moved {dc}, liability {dl}"  # P6
            assert agg is not None
            assert state_of(agg) == state_of(acct_after), f"{name}: incremental replay differs"

    # --- P7: the quota ---------------------------------------------------------------------------
    def check_quota(self, cmds, results, before: dict[str, Account], after: dict[str, Account]) -> None:  # type: ignore[no-untyped-def]
        platform = self.app.platform()
        owed = {(a, c): x.liability(c) for a, x in before.items() for c in CURRENCIES}
        vip = {a: x.vip_level for a, x in after.items()}
        for cmd, result in zip(cmds, results):
            if not result["ok"]:
                continue
            was = dict(owed)
            chosen: set[tuple[str, str]] = set()  # borrowed by other than B1's UPL booking (issue 15: at any rule instant)
            for e in result["events"]:
                if e["type"] == "Borrowed":
                    owed[(e["account"], e["currency"])] = owed.get((e["account"], e["currency"]), ZERO) + D(e["amount"])
                    if e["source"] != "futures_upl":
                        chosen.add((e["account"], e["currency"]))
                elif e["type"] == "Repaid":
                    owed[(e["account"], e["currency"])] -= D(e["amount"])
            for (a, c), value in owed.items():
                quota = platform.quota(c, vip[a])
                if value > was.get((a, c), ZERO) and value > quota and (a, c) in chosen:
                    assert cmd["type"] in MAY_BORROW_PAST_QUOTA, (
                        f"{cmd} raised {a}'s {c} liability to {value}, past its quota {quota}")
            for c in CURRENCIES:
                limit = platform.platform_limit(c)
                total = sum((v for (a, cc), v in owed.items() if cc == c), ZERO)
                total_was = sum((v for (a, cc), v in was.items() if cc == c), ZERO)
                if limit is not None and total > total_was and total > limit and any(cc == c for _, cc in chosen):
                    assert cmd["type"] in MAY_BORROW_PAST_QUOTA, (
                        f"{cmd} raised all accounts' {c} liabilities to {total}, past the platform limit {limit}")
        for a, x in after.items():
            for c in CURRENCIES:
                assert owed.get((a, c), ZERO) == x.liability(c), "answered events disagree with the state"

    # --- P3, P5, P6 on the state ------------------------------------------------------------------
    def check_state(self, after: dict[str, Account]) -> None:
        platform = self.app.platform()
        for name, booked in after.items():
            acct = at_mark(booked, platform)  # §16: the UPL-generated liability at the marks in force
            check_liabilities(acct, name)
            if acct.mode != UNIFIED:
                assert not acct.liabilities(), f"classic {name} owes {acct.liabilities()}"
                for wallet, balances in acct.wallets.items():  # P9
                    for c, v in balances.items():
                        assert v >= 0, f"classic {name}: {wallet} {c} cash {v} < 0 (W5)"
                continue
            assert set(acct.wallets) == {"unified"}
            cash = acct.wallets["unified"]
            for c, v in cash.items():
                assert v >= 0, f"{name}: unified {c} cash {v} < 0 (B1)"  # P5
            prices_known = all(
                c == USDT or c in platform.prices
                for c in set(cash) | set(acct.liabilities()) | {base_of(s) for s in acct.positions}
            )
            if not prices_known:
                continue
            upl = sum((q * (platform.price(base_of(s)) - entry) for s, (q, entry) in acct.positions.items()), ZERO)
            assert cash.get(USDT, ZERO) + min(upl, ZERO) >= 0, f"{name}: USDT balance < 0 (B1)"  # P5
            m = acct.margin(platform)
            liab = acct.liabilities()
            equity = {c: cash.get(c, ZERO) - liab.get(c, ZERO) for c in set(cash) | set(liab) | {USDT}}
            equity[USDT] += upl
            assert {c: v for c, v in m.equity.items() if v} == {c: v for c, v in equity.items() if v}  # F1
            nav = sum((platform.price(c) * (cash.get(c, ZERO) - liab.get(c, ZERO))
                       for c in set(cash) | set(liab)), ZERO) + upl
            assert m.nav == nav, f"{name}: NAV {m.nav} != {nav} (F6)"  # P6

    def check_margin_after_payout(self, cmd: dict[str, Any], after: dict[str, Account]) -> None:
        """B2 / W2: an accepted manual borrow or unified payout leaves IM ≤ AE."""
        name = {"borrow": cmd.get("account"), "withdraw": cmd.get("account"),
                "transfer": cmd.get("from_account")}.get(cmd["type"])
        if name is None or name not in after or after[name].mode != UNIFIED:
            return
        acct = after[name]
        if cmd["type"] != "borrow" and not (acct.liabilities() or acct.positions):
            return
        try:
            m = acct.margin(self.app.platform())
        except LedgerError:
            return
        assert m.initial_margin <= m.adjusted_equity, (
            f"after {cmd} IM {m.initial_margin} > AE {m.adjusted_equity}")

    def check_indexes(self, after: dict[str, Account]) -> None:
        """The cross-account indexes agree with the accounts (nothing leaked from a rejection)."""
        for c in CURRENCIES:
            total = sum((x.liability(c) for x in after.values()), ZERO)
            assert D(self.app.platform_owed(c)) == total, f"pool/{c} != Σ liabilities"
        for s in SYMBOLS:
            holders = self.app.find(f"holders/{s}")
            have = set(holders.accounts) if holders is not None else set()  # a set or a dict
            assert have == {a for a, x in after.items() if s in x.positions}, f"holders/{s} wrong"


def check_liabilities(acct: Account, where: str) -> None:
    """P3: no negative liability book; the UPL-generated part within the principal."""
    for book in (acct.principal, acct.interest, acct.upl_liability):
        for c, v in book.items():
            assert v > 0, f"{where}: liability entry {c}={v}"
    for c, v in acct.upl_liability.items():
        assert v <= acct.principal.get(c, ZERO), f"{where}: upl_liability {v} > principal {c}"


# --- drawing commands ---------------------------------------------------------------------------
def usdt_amount() -> st.SearchStrategy[str]:
    return st.one_of(st.integers(1, 2_000_000).map(lambda n: dec(n, 2)),
                     st.integers(1, 10**6).map(lambda n: dec(n, 8)))


def coin_amount() -> st.SearchStrategy[str]:
    return st.integers(1, 5 * 10**8).map(lambda n: dec(n, 8))


def amount_for(currency: str) -> st.SearchStrategy[str]:
    return usdt_amount() if currency == USDT else coin_amount()


def a_price(currency: str) -> st.SearchStrategy[str]:
    lo, hi = (1_000, 120_000) if currency == "BTC" else (50, 6_000)
    return st.integers(lo * 100, hi * 100).map(lambda n: dec(n, 2))


def near(price: Decimal) -> st.SearchStrategy[str]:
    factors = st.sampled_from(["1", "0.5", "0.8", "0.95", "0.99", "1.01", "1.05", "1.2", "2"])
    return factors.map(lambda f: format(max((price * D(f)).quantize(D("0.01")), D("0.01")), "f"))


BAD_AMOUNTS = ["0", "-5", "1.000000001", "1e3", "NaN", "", "12.5.1"]


def draw_command(data: st.DataObject, run: Run) -> dict[str, Any]:
    kind = data.draw(st.sampled_from([
        "deposit", "deposit", "withdraw", "transfer", "set_price", "set_price", "set_price",
        "place_order", "place_order", "place_order", "place_order", "fill_order", "fill_order",
        "fill_order", "fill_order", "fill_order", "cancel_order", "borrow", "borrow", "repay", "repay",
        "mode", "invalid", "owed", "owed", "owed", "shock", "shock",
    ]), label="kind")
    accounts = run.accounts()
    platform = run.app.platform()
    acct_name = data.draw(st.sampled_from((MASTER, MASTER, MASTER, SUB1, SUB1, SUB2, OTHER)), label="account")
    currency = data.draw(st.sampled_from(CURRENCIES), label="currency")
    cmd: dict[str, Any] = {"type": kind, "at": run.next_at()}
    if kind == "shock":  # a mark move against a unified position: UPL losses borrow (B1)
        held = [(a, sym, q) for a, x in accounts.items() if x.mode == UNIFIED for sym, (q, _) in x.positions.items()]
        if held:
            _, symbol, q = data.draw(st.sampled_from(sorted(held)), label="held")
            base = base_of(symbol)
            factors = ("0.7", "0.5", "0.2") if q > 0 else ("1.5", "2", "4")
            price = (platform.prices[base] * D(data.draw(st.sampled_from(factors), label="shock"))).quantize(D("0.01"))
            cmd.update(type="set_price", currency=base, price=format(max(price, D("0.01")), "f"))
            return cmd
        kind = cmd["type"] = "place_order"
    if kind == "owed":  # steer towards paying back what is owed (R1/R2, UPL-generated first)
        owing = [(a, c) for a, x in accounts.items() for c in sorted(x.liabilities())]
        if owing:
            acct_name, currency = data.draw(st.sampled_from(owing), label="owing")
            owed = accounts[acct_name].liability(currency)
            kind = data.draw(st.sampled_from(("deposit", "repay", "transfer", "set_price")), label="owed kind")
            if kind == "set_price" and accounts[acct_name].positions:
                base = base_of(sorted(accounts[acct_name].positions)[0])
                cmd.update(type=kind, currency=base, price=format(
                    (platform.prices[base] * D(data.draw(st.sampled_from(("1.05", "1.3", "2", "0.9"))))).quantize(D("0.01")), "f"))
                return cmd
            if kind == "set_price":
                kind = "deposit"
            part = data.draw(st.sampled_from(("all", "half", "double")), label="part")
            amount = {"all": owed, "half": owed / 2, "double": owed * 2}[part].quantize(D("0.00000001"))
            cmd.update(type=kind, currency=currency, amount=format(max(amount, D("0.00000001")), "f"))
            if kind == "transfer":
                cmd.update(from_account=SUB1 if acct_name == MASTER else MASTER, to_account=acct_name)
            else:
                cmd["account"] = acct_name
            return cmd
        kind = cmd["type"] = "deposit"
    if kind == "deposit":
        cmd.update(account=acct_name, currency=currency, amount=data.draw(amount_for(currency)))
        wallet = data.draw(st.sampled_from((None, None, None, "futures", "spot", "unified")), label="wallet")
        if wallet:
            cmd["wallet"] = wallet
    elif kind == "withdraw":
        cmd.update(account=acct_name, currency=currency, amount=data.draw(amount_for(currency)))
    elif kind == "transfer":
        to = data.draw(st.sampled_from(ACCOUNTS), label="to")
        cmd.update(from_account=acct_name, to_account=to, currency=currency,
                   amount=data.draw(amount_for(currency)))
        if to == acct_name:
            cmd.update(from_wallet="spot", to_wallet="futures")
    elif kind == "set_price":
        base = data.draw(st.sampled_from(("BTC", "ETH")), label="base")
        mark = platform.prices.get(base)
        jump = st.sampled_from(["0.1", "0.3", "0.6", "0.9", "1.1", "1.5", "3"]).map(
            lambda f: format((mark * D(f)).quantize(D("0.01")), "f"))
        cmd.update(currency=base, price=data.draw(a_price(base) if mark is None else st.one_of(jump, a_price(base)),
                                                  label="price"))
    elif kind == "place_order":
        symbol = data.draw(st.sampled_from(SYMBOLS), label="symbol")
        base = base_of(symbol)
        mark = platform.prices.get(base, D(30_000) if base == "BTC" else D(2_000))
        qty = data.draw(st.integers(1, 2000).map(lambda n: dec(n, 2 if base == "ETH" else 3)), label="qty")
        run.order_seq += 1
        order_id = f"o{run.order_seq}"
        if acct_name in accounts and accounts[acct_name].orders and data.draw(st.integers(0, 9)) == 0:
            order_id = sorted(accounts[acct_name].orders)[0]  # order_exists
        cmd.update(account=acct_name, order_id=order_id,
                   market=data.draw(st.sampled_from(("spot", "futures")), label="market"),
                   symbol=symbol, side=data.draw(st.sampled_from(("buy", "sell")), label="side"),
                   qty=qty, price=data.draw(near(mark), label="order price"))
    elif kind in ("fill_order", "cancel_order"):
        open_orders = [(a, o) for a, x in accounts.items() for o in x.orders.values()]
        if open_orders and data.draw(st.integers(0, 19), label="known order") > 0:
            name, order = data.draw(st.sampled_from(open_orders), label="order")
        else:
            name, order = acct_name, None
        cmd.update(account=name, order_id=order["order_id"] if order else "nope")
        if kind == "fill_order":
            remaining = order["qty"] - order["filled_qty"] if order else D(1)
            ticks = int(remaining.scaleb(8))
            how = data.draw(st.sampled_from(("all", "part", "part", "over")), label="fill size")
            if how == "all":
                qty = remaining
            elif how == "part":
                qty = D(data.draw(st.integers(1, ticks), label="fill ticks")).scaleb(-8)
            else:
                qty = remaining + D("0.001")
            price = order["price"] if order else D(100)
            # at the limit or better (buy at or below, sell at or above), now and then worse
            better = ["1", "0.99", "0.9", "0.5"] if order and order["side"] == "buy" else ["1", "1.01", "1.1", "2"]
            factor = data.draw(st.sampled_from(better + better + ["0.8", "1.2"]), label="fill price factor")
            fill_price = max((price * D(factor)).quantize(D("0.01")), D("0.01"))
            cmd.update(qty=format(qty.normalize(), "f"), price=format(fill_price, "f"),
                       fee=data.draw(st.sampled_from(["0", "0", "0.1", "1.23456789", "25", "500"]), label="fee"))
    elif kind == "borrow":
        amount = data.draw(amount_for(currency))
        acct = accounts.get(acct_name)
        shown = run.book.view(acct_name)["borrowable"] if acct is not None and acct.mode == UNIFIED else {}
        if currency in shown and data.draw(st.booleans(), label="at the limit"):  # priced currencies only
            limit = D(shown[currency])
            step = data.draw(st.sampled_from(("0", "0.00000001", "1")), label="past the limit")
            amount = format(max(limit + D(step), D("0.00000001")), "f")
            run.borrow_expect[cmd["at"]] = (limit, D(amount))
        cmd.update(account=acct_name, currency=currency, amount=amount)
    elif kind == "repay":
        acct = accounts.get(acct_name)
        owed = acct.liability(currency) if acct else ZERO
        choices = [data.draw(amount_for(currency))]
        if owed:
            choices += [format(owed, "f"), format(owed * 2, "f")]
        cmd.update(account=acct_name, currency=currency,
                   amount=data.draw(st.sampled_from(choices), label="repay amount"))
    elif kind == "mode":
        op = data.draw(st.sampled_from(("whitelist", "complete_risk_assessment", "switch_mode",
                                        "switch_mode", "activate_unified", "create_api_key")), label="op")
        cmd["type"] = op
        cmd["account"] = acct_name
        if op == "complete_risk_assessment":
            cmd.update(score=80, agreements_version="v1")
        elif op == "switch_mode":
            cmd["mode"] = data.draw(st.sampled_from(("unified", "classic")), label="mode")
        elif op == "create_api_key":
            run.order_seq += 1
            cmd.update(key_id=f"k{run.order_seq}", unified=data.draw(st.booleans()), permissions=["spot"])
    else:  # deliberately invalid
        how = data.draw(st.sampled_from(("bad_amount", "unknown_currency", "unknown_account",
                                         "out_of_order", "transfer_outside", "bad_price")), label="invalid")
        if how == "bad_amount":
            cmd.update(type="deposit", account=acct_name, currency=currency,
                       amount=data.draw(st.sampled_from(BAD_AMOUNTS)))
        elif how == "unknown_currency":
            cmd.update(type="borrow", account=acct_name, currency="XYZ", amount="1")
        elif how == "unknown_account":
            cmd.update(type="deposit", account=GHOST, currency=currency, amount="1")
        elif how == "out_of_order":
            cmd.update(type="deposit", account=acct_name, currency=currency, amount="1",
                       at=rfc(T0 + timedelta(seconds=max(run.step - 50, 0))))
        elif how == "transfer_outside":
            cmd.update(type="transfer", from_account=OTHER, to_account=SUB1, currency=currency, amount="1")
        else:
            cmd.update(type="set_price", currency="BTC", price="0")
    return cmd


def prelude(data: st.DataObject, run: Run) -> None:
    """A unified master with subs and funds, and a classic master; all must be accepted."""
    vip = data.draw(st.integers(0, 3), label="vip")
    sub_unified = data.draw(st.integers(0, 3), label="s1 unified") > 0
    for base in ("BTC", "ETH"):
        if data.draw(st.integers(0, 4), label=f"{base} priced") > 0:
            run.ok({"type": "set_price", "currency": base, "price": data.draw(a_price(base)), "at": run.next_at()})
    quotas = (
        {"type": "set_borrow_quota", "currency": USDT,
         "amount": data.draw(st.sampled_from(("3000", "8000", "1000000")), label="USDT quota")},
        {"type": "set_borrow_quota", "currency": USDT, "vip_level": 1, "amount": "500"},
        {"type": "set_borrow_quota", "currency": "BTC", "amount": data.draw(st.sampled_from(("0.2", "20")))},
        {"type": "set_borrow_quota", "currency": "ETH", "amount": "3"},
        {"type": "set_platform_borrow_limit", "currency": "BTC",
         "amount": data.draw(st.sampled_from((None, "0.3", "5")), label="BTC platform limit")},
    )
    for cmd in quotas[:data.draw(st.integers(0, len(quotas)), label="quotas set")]:
        run.ok({**cmd, "at": run.next_at()})
    for cmd in (
        {"type": "open_account", "account": MASTER, "vip_level": vip},
        {"type": "open_account", "account": SUB1, "parent": MASTER},
        {"type": "open_account", "account": SUB2, "parent": MASTER, "vip_level": 1},
        {"type": "open_account", "account": OTHER},
        {"type": "whitelist", "account": MASTER},
        {"type": "complete_risk_assessment", "account": MASTER, "score": 70, "agreements_version": "v1"},
        {"type": "switch_mode", "account": MASTER, "mode": "unified"},
        {"type": "deposit", "account": MASTER, "currency": USDT,
         "amount": data.draw(st.integers(0, 90_000).map(lambda n: dec(200_000 + n * 20, 2)), label="usdt")},
        {"type": "deposit", "account": MASTER, "currency": "ETH", "amount": "2"},
        {"type": "deposit", "account": SUB1, "currency": USDT, "amount": "5000"},
        {"type": "deposit", "account": OTHER, "currency": "BTC", "amount": "1"},
    ):
        run.ok({**cmd, "at": run.next_at()})
    if sub_unified:
        run.ok({"type": "switch_mode", "account": SUB1, "mode": "unified", "at": run.next_at()})
    platform = run.app.platform()
    if {"BTC", "ETH"} <= set(platform.prices) and data.draw(st.integers(0, 3), label="m1 futures position") > 0:
        mark = platform.prices["BTC"]
        cash = run.app.account(MASTER).cash(USDT)
        leverage = D(data.draw(st.sampled_from(("1", "3", "5")), label="leverage"))
        qty = (cash * leverage / mark).quantize(D("0.001"), rounding="ROUND_FLOOR")
        if qty > 0:
            side = data.draw(st.sampled_from(("buy", "sell")), label="side")
            run.ok({"type": "place_order", "account": MASTER, "order_id": "p0", "market": "futures",
                    "symbol": "BTC-USDT", "side": side, "qty": format(qty, "f"), "price": format(mark, "f"),
                    "at": run.next_at()})
            run.ok({"type": "fill_order", "account": MASTER, "order_id": "p0", "qty": format(qty, "f"),
                    "price": format(mark, "f"), "at": run.next_at()})


def run_example(env: dict[str, str], data: st.DataObject) -> None:
    run = Run(env)
    try:
        prelude(data, run)
        for _ in range(data.draw(st.integers(10, 30), label="batches")):
            size = data.draw(st.sampled_from((1, 1, 1, 2, 3, 4)), label="batch size")
            run.apply([draw_command(data, run) for _ in range(size)])
    finally:
        run.close()


# LEDGER_PROPERTY_EXAMPLES=500 runs a longer, randomised hunt; the default run is fixed and fast.
HUNT = int(os.environ.get("LEDGER_PROPERTY_EXAMPLES", "0"))
COMMON = dict(deadline=None, derandomize=not HUNT, print_blob=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large])


@settings(max_examples=HUNT or 35, **COMMON)
@given(data=st.data())
def test_properties_sqlite(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run_example({"PERSISTENCE_MODULE": "stores.sqlite",
                     "SQLITE_DBNAME": str(Path(tmp) / "ledger.db")}, data)


@pytest.mark.postgres
def test_properties_postgres() -> None:
    pg.require_server()  # skips (or fails under LEDGER_REQUIRE_POSTGRES=1) without a server

    @settings(max_examples=HUNT or 12, **COMMON)
    @given(data=st.data())
    def inner(data: st.DataObject) -> None:
        run_example(pg.env(pg.new_schema()), data)

    inner()
