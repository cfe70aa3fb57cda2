"""ledger.service.topics: events stored under a topic that has since moved still load (issue 14).

A move is simulated the other way round: the code stays where it is and the store is made to
hold topics of a module that "used to be" elsewhere (``ledger.legacy_account``), as a store
written before a move holds the old ones.  One line of the table brings it back."""
from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from eventsourcing.utils import TopicError, resolve_topic

from ledger.service import topics
from ledger.domain.account import Account
from ledger.service.app import LedgerApp
from ledger.domain.indexes import LendingPool
from tests.helpers import ledger_cli
from tests.test_fixture_store import EXPECTED, STORE

OLD_MODULE = "ledger.legacy_account"  # where Account "lived" before
OLD_POOL = "ledger.legacy_indexes:Pool"  # a renamed class, moved too


def rename_in_store(path: Path, old: bytes, new: bytes) -> int:
    """Write the store as if ``new`` had been the topic prefix when it was written: the
    events' and snapshots' topics and the topics inside their states."""
    changed = 0
    with sqlite3.connect(path) as con:
        for table in ("stored_events", "stored_snapshots"):
            rows = con.execute(f"SELECT originator_id, originator_version, topic, state FROM {table}").fetchall()
            for key, version, topic, state in rows:
                if old in topic.encode() or old in bytes(state):
                    con.execute(f"UPDATE {table} SET topic = ?, state = ? WHERE originator_id = ? AND originator_version = ?",
                                [topic.encode().replace(old, new).decode(), bytes(state).replace(old, new), key, version])
                    changed += 1
    return changed


def test_every_moved_topic_resolves_to_a_current_place() -> None:
    """Each line's target exists now, and an old topic never hides a current one."""
    topics.register()
    for old, new in topics.MOVED.items():
        assert resolve_topic(old) is topics._locate(new), old
        with pytest.raises(ImportError):
            __import__(old.partition(":")[0])


def test_stored_topics_names_the_old_ones_too() -> None:
    moved = {OLD_MODULE: "ledger.domain.account", OLD_POOL: "ledger.domain.indexes:LendingPool"}
    assert topics.stored_topics(Account.Deposited, moved) == ["ledger.domain.account:Account.Deposited",
                                                               f"{OLD_MODULE}:Account.Deposited"]
    assert topics.stored_topics(LendingPool.OutstandingChanged, moved) == [
        "ledger.domain.indexes:LendingPool.OutstandingChanged", f"{OLD_POOL}.OutstandingChanged"]
    assert topics.stored_topics(Account, moved) == ["ledger.domain.account:Account", f"{OLD_MODULE}:Account"]
    assert topics.stored_topics(LendingPool, {}) == ["ledger.domain.indexes:LendingPool"]


def test_an_event_under_an_old_topic_loads_once_the_move_is_in_the_table(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole fixture store, written as if Account had lived in ``ledger.legacy_account``
    and LendingPool had been ``ledger.legacy_indexes:Pool``: events, snapshots and the topics
    inside them.  Unknown topics fail to load; with two lines in MOVED every account answers
    as before, `account list` finds them (it filters by topic), and new events are written
    under today's topics next to the old ones."""
    copy = tmp_path / "moved.db"
    shutil.copyfile(STORE, copy)
    assert rename_in_store(copy, b"ledger.account:", f"{OLD_MODULE}:".encode()) > 100
    assert rename_in_store(copy, b"ledger.indexes:LendingPool", OLD_POOL.encode()) > 100
    url = f"sqlite:///{copy}"

    monkeypatch.setattr(topics, "MOVED", {})
    with pytest.raises(TopicError):
        resolve_topic(f"{OLD_MODULE}:Account.Deposited")
    unknown = ledger_cli(url, "account", "show", "alice", "--json")
    assert unknown.exit_code == 2 and "cannot read" in unknown.stderr and OLD_MODULE in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1 and "Traceback" not in unknown.output

    monkeypatch.setattr(topics, "MOVED", {**topics.MOVED, OLD_MODULE: "ledger.domain.account", OLD_POOL: "ledger.domain.indexes:LendingPool"})
    listed = json.loads(ledger_cli(url, "account", "list", "--json").stdout)
    assert [row["account"] for row in listed] == sorted(EXPECTED["accounts"])
    for account, expected in EXPECTED["accounts"].items():
        shown = ledger_cli(url, "account", "show", account, "--json")
        assert json.loads(shown.stdout) == expected, account

    deposit = {"type": "deposit", "account": "carol", "currency": "USDT", "amount": "1", "at": "2026-06-01T12:10:00Z"}
    assert ledger_cli(url, "apply", "-", input=json.dumps(deposit) + "\n").exit_code == 0
    app = LedgerApp(env={"PERSISTENCE_MODULE": "stores.sqlite", "SQLITE_DBNAME": str(copy)})
    try:
        stored = {n.topic for n in app.recorder.select_notifications(start=1, limit=10_000)
                  if n.originator_id == "account/carol"}
        assert "ledger.domain.account:Account.Deposited" in stored and f"{OLD_MODULE}:Account.Deposited" in stored
        assert [type(e).__name__ for e in app.history("carol")][-1] == "Deposited"
        assert type(app.find("pool/USDT")) is LendingPool  # from a snapshot stored under the old name
    finally:
        app.close()
