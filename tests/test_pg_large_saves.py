"""Issue 12: saves of many megabytes on PostgreSQL finish (they hung for ever in psycopg's
pipeline mode, holding the events table's lock; see stores/postgres.py).

Each save runs in a thread with a hard limit: a hang fails the test, with what the server
showed, after ending the stuck backend so that nothing is left waiting.
"""
from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable

import pytest
from eventsourcing.persistence import StoredEvent

from ledger.service.app import LedgerApp
from tests import pg
from tests.helpers import latest
from workers.interest import run_interest

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def within(seconds: float, work: Callable[[], Any]) -> Any:
    """``work()``'s result; if it has not returned after ``seconds``, end the backends stuck
    inside an INSERT (so that the thread, and the test, finish) and fail."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as error:  # noqa: BLE001 - handed to the test's thread
            box["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        with pg._connect(pg.RUN_DB) as conn:
            stuck = conn.execute("SELECT pid, state, wait_event, left(query, 50) FROM pg_stat_activity "
                                 "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                                 "AND query LIKE '%INSERT INTO%'").fetchall()
            for pid, *_ in stuck:
                conn.execute("SELECT pg_terminate_backend(%s)", [pid])
        thread.join(30)
        pytest.fail(f"the save did not finish within {seconds} s; the server showed {stuck}")
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.fixture
def app():  # type: ignore[no-untyped-def]
    ledger = LedgerApp(env=pg.env(pg.new_schema()))
    yield ledger
    ledger.close()


def test_a_save_of_many_megabytes_finishes_while_another_writer_holds_the_lock(app: LedgerApp) -> None:
    """The deterministic form of the hang: 24 MB of events and 4 MB of snapshots, sent while a
    second connection holds the events table's lock for 2 s (the server reads nothing
    meanwhile, so the socket buffers fill).  Before the fix this never returned: the server
    waited in ClientRead for the rest of the INSERT, the client for its result."""
    events = [StoredEvent(f"big/{n}", 1, "big.Event", os.urandom(1200)) for n in range(20_000)]
    snapshots = [StoredEvent(f"big/{n}", 1, "big.Snapshot", os.urandom(2000)) for n in range(2_000)]
    schema = app.recorder.datastore.schema
    holder = pg._connect(pg.RUN_DB)
    holder.execute("BEGIN")
    holder.execute(f"LOCK TABLE {schema}.ledgerapp_events IN EXCLUSIVE MODE")
    release = threading.Timer(2.0, holder.execute, ["COMMIT"])
    release.start()
    try:
        started = time.monotonic()
        ids = within(60, lambda: app.recorder.insert_events(events, snapshots=snapshots))
        assert time.monotonic() - started >= 1.9, "the save waited for the lock"
    finally:
        release.join()
        holder.close()
    assert ids == list(range(ids[0], ids[0] + len(events)))
    with pg._connect(pg.RUN_DB) as conn:
        counts = [conn.execute(f"SELECT count(*) FROM {schema}.{table}").fetchone()[0]
                  for table in ("ledgerapp_events", "ledgerapp_snapshots", "audit_chain")]
    assert counts == [20_000, 2_000, 20_000]


def unified(account: str) -> list[dict[str, Any]]:
    return [{"type": "open_account", "account": account, "at": iso(T0)},
            {"type": "complete_risk_assessment", "account": account, "score": 50, "agreements_version": "v1",
             "at": iso(T0)},
            {"type": "switch_mode", "account": account, "mode": "unified", "at": iso(T0)}]


PLATFORM = [{"type": "set_platform_flags", "whitelist_required": False, "at": iso(T0)},
            {"type": "set_price", "currency": "BTC", "price": "50000", "at": iso(T0)},
            {"type": "set_interest_rate", "currency": "USDT", "hourly_rate": "0.0001", "at": iso(T0)}]


def apply_all(app: LedgerApp, cmds: list[dict[str, Any]]) -> None:
    results = app.apply(cmds, lambda: T0, latest)
    assert all(r["ok"] for r in results), [r for r in results if not r["ok"]][:3]


def indebted(count: int) -> list[dict[str, Any]]:
    """The issue's recipe: each account deposits 1 BTC and borrows 500 USDT at 00:10."""
    at = iso(T0 + timedelta(minutes=10))
    return PLATFORM + [cmd for n in range(count) for cmd in unified(f"a{n:05d}") + [
        {"type": "deposit", "account": f"a{n:05d}", "currency": "BTC", "amount": "1", "at": at},
        {"type": "borrow", "account": f"a{n:05d}", "currency": "USDT", "amount": "500", "at": at}]]


def test_interest_over_5000_indebted_accounts_and_24_missed_hours(app: LedgerApp, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The issue's recipe as it hung (its first batch: 500 accounts × 24 hours, a dozen MB).
    Every account is charged its 24 hours and ends as one such account ends alone (the
    interest paid from its USDT)."""
    count, run_at = 5_000, T0 + timedelta(hours=24, minutes=10)
    alone = LedgerApp(env={"PERSISTENCE_MODULE": "stores.sqlite", "SQLITE_DBNAME": str(tmp_path / "one.db")})
    try:
        apply_all(alone, indebted(1))
        charges = run_interest(alone, run_at).charges
        assert len(charges) == 24
        one = alone.account("a00000")
        expected = (one.cash("USDT"), one.liability("USDT"))
        interest = sum(c.interest for c in charges)
    finally:
        alone.close()
    apply_all(app, indebted(count))
    run = within(240, lambda: run_interest(app, run_at))
    assert (len(run.charges), run.skipped, run.complete) == (24 * count, [], True)
    accounts = app.repository.get_many([f"account/a{n:05d}" for n in range(count)])  # type: ignore[attr-defined]
    assert {(a.cash("USDT"), a.liability("USDT")) for a in accounts.values()} == {expected}
    assert expected[0] == 500 - interest and interest > 0
    assert sum(c.interest for c in run.charges) == count * interest


def test_40_price_ticks_to_1000_futures_holders_in_one_apply(app: LedgerApp) -> None:
    """The issue's other recipe (stuck in INSERT INTO ledgerapp_snapshots): 1,000 unified
    accounts hold 0.1 BTC-USDT futures on 1 BTC of collateral and no USDT; BTC falls 10 USDT
    40 times in one batch.  Since issue 15 a tick writes only its PriceSet; a deposit to every
holder then books each one's derived 40 USDT (B1) at that rule instant, 1,000 accounts in one save."""
    holders, ticks = 1_000, 40
    at = iso(T0 + timedelta(minutes=10))
    apply_all(app, PLATFORM + [cmd for n in range(holders) for cmd in unified(f"h{n:04d}") + [
        {"type": "deposit", "account": f"h{n:04d}", "currency": "BTC", "amount": "1", "at": at},
        {"type": "place_order", "account": f"h{n:04d}", "order_id": f"o{n}", "market": "futures",
         "symbol": "BTC-USDT", "side": "buy", "qty": "0.1", "price": "50000", "at": at},
        {"type": "fill_order", "account": f"h{n:04d}", "order_id": f"o{n}", "qty": "0.1", "price": "50000", "at": at}]])
    cmds = [{"type": "set_price", "currency": "BTC", "price": str(50_000 - 10 * (k + 1)),
             "at": iso(T0 + timedelta(minutes=20 + k))} for k in range(ticks)]
    results = within(120, lambda: app.apply(cmds, lambda: T0, latest))
    assert all(r["ok"] for r in results)
    assert [len(r["events"]) for r in results] == [1] * ticks  # a tick writes only its PriceSet (issue 15)
    # the next rule instant books the derived figure for every holder, in one large save
    deposits = [{"type": "deposit", "account": f"h{n:04d}", "currency": "BTC", "amount": "0.001",
                 "at": iso(T0 + timedelta(minutes=20 + ticks))} for n in range(holders)]
    results = within(120, lambda: app.apply(deposits, lambda: T0, latest))
    assert all(r["ok"] for r in results)
    assert [sum(e["type"] == "Borrowed" for e in r["events"]) for r in results] == [1] * holders
    accounts = app.repository.get_many([f"account/h{n:04d}" for n in range(holders)])  # type: ignore[attr-defined]
    assert {(a.liability("USDT"), a.upl_liability["USDT"]) for a in accounts.values()} == {(Decimal(ticks),) * 2}
    assert app.platform().price("BTC") == Decimal(50_000 - 10 * ticks)
