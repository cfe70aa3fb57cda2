"""stores/: many aggregates in one query, and the orjson transcoder, against eventsourcing's own."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum, IntEnum
from uuid import UUID

import pytest
from eventsourcing.persistence import JSONTranscoder, Transcoding, TranscodingNotRegisteredError

from ledger.service.app import LedgerApp
from stores.transcoder import OrjsonTranscoder
from tests.helpers import D, Ledger, at

ACCOUNTS = [f"s{n}" for n in range(6)]


def busy_ledger(ledger: Ledger) -> None:
    """Accounts with and without snapshots (an account snapshots every 20 events)."""
    for name in ACCOUNTS:
        ledger.open(name)
    deposits = [{"type": "deposit", "account": "s0", "currency": "USDT", "amount": "1.5", "at": at(10 + n / 1000)}
                for n in range(450)]
    ledger.oks(*deposits[:250])
    ledger.oks(*deposits[250:])
    ledger.oks({"type": "deposit", "account": "s1", "currency": "BTC", "amount": "0.001", "at": at(20)})


def test_select_many_loads_the_same_aggregates_as_the_repository(ledger: Ledger) -> None:
    busy_ledger(ledger)
    app = ledger.app
    assert app.snapshots is not None and list(app.snapshots.get("account/s0")), "s0 has a snapshot"
    keys = [f"account/{a}" for a in ACCOUNTS] + ["account/nobody", "platform", "pool/USDT"]
    many = app.repository.get_many(keys)  # type: ignore[attr-defined]
    assert many["account/nobody"] is None
    for key in keys[:-3] + ["platform"]:
        one = app.repository.get(key)
        assert many[key].__dict__ == one.__dict__, key
    assert many["account/s0"].version == 451


def test_select_many_reads_hundreds_of_ids_in_chunks(ledger: Ledger) -> None:
    busy_ledger(ledger)
    keys = [f"account/x{n}" for n in range(1_200)] + ["account/s1"]
    many = ledger.app.repository.get_many(keys)  # type: ignore[attr-defined]
    assert [k for k, v in many.items() if v is not None] == ["account/s1"]


def test_a_plain_eventsourcing_store_loads_one_by_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = LedgerApp(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "p.db")})
    assert not hasattr(app.recorder, "select_many")
    app.apply([{"type": "open_account", "account": "a", "at": at()}], lambda: datetime.now(timezone.utc))
    many = app.repository.get_many(["account/a", "account/b"])  # type: ignore[attr-defined]
    assert many["account/a"].account == "a" and many["account/b"] is None


SAMPLE = {"amount": Decimal("0.000000012345678901"), "at": datetime(2026, 3, 1, 12, tzinfo=timezone.utc),
          "wallets": {"spot": {"USDT": Decimal("-1E+3")}}, "log": [[datetime(2026, 3, 1, tzinfo=timezone.utc),
                                                                   {"USDT": Decimal("7")}]],
          "name": "ünïcode", "n": 3, "none": None, "flag": True, "empty": {}}


T0_KEY = datetime(2026, 3, 1, tzinfo=timezone.utc)


def transcoders() -> tuple[JSONTranscoder, OrjsonTranscoder]:
    app = LedgerApp.__new__(LedgerApp)
    plain, fast = JSONTranscoder(), OrjsonTranscoder()
    app.register_transcodings(plain)
    app.register_transcodings(fast)
    return plain, fast


def test_orjson_bytes_load_with_the_library_transcoder_and_back() -> None:
    plain, fast = transcoders()
    assert fast.decode(fast.encode(SAMPLE)) == SAMPLE
    assert plain.decode(fast.encode(SAMPLE)) == SAMPLE  # events written now load with the stock transcoder
    assert fast.decode(plain.encode(SAMPLE)) == SAMPLE  # events written before load with orjson
    assert type(fast.decode(fast.encode(SAMPLE))["at"]) is datetime


def test_orjson_transcoder_refuses_unknown_types_and_names() -> None:
    _, fast = transcoders()
    with pytest.raises(TranscodingNotRegisteredError):
        fast.encode({"x": object()})
    with pytest.raises(TranscodingNotRegisteredError):
        fast.decode(b'{"_type_": "mystery", "_data_": 1}')
    assert fast.decode(b'{"_type_": "decimal_str", "other": 1}') == {"_type_": "decimal_str", "other": 1}


class Colour(Enum):
    RED = "red"


class Level(IntEnum):
    HIGH = 3


@dataclass
class Point:
    x: int


class ColourAsName(Transcoding):
    type = Colour
    name = "colour"

    def encode(self, obj: Colour) -> str:
        return obj.name

    def decode(self, data: str) -> Colour:
        return Colour[data]


REFUSED = [{"c": Colour.RED}, {"p": Point(1)}, {"nested": [{"c": Colour.RED}]}, {"k": {T0_KEY: 1}},
           {"k": {UUID(int=1): 1}}, {"k": {(1, 2): 1}}, {"s": {1, 2}}, b"bytes"]


@pytest.mark.parametrize("obj", REFUSED, ids=repr)
def test_orjson_transcoder_refuses_what_the_library_refuses(obj: object) -> None:
    """orjson alone wrote enums and dataclasses as plain values, stringified datetime and UUID
    keys; the library raises, and so does the orjson transcoder now, with the same error."""
    plain, fast = transcoders()
    with pytest.raises(TypeError) as library:
        plain.encode(obj)
    with pytest.raises(type(library.value)) as ours:
        fast.encode(obj)
    assert str(ours.value) == str(library.value)


WRITTEN = [{"id": UUID("b2723fe2c01a40d2875ea3aac6a09ff5")}, [UUID(int=7), {"deep": (UUID(int=8),)}],
           {"n": float("nan"), "inf": float("inf"), "f": 1.5}, {"big": 2 ** 70}, {"t": (1, (2, "x"))},
           {1: "an int key", "b": True}, {"level": Level.HIGH}, {"s": "a\"b 🐈 哈"}, SAMPLE]


@pytest.mark.parametrize("obj", WRITTEN, ids=lambda o: repr(o)[:40])
def test_orjson_transcoder_writes_what_the_library_writes(obj: object) -> None:
    """UUIDs keep their type (orjson alone wrote them as strings), NaN stays NaN (orjson wrote
    null), an int beyond 64 bits is written; bytes of either load with the other."""
    plain, fast = transcoders()
    expected = repr(plain.decode(plain.encode(obj)))
    assert repr(fast.decode(fast.encode(obj))) == repr(plain.decode(fast.encode(obj))) == expected
    assert repr(fast.decode(plain.encode(obj))) == expected


def test_orjson_transcoder_uses_a_registered_transcoding_for_an_enum() -> None:
    plain, fast = transcoders()
    for transcoder in (plain, fast):
        transcoder.register(ColourAsName())
    data = fast.encode({"c": Colour.RED})
    assert data == plain.encode({"c": Colour.RED}) == b'{"c":{"_type_":"colour","_data_":"RED"}}'
    assert fast.decode(data) == {"c": Colour.RED}


def replay_from_the_first_event(app: LedgerApp, key: str, instant: datetime) -> object:
    agg = None
    for e in app.events.get(key):
        if type(e).__name__ != "PlatformInitialised" and e.at > instant:
            break
        agg = e.mutate(agg)
    return agg


def test_as_of_from_a_snapshot_equals_replaying_from_the_first_event(ledger: Ledger) -> None:
    """state_at starts from the latest snapshot before the instant (accounts snapshot every
    20 events, the platform every 100); the result is what a full replay gives."""
    ledger.open("s")
    cmds = []
    for n in range(520):
        when = at(10 + n // 2)  # two commands per instant: instants on a snapshot's edge
        cmds.append({"type": "withdraw" if n % 3 == 2 else "deposit", "account": "s", "currency": "USDT",
                     "amount": "1" if n % 3 == 2 else "5", "at": when})
        cmds.append({"type": "set_price", "currency": "BTC", "price": str(50_000 + n), "at": when})
    for start in range(0, len(cmds), 150):
        ledger.oks(*cmds[start:start + 150])
    app = ledger.app
    assert len(list(app.snapshots.get("account/s"))) >= 2 and len(list(app.snapshots.get("platform"))) >= 5
    t0 = datetime.fromisoformat(at(0))
    for minutes in [0, 9, 10, 10.5, 11, 99, 100, 100.5, 101, 199, 200, 201, 250.5, 269, 270, 1_000]:
        instant = t0 + timedelta(minutes=minutes)
        for key in ("account/s", "platform"):
            fast, slow = app.state_at(key, instant), replay_from_the_first_event(app, key, instant)
            assert (fast and vars(fast)) == (slow and vars(slow)), f"{key} at {minutes}"


def test_the_cache_brings_a_kept_aggregate_up_to_date_with_other_writers(ledger: Ledger) -> None:
    """ledger.service.cache: what this process saved is reused, after the events another process
    added since; a batch that loses its race keeps nothing."""
    ledger.open("c")
    deposit = {"type": "deposit", "account": "c", "currency": "USDT", "amount": "1"}
    ledger.oks({**deposit, "at": at(1)})
    app = ledger.app
    assert "account/c" in app.cache._entries
    other = ledger.reopen()
    try:
        other.oks({**deposit, "amount": "2", "at": at(2)})  # another writer: this cache has not seen it
    finally:
        other.close()
    ledger.oks({**deposit, "amount": "4", "at": at(3)})
    assert ledger.cash("c", "USDT") == 7 and app.cache._entries["account/c"].version == 4
    assert vars(app.cache._entries["account/c"]) == vars(app.repository.get("account/c"))


def test_the_cache_is_bounded_and_keeps_nothing_from_a_batch_that_was_not_saved(ledger: Ledger,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    app = ledger.app
    app.cache.maxsize = 3
    for name in "abcde":
        ledger.open(name)
    assert len(app.cache) == 3 and list(app.cache._entries)[-1] == "account/e"
    from eventsourcing.persistence import IntegrityError

    def lose(*_: object, **__: object) -> None:
        raise IntegrityError("another writer got there first")
    monkeypatch.setattr(app, "save", lose)
    [result] = app.apply([{"type": "deposit", "account": "e", "currency": "USDT", "amount": "1", "at": at(5)}], ledger.now, ledger.latest)
    assert result["error"]["code"] == "conflict" and "account/e" not in app.cache._entries


def test_a_transaction_with_borrows_at_several_instants_writes_one_pool_event(ledger: Ledger) -> None:
    """The lending pool gets one event per currency and transaction: OutstandingChanged for
    one instant, OutstandingChangesFolded with the change at each instant for several; the
    platform total as of each instant, the read model and the pool all agree."""
    from projections import runner
    from projections.sql import ViewDatabase

    ledger.oks({"type": "set_price", "currency": "BTC", "price": "50000", "at": at(0)})
    ledger.unified_master("p", {"BTC": "1"})
    ledger.unified_master("q", {"BTC": "1"})
    results = ledger.apply({"type": "borrow", "account": "p", "currency": "USDT", "amount": "100", "at": at(10)},
                           {"type": "borrow", "account": "q", "currency": "USDT", "amount": "50", "at": at(10)},
                           {"type": "borrow", "account": "q", "currency": "USDT", "amount": "30", "at": at(11)},
                           {"type": "repay", "account": "p", "currency": "USDT", "amount": "40", "at": at(12)})
    assert all(r["ok"] for r in results), results  # one batch: one transaction
    opened, folded = list(ledger.app.events.get("pool/USDT"))  # the pool's first borrows: one event
    assert type(folded).__name__ == "OutstandingChangesFolded"
    assert [(d, n) for _, d, n in folded.parts] == [(D(150), 2), (D(30), 1), (D(-40), 1)]
    t0 = datetime.fromisoformat(at(0))
    owed = [ledger.app.platform_owed("USDT", t0 + timedelta(minutes=m)) for m in (9, 10, 11, 12)]
    assert owed == [0, 150, 180, 140] and ledger.app.platform_owed("USDT") == 140
    db = ViewDatabase(ledger.env)
    try:
        runner.run(ledger.app, db)
        assert [Decimal(str(v)) for (v,) in db.rows("SELECT outstanding FROM view_platform_totals")] == [D(140)]
    finally:
        db.close()
