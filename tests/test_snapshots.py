"""Snapshots (every 20 account events, 100 pool and 1,000 account-set events) load the same state as a full replay."""
from __future__ import annotations

from ledger.domain.base import replay
from tests.helpers import Ledger, at


def normal(value):  # type: ignore[no-untyped-def]
    """A snapshot stores JSON: tuples come back as lists."""
    if isinstance(value, (list, tuple)):
        return [normal(v) for v in value]
    if isinstance(value, dict):
        return {k: normal(v) for k, v in value.items()}
    return value


def state(agg):  # type: ignore[no-untyped-def]
    return normal({k: v for k, v in vars(agg).items() if k != "_pending_events"})


def test_snapshotted_account_equals_full_replay(ledger: Ledger) -> None:
    ledger.oks({"type": "set_price", "currency": "BTC", "price": "50000", "at": at(0)})
    ledger.unified_master("alice", {"USDT": "100000", "BTC": "1"})
    cmds = []
    for n in range(260):
        kind = ("borrow", "repay", "deposit")[n % 3]
        cmds.append({"type": kind, "account": "alice", "currency": "USDT", "amount": "7", "at": at(1 + n)})
    cmds += [{"type": "place_order", "account": "alice", "order_id": "f", "market": "futures", "symbol": "BTC-USDT",
              "side": "buy", "qty": "1", "price": "50000", "at": at(300)},
             {"type": "fill_order", "account": "alice", "order_id": "f", "qty": "1", "price": "50000", "at": at(300)}]
    assert all(r["ok"] for r in ledger.apply(*cmds))
    fresh = ledger.reopen()
    assert list(fresh.app.snapshots.get("account/alice")), "a snapshot was taken"
    loaded = fresh.account("alice")
    full = replay(None, fresh.app.events.get("account/alice"))
    assert loaded.version == full.version > 200
    assert state(loaded) == state(full)
    assert loaded.positions["BTC-USDT"][0] == full.positions["BTC-USDT"][0]
    assert loaded.liabilities() == full.liabilities() and loaded.wallets == full.wallets
    fresh.close()
