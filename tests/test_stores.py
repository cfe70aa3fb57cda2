"""stores/: many aggregates in one query, and the orjson transcoder, against eventsourcing's own."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal


from ledger.app import LedgerApp
from tests.helpers import Ledger, at

ACCOUNTS = [f"s{n}" for n in range(6)]


def busy_ledger(ledger: Ledger) -> None:
    """Accounts with and without snapshots (Account snapshots every 200 events)."""
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
