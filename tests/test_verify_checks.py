"""`ledger audit verify`, per aggregate (issue 13): versions contiguous from 1, `at` never going
back for accounts and the platform (T1), and every event linked; on SQLite and PostgreSQL.

V1  The issue's case as written: a copy of an earlier `Deposited` row inserted by SQL at the
    account's next version (so with an `at` earlier than the account's later events) is a
    `time` finding — before any seal, and after a seal has linked it as if genuine.
V2  A gap in an aggregate's versions (a middle event deleted, the first one deleted) is a
    `version` finding naming the aggregate.
V3  A reordered pair (two events of one account exchange their versions, links rewritten to
    match) is a `time` finding.
V4  An event without a link before the chain's head is a `chain` finding; after the head it is
    counted as `unsealed` (not a finding), unless the store links at commit.
V5  The read models are compared with the log at their own position: a lagging view is
    reported (`views.lag`), not caught up, and an edited row in it is still found.
V6  Property: no generated history, tampered with at random (a back-dated copy at the next
    version, sealed or not; two events' states swapped; one event deleted; one byte
    changed), passes verify.
"""
from __future__ import annotations

import json
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ledger.adapters.store import persistence_env
from projections import audit, runner
from projections.sql import ViewDatabase
from tests import pg
from tests.test_audit import Raw, apply_ok, build_base, cmd, verify
from tests.test_projections import History
from tests.helpers import ledger_cli


def seal(db_url: str) -> None:
    assert ledger_cli(db_url, "audit", "seal").exit_code == 0


def kinds(report: dict[str, Any]) -> set[str]:
    return {f["kind"] for f in report["findings"]}


def at_of(state: bytes) -> datetime:
    return datetime.fromisoformat(json.loads(state)["at"]["_data_"])


def insert(raw: Raw, aggregate: str, version: int, topic: str, state: bytes) -> None:
    raw.run(f"INSERT INTO {raw.table} (originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?)",
            (aggregate, version, topic, state))


# --- V1: the case ------------------------------------------------------------------------
@pytest.mark.parametrize("sealed_after", [False, True], ids=["unsealed", "sealed-after-the-insert"])
def test_a_forged_back_dated_deposit_is_found(db_url: str, sealed_after: bool) -> None:
    build_base(db_url)
    seal(db_url)
    code, report = verify(db_url)
    assert (code, report["findings"], report["unsealed"]) == (0, [], 0), report
    with Raw(db_url) as raw:
        bob = [r for r in raw.events() if r[1] == "account/bob"]
        deposit = next(r for r in bob if r[3].endswith(".Deposited"))
        assert at_of(deposit[4]) < at_of(bob[-1][4])
        insert(raw, "account/bob", bob[-1][2] + 1, deposit[3], deposit[4])  # a copy at the next version
        forged = raw.events()[-1][0]
    if sealed_after:  # the seal window: the forgery is linked as if it were genuine
        seal(db_url)
    code, report = verify(db_url)
    assert code == 1 and report["ok"] is False, report
    [finding] = [f for f in report["findings"] if f["kind"] == "time"]
    assert finding["aggregate"] == "account/bob" and finding["position"] == forged, finding
    assert "T1" in finding["detail"], finding
    assert "+00:00" not in finding["detail"] and "Z" in finding["detail"], finding  # RFC 3339, as everywhere
    # books and replay are consistent: T1 sees it; and the store, which links each event at
    # commit, never linked the forged row, so the chain names it too unless a seal linked it
    assert kinds(report) == ({"time"} if sealed_after else {"chain", "time"}), report
    assert report["unsealed"] == 0, report  # an unlinked event is a finding, not "unsealed", in a store that links at commit


# --- V2: gaps in versions --------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["middle", "first"])
def test_a_gap_in_an_aggregates_versions_is_found(db_url: str, which: str) -> None:
    build_base(db_url)
    seal(db_url)
    with Raw(db_url) as raw:
        alice = [r for r in raw.events() if r[1] == "account/alice"]
        gone = alice[0] if which == "first" else alice[len(alice) // 2]
        raw.delete(gone[0])
    code, report = verify(db_url)
    assert code == 1, report
    [finding] = [f for f in report["findings"] if f["kind"] == "version"]
    assert finding["aggregate"] == "account/alice", finding
    expected = "starts at v2" if which == "first" else f"has no v{gone[2]}"
    assert expected in finding["detail"], finding


# --- V3: a reordered pair --------------------------------------------------------------------------
def test_a_reordered_pair_is_found_even_with_the_links_rewritten(db_url: str) -> None:
    build_base(db_url)
    with Raw(db_url) as raw:
        bob = [r for r in raw.events() if r[1] == "account/bob"]
        a, b = bob[-2], bob[-1]
        assert at_of(a[4]) < at_of(b[4])
        for position, version in ((a[0], -1), (b[0], a[2]), (a[0], b[2])):  # exchange their versions
            raw.run(f"UPDATE {raw.table} SET originator_version = ? WHERE {raw.id} = ?", (version, position))
        raw.relink()  # the chain is rewritten over the reordered log: it cannot tell
    code, report = verify(db_url)
    assert code == 1 and "chain" not in kinds(report), report
    [finding] = [f for f in report["findings"] if f["kind"] == "time"]
    assert finding["aggregate"] == "account/bob", finding


# --- V4: events without a link ---------------------------------------------------------------------
def test_an_event_without_a_link_before_the_head_is_found(db_url: str) -> None:
    build_base(db_url)
    seal(db_url)
    with Raw(db_url) as raw:
        positions = [r[0] for r in raw.events()]
        raw.delete_link(positions[len(positions) // 2])
    code, report = verify(db_url)
    assert code == 1, report
    chain = [f for f in report["findings"] if f["kind"] == "chain"]
    assert [f["position"] for f in chain] == [positions[len(positions) // 2]], report
    assert "has no link" in chain[0]["detail"]


def test_events_after_the_head_are_unsealed_unless_the_store_links_at_commit(db_url: str) -> None:
    build_base(db_url)
    seal(db_url)
    with Raw(db_url) as raw:
        before = len(raw.events())
    apply_ok(db_url, [cmd("deposit", 70, account="bob", currency="USDT", amount="1"),
                      cmd("deposit", 71, account="alice", currency="USDT", amount="1")])
    with Raw(db_url) as raw:
        rows = raw.events()
        added = len(rows) - before
        for row in rows[before:]:  # as a log written before the stores linked at commit
            raw.delete_link(row[0])
    env = persistence_env(db_url, read_only=True)
    with audit_app(env) as (app, db):
        app.recorder.links_at_commit = False  # what a store that did not link at commit says
        found = audit.verify(app, db)
    assert (found.findings, found.unsealed) == ([], added), found.findings
    result = ledger_cli(db_url, "audit", "verify")  # the stores link at commit: every unlinked event is named
    assert result.exit_code == 1 and "not written by the ledger" in result.output + result.stderr, result.output
    digest = ledger_cli(db_url, "audit", "digest")
    assert digest.exit_code == 0 and "not sealed" in digest.stderr
    seal(db_url)  # the one-off catch-up for an older log
    code, report = verify(db_url)
    assert (code, report["unsealed"]) == (0, 0), report


class audit_app:
    def __init__(self, env: dict[str, str]) -> None:
        from ledger.service.app import LedgerApp

        self.app, self.db = LedgerApp(env=env), ViewDatabase(env)

    def __enter__(self) -> tuple[Any, ViewDatabase]:
        return self.app, self.db

    def __exit__(self, *exc: Any) -> None:
        self.db.close()
        self.app.close()


# --- V5: lagging views are read where they are ------------------------------------------------------
def test_lagging_views_are_checked_at_their_own_position(db_url: str) -> None:
    build_base(db_url)
    assert ledger_cli(db_url, "projections", "run").exit_code == 0
    apply_ok(db_url, [cmd("deposit", 70, account="bob", currency="USDT", amount="7")])
    code, report = verify(db_url)
    assert code == 0 and report["views"]["lag"] > 0, report
    with Raw(db_url) as raw:
        assert report["views"]["position"] + report["views"]["lag"] == raw.events()[-1][0]
        raw.run("UPDATE view_balances SET cash = ? WHERE account = 'bob' AND currency = 'USDT'", ("1",))
    code, report = verify(db_url)
    assert code == 1 and kinds(report) == {"read_model"}, report
    assert report["views"]["lag"] > 0, "verify does not catch the views up"


# --- V6: no tampering passes -----------------------------------------------------------------------
TAMPERINGS = ("forge", "forge_sealed", "swap_states", "delete", "byte")


def events_table(db: ViewDatabase) -> tuple[str, str]:
    return ("ledgerapp_events", "notification_id") if db.postgres else ("stored_events", "rowid")


def tamper(db: ViewDatabase, how: str, data: st.DataObject) -> None:
    table, pos = events_table(db)
    rows = [(int(p), a, int(v), t, bytes(s.encode() if isinstance(s, str) else s)) for p, a, v, t, s in
            db.rows(f"SELECT {pos}, originator_id, originator_version, topic, state FROM {table} ORDER BY {pos}")]
    if how.startswith("forge"):  # an earlier event of an account copied to its next version
        accounts = [r for r in rows if r[1].startswith("account/")]
        last = {a: max((v, at_of(s)) for _, b, v, _, s in accounts if b == a) for a in {r[1] for r in accounts}}
        earlier = [r for r in accounts if at_of(r[4]) < last[r[1]][1]]
        assume(earlier)
        _, aggregate, _, topic, state = data.draw(st.sampled_from(earlier), label="copied")
        db.execute(f"INSERT INTO {table} (originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?)",
                   [aggregate, last[aggregate][0] + 1, topic, state])
        return
    if how == "swap_states":
        p, q = data.draw(st.lists(st.sampled_from(rows), min_size=2, max_size=2, unique_by=lambda r: r[0]), label="pair")
        assume(p[4] != q[4])
        db.execute(f"UPDATE {table} SET state = ? WHERE {pos} = ?", [q[4], p[0]])
        db.execute(f"UPDATE {table} SET state = ? WHERE {pos} = ?", [p[4], q[0]])
        return
    row = data.draw(st.sampled_from(rows), label="event")
    if how == "delete":
        db.execute(f"DELETE FROM {table} WHERE {pos} = ?", [row[0]])
        return
    offset = data.draw(st.integers(0, len(row[4]) - 1), label="offset")
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != row[4][offset]), label="byte")
    db.execute(f"UPDATE {table} SET state = ? WHERE {pos} = ?", [row[4][:offset] + bytes([byte]) + row[4][offset + 1:], row[0]])


def tampering_example(env: dict[str, str], how: str, data: st.DataObject) -> None:
    h = History(env)
    try:
        h.prelude()
        for _ in range(data.draw(st.integers(3, 12), label="steps")):
            h.step(data)
        audit.seal(h.app, h.db)  # the writer side links every event
        if data.draw(st.booleans(), label="views built"):
            runner.run(h.app, h.db)
        kept = audit.digest(h.db)
        assert audit.verify(h.app, h.db, kept).findings == []
        tamper(h.db, how, data)
        if how == "forge_sealed":
            audit.seal(h.app, h.db)
        result = audit.verify(h.app, h.db, kept)
        assert result.findings, f"{how} passed verify"
        if how.startswith("forge"):
            assert "time" in {f["kind"] for f in result.findings}, result.findings
    finally:
        h.close()


SETTINGS = dict(deadline=None, derandomize=True, print_blob=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])


@pytest.mark.parametrize("how", TAMPERINGS)
def test_no_tampering_passes_verify_sqlite(how: str) -> None:
    @settings(max_examples=8, **SETTINGS)
    @given(data=st.data())
    def inner(data: st.DataObject) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            tampering_example({"PERSISTENCE_MODULE": "stores.sqlite", "SQLITE_DBNAME": str(Path(tmp) / "ledger.db")},
                              how, data)

    inner()


@pytest.mark.postgres
@pytest.mark.parametrize("how", TAMPERINGS)
def test_no_tampering_passes_verify_postgres(how: str) -> None:
    pg.require_server()

    @settings(max_examples=3, **SETTINGS)
    @given(data=st.data())
    def inner(data: st.DataObject) -> None:
        tampering_example(pg.env(pg.new_schema()), how, data)

    inner()
