"""Set-ups of the price figures (issue 15): futures holders for the ticks, and a platform with
many prices written in big batches.

The holders are unified accounts, each long 0.01 BTC-USDT at 50,000 with 100 USDT: below
40,000 a holder's unrealised loss exceeds its cash, so ticks between 35,000 and 50,000 move
the UPL-generated liability of every holder, as a falling market does.  The prices are
written straight to the platform aggregate (the same ``PriceSet`` events a ``set_price``
records when nobody holds the symbol, with the snapshots the application takes), a hundred
thousand per transaction: a million take a minute, not the twenty of a million commands."""
from __future__ import annotations

import json
import random
from datetime import timedelta
from decimal import Decimal
from itertools import chain
from typing import Any, Iterator

from bench.common import START, Progress, apply_all, platform_commands
from ledger.domain import ids
from ledger.service.app import LedgerApp

TICKS_FROM = START + timedelta(minutes=1)  # the first tick; one a second after it
PRICE_BATCH = 100_000  # price events per transaction in the set-up
SHOWN = "shown"  # the account `account show` reads in the start-up figures


def holder(n: int) -> str:
    return f"holder-{n:06d}"


def holders(app: LedgerApp, count: int, progress: Progress = None) -> None:
    at = START.isoformat()

    def account(n: int) -> Iterator[dict[str, Any]]:
        a = holder(n)
        yield from [{"type": "open_account", "account": a, "at": at},
                    {"type": "complete_risk_assessment", "account": a, "score": 50, "agreements_version": "v1", "at": at},
                    {"type": "switch_mode", "account": a, "mode": "unified", "at": at},
                    {"type": "deposit", "account": a, "currency": "USDT", "amount": "100", "at": at},
                    {"type": "place_order", "account": a, "order_id": "f", "market": "futures", "symbol": "BTC-USDT",
                     "side": "buy", "qty": "0.01", "price": "50000", "at": at},
                    {"type": "fill_order", "account": a, "order_id": "f", "qty": "0.01", "price": "50000", "at": at}]

    apply_all(app, chain(platform_commands(at), chain.from_iterable(account(n) for n in range(count))),
              3 + 6 * count, progress)


def write_ticks(path: str, count: int) -> None:
    """``count`` BTC marks between 35,000 and 50,000, one a second from TICKS_FROM."""
    rng = random.Random(15)  # float-ok: a seeded walk of test prices, not money
    with open(path, "w", encoding="utf-8") as out:
        for n in range(count):
            price = 35_000 + rng.randrange(15_000)
            out.write(json.dumps({"type": "set_price", "currency": "BTC", "price": str(price),
                                  "at": (TICKS_FROM + timedelta(seconds=n)).isoformat()}) + "\n")


def write_deposits(path: str, count: int, accounts: int) -> None:
    """The baseline's plain ingest: ``count`` deposits over the holders, after every tick."""
    after = TICKS_FROM + timedelta(days=1)
    with open(path, "w", encoding="utf-8") as out:
        for n in range(count):
            out.write(json.dumps({"type": "deposit", "account": holder(n % accounts), "currency": "USDT",
                                  "amount": "1", "at": (after + timedelta(seconds=n)).isoformat()}) + "\n")


def shown_account(app: LedgerApp) -> None:
    at = START.isoformat()
    apply_all(app, [*platform_commands(at), {"type": "open_account", "account": SHOWN, "at": at},
                    {"type": "deposit", "account": SHOWN, "currency": "USDT", "amount": "100", "at": at}])


def prices(app: LedgerApp, count: int, progress: Progress = None) -> None:
    """``count`` BTC prices, one a second after START, with the platform's snapshots."""
    platform = app.platform()
    interval = app.snapshotting_intervals[type(platform)]
    for start in range(0, count, PRICE_BATCH):
        snapshots = []
        for n in range(start, min(count, start + PRICE_BATCH)):
            platform.set_price("BTC", Decimal(40_000 + n % 20_000), START + timedelta(seconds=1 + n))
            if platform.version % interval == 0:
                snapshots.append(app.mapper.to_stored_event(type(platform).Snapshot.take(platform)))
        app.save(platform, snapshots=snapshots)
        if progress:
            progress(min(count, start + PRICE_BATCH), count)
    assert app.repository.get(ids.PLATFORM).version == platform.version


def largest_snapshot(raw: Any, accounts: bool) -> int:
    """The largest stored snapshot of an account or the platform (``accounts``), else of an
    index (an account set holds its members: its size follows the number of holders, not
    of ticks), in bytes."""
    where = "originator_id LIKE ? OR originator_id = ?" if accounts else "NOT (originator_id LIKE ? OR originator_id = ?)"
    found = raw.rows(f"SELECT COALESCE(MAX(LENGTH(state)), 0) FROM {raw.snapshots} WHERE {where}",
                     (ids.ACCOUNT_PREFIX + "%", ids.PLATFORM))
    return int(found[0][0])


def count_snapshots(raw: Any) -> int:
    return int(raw.rows(f"SELECT COUNT(*) FROM {raw.snapshots}")[0][0])
