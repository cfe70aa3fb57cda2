"""The ingest figure's input: a deterministic mixed stream of commands, every one acceptable.

Accounts come in families of a master and four sub-accounts (transfers stay inside one
family, W3); nine families in ten go unified.  Each account is opened (masters also complete
the risk assessment), switched to unified, and funded with 100,000 USDT and 2 BTC.  Then, to
the requested length: transfers of 10 USDT inside a family, spot BTC-USDT orders each filled
at once, borrows of 100 USDT, repayments and deposits.  A small model of what each account
owes keeps every repayment acceptable: a USDT inflow into a unified account repays its loan
first (R1), so a repay is only written while something is still owed.  `at` rises by one
millisecond per command, so time never goes back within an account (T1).
"""
from __future__ import annotations

import json
import random
from datetime import timedelta
from decimal import Decimal
from typing import Any, Iterator

from bench.common import START, platform_commands

FAMILY = 5
FEE = Decimal("0.5")
LOT, PRICE = Decimal("0.01"), Decimal("50000")


class Stream:
    def __init__(self, accounts: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.names = [f"u{n:05d}" for n in range(accounts)]
        self.unified = [False] * accounts
        self.owed = [Decimal(0)] * accounts  # USDT, as the ledger will see it
        self.clock = 0
        self.orders = 0

    def stamp(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self.clock += 1
        return {**cmd, "at": (START + timedelta(milliseconds=self.clock)).isoformat()}

    def family(self, n: int) -> range:
        first = n - n % FAMILY
        return range(first, min(first + FAMILY, len(self.names)))

    def inflow(self, n: int, amount: Decimal) -> None:
        if self.unified[n]:
            self.owed[n] = max(Decimal(0), self.owed[n] - amount)

    def opening(self, n: int) -> Iterator[dict[str, Any]]:
        a, master = self.names[n], n - n % FAMILY
        if n == master:
            self.unified[n] = self.rng.random() < 0.9
            yield {"type": "open_account", "account": a}
            yield {"type": "complete_risk_assessment", "account": a, "score": 50, "agreements_version": "v1"}
        else:
            self.unified[n] = self.unified[master]
            yield {"type": "open_account", "account": a, "parent": self.names[master]}
        if self.unified[n]:
            yield {"type": "switch_mode", "account": a, "mode": "unified"}
        yield {"type": "deposit", "account": a, "currency": "USDT", "amount": "100000"}
        yield {"type": "deposit", "account": a, "currency": "BTC", "amount": "2"}

    def activity(self) -> Iterator[dict[str, Any]]:
        n = self.rng.randrange(len(self.names))
        a, roll = self.names[n], self.rng.random()
        family = self.family(n)
        if roll < 0.3 and len(family) > 1:
            to = self.rng.choice([m for m in family if m != n])
            self.inflow(to, Decimal(10))
            yield {"type": "transfer", "from_account": a, "to_account": self.names[to], "currency": "USDT", "amount": "10"}
        elif roll < 0.6:
            self.orders += 1
            order, side = f"o{self.orders}", self.rng.choice(["buy", "sell"])
            yield {"type": "place_order", "account": a, "order_id": order, "market": "spot", "symbol": "BTC-USDT",
                   "side": side, "qty": str(LOT), "price": str(PRICE)}
            yield {"type": "fill_order", "account": a, "order_id": order, "qty": str(LOT), "price": str(PRICE), "fee": str(FEE)}
            if side == "sell":
                self.inflow(n, LOT * PRICE - FEE)
        elif roll < 0.75 and self.unified[n]:
            self.owed[n] += 100
            yield {"type": "borrow", "account": a, "currency": "USDT", "amount": "100"}
        elif roll < 0.9 and self.owed[n]:
            amount = min(self.owed[n], Decimal(60))
            self.owed[n] -= amount
            yield {"type": "repay", "account": a, "currency": "USDT", "amount": str(amount)}
        else:
            self.inflow(n, Decimal(50))
            yield {"type": "deposit", "account": a, "currency": "USDT", "amount": "50"}


def mixed_commands(total: int, accounts: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """Exactly `total` commands over `accounts` accounts, the same for the same arguments."""
    stream = Stream(accounts, seed)
    head = platform_commands(START.isoformat())
    opened = [cmd for n in range(accounts) for cmd in stream.opening(n)]
    if total < len(head) + len(opened):
        raise ValueError(f"{total} commands cannot open {accounts} accounts ({len(head) + len(opened)} needed)")
    yield from head
    written = len(head)
    for cmd in opened:
        yield stream.stamp(cmd)
    written += len(opened)
    while written < total:
        for cmd in stream.activity():
            if written < total:  # a last order may be left unfilled: still acceptable
                yield stream.stamp(cmd)
                written += 1


def write_jsonl(path: str, total: int, accounts: int) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for cmd in mixed_commands(total, accounts):
            handle.write(json.dumps(cmd) + "\n")
