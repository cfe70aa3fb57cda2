"""Issue 13: the audit chain is written in the same transaction as the events it covers, on
both stores (stores/chain.py), with the formula `ledger audit seal` always used; an edit made
at any moment after a commit is detected; `seal` remains only to link logs written before.
"""
from __future__ import annotations

import hashlib
import json
import threading
from datetime import timedelta

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from ledger.service.app import LedgerApp
from ledger.adapters.store import persistence_env
from projections.sql import ViewDatabase
from tests.helpers import Ledger, T0, at, ledger_cli
from tests.test_audit import Raw, apply_ok, verify
from workers.interest import run_interest

GENESIS = "0" * 64


def sealed_as_before(app: LedgerApp) -> dict[int, str]:
    """The links the sealer of issue 7 computed over the log, written out again here."""
    links, previous = {}, GENESIS
    for n in app.recorder.select_notifications(start=1, limit=1_000_000):
        body = f"{previous}|{n.id}|{n.originator_id}|{n.originator_version}|{n.topic}|".encode() + bytes(n.state)
        links[n.id] = previous = hashlib.sha256(body).hexdigest()
    return links


def stored_links(env: dict[str, str]) -> dict[int, str]:
    db = ViewDatabase(env)
    try:
        return {int(p): link for p, link in db.rows("SELECT position, link FROM audit_chain")}
    finally:
        db.close()


def busy(ledger: Ledger) -> None:
    """Saves of every kind: single commands, a batch with snapshots, an interest run."""
    ledger.oks({"type": "set_price", "currency": "BTC", "price": "50000", "at": at(0)},
               {"type": "set_interest_rate", "currency": "USDT", "hourly_rate": "0.0001", "at": at(0)})
    ledger.unified_master("alice", {"BTC": "1"})
    ledger.ok({"type": "borrow", "account": "alice", "currency": "USDT", "amount": "100", "at": at(5)})
    results = ledger.apply(*[{"type": "deposit", "account": "alice", "currency": "USDT", "amount": "1", "at": at(6 + n / 100)}
                             for n in range(45)])  # crosses two snapshot points in one save
    assert all(r["ok"] for r in results)
    assert run_interest(ledger.app, T0 + timedelta(hours=3)).charges


def test_every_save_links_its_events_with_the_formula_seal_used(ledger: Ledger) -> None:
    busy(ledger)
    expected = sealed_as_before(ledger.app)
    assert len(expected) == ledger.app.recorder.max_notification_id() > 60
    assert stored_links(ledger.env) == expected  # no seal has run: the writers linked every event
    assert ledger.app.recorder.link_backlog() == 0


def test_the_first_link_is_the_formula_on_the_first_event(ledger: Ledger) -> None:
    ledger.open("alice")
    [n] = ledger.app.recorder.select_notifications(start=1, limit=1)
    body = f"{GENESIS}|1|account/alice|1|{n.topic}|".encode() + bytes(n.state)
    assert stored_links(ledger.env) == {1: hashlib.sha256(body).hexdigest()}


def test_a_save_that_fails_leaves_no_link(ledger: Ledger) -> None:
    ledger.open("alice")
    duplicate = ledger.app.recorder.select_notifications(start=1, limit=1)[0]
    with pytest.raises(IntegrityError):
        ledger.app.recorder.insert_events([
            StoredEvent("account/bob", 1, duplicate.topic, b"{}"),
            StoredEvent(duplicate.originator_id, duplicate.originator_version, duplicate.topic, b"{}")])
    ledger.open("bob")
    assert stored_links(ledger.env) == sealed_as_before(ledger.app) and len(stored_links(ledger.env)) == 2


def test_concurrent_writers_keep_one_chain(store_env: dict[str, str]) -> None:
    """Writers are serialised by the store's lock: each reads the head its predecessor wrote."""
    apps = [LedgerApp(env=store_env) for _ in range(3)]
    errors: list[BaseException] = []

    def write(app: LedgerApp, n: int) -> None:
        try:
            for k in range(15):
                app.recorder.insert_events([StoredEvent(f"w{n}/{k}", v, "t", f'{{"v":{v}}}'.encode()) for v in (1, 2, 3)])
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=write, args=(app, n)) for n, app in enumerate(apps)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert not errors, errors
        assert stored_links(store_env) == sealed_as_before(apps[0]) and len(sealed_as_before(apps[0])) == 135
    finally:
        for app in apps:
            app.close()


def test_an_edit_right_after_the_commit_is_detected_without_any_seal(db_url: str) -> None:
    """The window of issue 13 is gone: nothing seals, and an event edited right after its
    save no longer gets sealed as genuine."""
    apply_ok(db_url, [{"type": "open_account", "account": "alice"},
                      {"type": "deposit", "account": "alice", "currency": "USDT", "amount": "100"}])
    with Raw(db_url) as raw:
        [(position, _, _, _, state)] = [r for r in raw.events() if r[3].endswith(".Deposited")]
        assert b'"100"' in state
        raw.set_state(position, state.replace(b'"100"', b'"100000"'))
    code, report = verify(db_url)
    assert code == 1, report
    assert {"kind": "chain", "position": position} in [{"kind": f["kind"], "position": f.get("position")}
                                                       for f in report["findings"]], report


def test_seal_links_a_log_written_before_and_writers_link_again(db_url: str) -> None:
    """A log written before this change has no links (here: removed).  Writers do not link
    over events they did not write; `ledger audit seal` links the backlog once, in order,
    and from then on every save links its own events."""
    apply_ok(db_url, [{"type": "open_account", "account": "alice"}, {"type": "open_account", "account": "bob"}])
    with Raw(db_url) as raw:
        raw.run("DELETE FROM audit_chain")
    apply_ok(db_url, [{"type": "deposit", "account": "alice", "currency": "USDT", "amount": "5"}])
    env = persistence_env(db_url)
    assert stored_links(env) == {}
    result = ledger_cli(db_url, "audit", "seal")
    assert result.exit_code == 0, result.output
    apply_ok(db_url, [{"type": "deposit", "account": "bob", "currency": "USDT", "amount": "7"}])
    app = LedgerApp(env=env)
    try:
        expected = sealed_as_before(app)
        assert stored_links(env) == expected and len(expected) == app.recorder.max_notification_id()
        assert app.recorder.link_backlog() == 0
    finally:
        app.close()
    code, report = verify(db_url)
    assert (code, report["ok"]) == (0, True), report


def test_seal_links_a_long_backlog_page_by_page(ledger: Ledger) -> None:
    app = ledger.app
    app.recorder.insert_events([StoredEvent(f"e/{n}", 1, "t", json.dumps({"n": n}).encode()) for n in range(2_500)])
    db = ViewDatabase(ledger.env)
    try:
        with db.transaction():
            db.execute("DELETE FROM audit_chain WHERE position > ?", [700])
    finally:
        db.close()
    assert app.recorder.link_backlog() == 1_800
    assert stored_links(ledger.env) == sealed_as_before(app)

