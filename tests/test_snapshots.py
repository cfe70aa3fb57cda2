"""Snapshots (every 20 account events, 100 pool and platform events, 1,000 account-set events) load the same state as a full replay."""
from __future__ import annotations

from datetime import timedelta

from ledger.domain.base import replay
from tests.helpers import D, T0, Ledger, at
from workers.interest import run_interest


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


def test_the_platform_loads_from_a_small_snapshot_however_many_prices(ledger: Ledger) -> None:
    """Issue 15: the platform is snapshotted every 100 events and its state holds the latest
    price and rate only, so a fresh process replays at most 100 of its events; the books keyed
    by VIP level (ints and None) come back as they were."""
    params = [{"type": "set_interest_rate", "currency": "USDT", "hourly_rate": "0.0001", "vip_level": 2, "at": at(0)},
              {"type": "set_interest_rate", "currency": "USDT", "hourly_rate": "0.0002", "at": at(0)},
              {"type": "set_borrow_quota", "currency": "BTC", "amount": "50", "vip_level": 3, "at": at(0)},
              {"type": "set_margin_rates", "symbol": "BTC-USDT", "imr": "0.2", "mmr": "0.1", "at": at(0)}]
    prices = [{"type": "set_price", "currency": "BTC", "price": str(40_000 + n), "at": at(1 + n)} for n in range(450)]
    rates = [{"type": "set_interest_rate", "currency": "USDT", "hourly_rate": f"0.000{n % 9 + 1}", "vip_level": 2,
              "at": at(500 + n)} for n in range(60)]
    assert all(r["ok"] for r in ledger.apply(*params, *prices, *rates))
    fresh = ledger.reopen()
    try:
        loaded = fresh.platform()
        full = replay(None, fresh.app.events.get("platform"))
        assert loaded.version == full.version == 1 + len(params) + len(prices) + len(rates)
        assert vars(loaded) == vars(full), "a snapshot loads as the replay"
        assert loaded.quotas["BTC"][3] == 50 and loaded.quotas["BTC"][None] == 20
        assert loaded.rates["USDT"] == {2: [(T0 + timedelta(minutes=559), D("0.0006"))],
                                        None: [(T0, D("0.0002"))]}, "the latest rate of each level only"
        snapshots = list(fresh.app.snapshots.get("platform"))
        assert len(snapshots) == 5 and loaded.version - snapshots[-1].originator_version <= 100
        assert len(fresh.app.mapper.to_stored_event(snapshots[-1]).state) < 4_000
        assert loaded.price("BTC") == 40_449
        for minutes in (0, 0.5, 1, 99, 100, 101, 300, 449, 450, 451, 530, 600):
            instant = T0 + timedelta(minutes=minutes)
            then = fresh.app.platform_at(instant)
            slow = replay(None, [e for e in fresh.app.events.get("platform")
                                 if type(e).__name__ == "PlatformInitialised" or e.at <= instant])
            assert vars(then) == vars(slow), f"the platform at {minutes} min"
    finally:
        fresh.close()


def test_the_liability_log_keeps_one_entry_per_currency_and_hour(ledger: Ledger) -> None:
    """Issue 15 / I1: every tick moves a futures holder's UPL-generated liability, but a tick
    books nothing (§16: it is derived), so neither the liability log nor the snapshot grows
    with ticks; interest at each top of an hour charges the figure at the mark in force then."""
    ledger.oks({"type": "set_price", "currency": "BTC", "price": "50000", "at": at(0)},
               {"type": "set_interest_rate", "currency": "USDT", "hourly_rate": "0.0001", "at": at(0)})
    ledger.unified_master("h", {"USDT": "5000"})
    ledger.oks({"type": "place_order", "account": "h", "order_id": "f", "market": "futures", "symbol": "BTC-USDT",
                "side": "buy", "qty": "1", "price": "50000", "at": at(1)},
               {"type": "fill_order", "account": "h", "order_id": "f", "qty": "1", "price": "50000", "at": at(1)})
    ticks = [{"type": "set_price", "currency": "BTC", "price": str(40_000 + (n * 7919) % 8_000), "at": at(2 + n * 0.3)}
             for n in range(900)]  # 4.5 hours of ticks, each moving the UPL-generated liability
    assert all(r["ok"] for r in ledger.apply(*ticks))
    fresh = ledger.reopen()
    try:
        acct = fresh.account("h")
        moves = [e for e in fresh.app.events.get("account/h") if type(e).__name__ in ("Borrowed", "Repaid")]
        assert moves == [] and len(acct.liability_log) == 0 and len(acct.upl_inputs) == 1
        expected = {}
        for n in range(1, 6):
            top = T0 + timedelta(hours=n)
            mark = D([t for t in ticks if t["at"] <= at(60 * n)][-1]["price"])
            expected[top] = max(D(0), (D(50000) - mark) - D(5000))  # the loss beyond the 5000 cash
        from ledger.domain.base import LedgerSnapshot
        assert len(fresh.app.mapper.to_stored_event(LedgerSnapshot.take(acct)).state) < 4_000
        charged = {c.hour: c.liability for c in run_interest(fresh.app, T0 + timedelta(hours=5)).charges}
        assert charged == {hour: owed for hour, owed in expected.items() if owed} and len(charged) >= 2
        assert fresh.booked("h").liability_log == [], "charged hours leave the log"
    finally:
        fresh.close()


def test_an_old_snapshot_with_one_entry_per_change_loads_summed_by_hour() -> None:
    """Snapshots written before the log summed each hour hold an entry per change: loading one
    sums them (LedgerSnapshot.mutate), so it equals what the events replay to now."""
    from ledger.domain.account import Account

    acct = Account(account="o", parent=None, vip_level=0, at=T0)
    acct.liability_log = [[T0 + timedelta(minutes=m), c, D(d), D(0)]
                          for m, c, d in ((10, "USDT", 5), (20, "BTC", 1), (50, "USDT", -2), (60, "USDT", 1),
                                          (61, "USDT", 4))]
    snapshot = Account.Snapshot.take(acct)
    loaded = snapshot.mutate(None)
    assert loaded.liability_log == [[T0 + timedelta(minutes=10), "USDT", D(4), D(0)],
                                    [T0 + timedelta(minutes=20), "BTC", D(1), D(0)],
                                    [T0 + timedelta(minutes=61), "USDT", D(4), D(0)]]
