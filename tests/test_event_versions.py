"""The event version policy (docs/rules.md §15): an event class whose fields change gets a
higher ``class_version`` and an upcaster for each step, so every stored shape still loads; an
aggregate whose attributes change does the same for its snapshots.  Used first for the
lending pool's ``OutstandingChanged``, whose fields changed twice without one."""
from __future__ import annotations

import inspect
import json
import shutil
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from eventsourcing.persistence import StoredEvent

from ledger.domain import account, indexes, platform
from ledger.service.app import LedgerApp
from ledger.domain.base import LedgerAggregate, replay
from ledger.domain.indexes import LendingPool
from tests.helpers import Ledger, at
from tests.test_fixture_store import STORE

D = Decimal
T = datetime(2026, 3, 1, 10, tzinfo=timezone.utc)
OLD_SHAPES = [  # version 1 as the ledger stored it, oldest first (git: 6b9c83b, bd1e22c, 1e94bbd)
    {"account": "account/a", "delta": D("100"), "at": T},
    {"delta": D("50"), "changes": 2, "at": T + timedelta(minutes=1)},
    {"delta": D("-30"), "at": T + timedelta(minutes=2), "changes": 1, "account": None},
]


def store_old_pool_events(app: LedgerApp) -> None:
    """pool/USDT as an old ledger wrote it: opened, then one event in each old shape."""
    encode = app.mapper.transcoder.encode
    opened = {"timestamp": T, "originator_topic": "ledger.indexes:LendingPool", "currency": "USDT"}
    rows = [StoredEvent("pool/USDT", 1, "ledger.indexes:LendingPool.LendingPoolOpened", encode(opened))]
    rows += [StoredEvent("pool/USDT", n, "ledger.indexes:LendingPool.OutstandingChanged", encode({"timestamp": T, **shape}))
             for n, shape in enumerate(OLD_SHAPES, 2)]
    app.recorder.insert_events(rows)


def test_old_pool_events_load_as_version_2(ledger: Ledger) -> None:
    """Each old shape is upcast (``changes`` 1 where it was missing, no ``account``), the
    total and the total as of each instant are as stored, and a new change is written as
    version 2 on top of them."""
    store_old_pool_events(ledger.app)
    fresh = ledger.reopen()
    try:
        events = list(fresh.app.events.get("pool/USDT"))[1:]
        assert [vars(e)["changes"] for e in events] == [1, 2, 1]
        assert all("account" not in vars(e) for e in events)
        assert [e.delta for e in events] == [D(100), D(50), D(-30)]
        assert fresh.app.find("pool/USDT").outstanding == D(120)
        assert [fresh.app.platform_owed("USDT", T + timedelta(minutes=m)) for m in (0, 1, 2)] == [D(100), D(150), D(120)]

        pool = fresh.app.find("pool/USDT")
        pool.change(D(5), T + timedelta(minutes=3), 1)
        fresh.app.save(pool)
        [stored] = fresh.app.recorder.select_events("pool/USDT", gt=4)
        state = fresh.app.mapper.transcoder.decode(stored.state)
        assert state["class_version"] == 2 and set(state) == {"timestamp", "delta", "at", "changes", "class_version"}
        again = ledger.reopen()
        assert again.app.find("pool/USDT").outstanding == D(125)
        again.close()
    finally:
        fresh.close()


def test_a_pool_snapshot_from_before_still_loads(tmp_path: Path) -> None:
    """The fixture store's pool/USDT has a snapshot at v100 written by version 1 code, and 15
    version-1 events: loaded from the snapshot it equals a full replay of every event."""
    copy = tmp_path / "old.db"
    shutil.copyfile(STORE, copy)
    app = LedgerApp(env={"PERSISTENCE_MODULE": "stores.sqlite", "SQLITE_DBNAME": str(copy)})
    try:
        [snapshot] = app.snapshots.get("pool/USDT")
        assert snapshot.originator_version == 100 and "class_version" not in snapshot.state
        loaded, full = app.find("pool/USDT"), replay(None, app.events.get("pool/USDT"))
        assert loaded.version == full.version > 100 and loaded.outstanding == full.outstanding
        assert {type(e).__name__ for e in app.events.get("pool/USDT")} >= {"OutstandingChanged", "OutstandingChangesFolded"}
    finally:
        app.close()


def aggregate_classes() -> list[type]:
    return [c for module in (account, indexes, platform) for _, c in inspect.getmembers(module, inspect.isclass)
            if issubclass(c, LedgerAggregate) and c is not LedgerAggregate and c.__module__ == module.__name__]


def test_every_version_has_its_upcasters() -> None:
    """The policy holds for every event class and every aggregate (snapshots): version n > 1
    comes with upcast_v1_v2 ... upcast_v{n-1}_v{n}, static, so the library can call them."""
    checked = []
    for aggregate in aggregate_classes():
        classes = [aggregate, *(v for v in vars(aggregate).values() if isinstance(v, type) and issubclass(v, aggregate.Event))]
        for cls in classes:
            version = getattr(cls, "class_version", 1)
            for n in range(1, version):
                upcast = inspect.getattr_static(cls, f"upcast_v{n}_v{n + 1}", None)
                assert isinstance(upcast, staticmethod), f"{cls.__qualname__} v{version} lacks a static upcast_v{n}_v{n + 1}"
            checked.append((cls.__qualname__, version))
    assert ("LendingPool.OutstandingChanged", 2) in checked and len(checked) > 40


def test_the_pool_event_shape_in_a_store_dump(ledger: Ledger) -> None:
    """What docs/rules.md shows of a pool event (§13): delta and changes, no account."""
    ledger.oks({"type": "set_price", "currency": "BTC", "price": "50000", "at": at(0)})
    ledger.unified_master("p", {"BTC": "1"})
    ledger.ok({"type": "borrow", "account": "p", "currency": "USDT", "amount": "100", "at": at(1)})
    _, changed = ledger.app.events.get("pool/USDT")
    fields = {k: v for k, v in vars(changed).items() if k not in ("originator_id", "originator_version", "timestamp", "at")}
    assert json.loads(json.dumps(fields, default=str)) == {"delta": "100", "changes": 1}
