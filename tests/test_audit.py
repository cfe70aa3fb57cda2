"""Audit (SPEC §0 auditors, D1, §13 `ledger audit`, §14 `audit verify --json`), on SQLite and
PostgreSQL.

A1  Point in time: at several instants of a scenario (deposits, borrows, a futures position,
    price moves, interest runs, a liquidation and a forced swap by the sweep) the live
    `account show X --json` is recorded; afterwards `account show X --as-of T --json` and
    `audit replay --as-of T --json` give exactly what was seen live at T (prices and pool
    totals are platform state at T, so every field, margin included, must match).
A2  Tamper evidence: on a sealed store whose digest the auditor kept, raw SQL that alters one
    byte of an event, garbles one, deletes the first / a middle / the last event, swaps two
    events' states, or deletes the last event together with its link, is found by
    `audit verify --digest D --json` (ok false, exit 1, a finding of kind chain or replay);
    the clean store verifies (ok true, exit 0), also against an older digest.
A3  Double entry (D1): after a generated history with interest runs, forced swaps,
    liquidations and bad debt, every event's postings balance per currency, each event's
    postings move the account's own books exactly as the event moves the account, the books
    sum to zero per currency, each user's wallet / liability book equals the account, and the
    lending pools equal the sum of the liabilities; `audit verify` finds nothing.
A4  verify's other checks fire: an InterestCharged edited with every link rewritten to match
    (so the chain is valid) gives a finding of kind interest; an edited or deleted view_balances row gives
    read_model.
A5  `audit export --format jsonl|csv` gives every event with its links; the chain recomputed
    offline from the export matches the links and the digest; a period export holds exactly
    the events of the period, each verifiable from its previous link.
"""
from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import sqlite3
import tempfile
from collections import Counter
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ledger.domain.account import UNIFIED, Account
from ledger.service.app import LedgerApp
from ledger.domain.postings import postings, unbalanced
from ledger.adapters.store import persistence_env
from projections import audit
from projections.sql import ViewDatabase
from tests import pg
from tests.helpers import ledger_cli, T0, Ledger, at
from tests.test_projections import History
from workers.interest import run_interest
from workers.sweep import run_sweep

D = Decimal
ZERO = D(0)
SEC = timedelta(seconds=1)
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)
GENESIS = "0" * 64


def rfc(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def m(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# --- the store, through the CLI and through raw SQL -------------------------------------------------
def apply_ok(db_url: str, cmds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    result = ledger_cli(db_url, "apply", "-", input="".join(json.dumps(c) + "\n" for c in cmds))
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 0 and all(a["ok"] for a in answers), result.output
    return answers


@contextmanager
def opened(db_url: str) -> Iterator[LedgerApp]:
    app = LedgerApp(env=persistence_env(db_url))
    try:
        yield app
    finally:
        app.close()


@contextmanager
def views_db(db_url: str) -> Iterator[ViewDatabase]:
    db = ViewDatabase(persistence_env(db_url))
    try:
        yield db
    finally:
        db.close()


def interest(db_url: str, at: datetime) -> list[Any]:
    with opened(db_url) as app:
        return run_interest(app, at).charges


def sweep(db_url: str, at: datetime) -> list[dict[str, Any]]:
    with opened(db_url) as app:
        return run_sweep(app, at).actions


def verify(db_url: str, *args: str) -> tuple[int, dict[str, Any]]:
    result = ledger_cli(db_url, "audit", "verify", *args, "--json")
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"verify printed no JSON (exit {result.exit_code}): {result.output!r} "
                             f"{result.exception!r}") from result.exception
    assert set(report) >= {"ok", "events_checked", "findings"}, report
    assert all({"kind", "detail"} <= set(f) for f in report["findings"]), report
    assert report["ok"] == (not report["findings"]), report
    return result.exit_code, report


def digest(db_url: str) -> str:
    """Seal as the writer side does (the worker; the insert itself once links are written at
    commit), then the digest, which only reads."""
    assert ledger_cli(db_url, "audit", "seal").exit_code == 0
    result = ledger_cli(db_url, "audit", "digest")
    assert result.exit_code == 0, result.output
    text = result.stdout.strip()
    position, _, link = text.partition(":")
    assert position.isdigit() and len(link) == 64, text
    return text


class Raw:
    """The event and chain tables through the driver, as a tamperer would see them."""

    def __init__(self, db_url: str) -> None:
        env = persistence_env(db_url)
        self.postgres = env["PERSISTENCE_MODULE"].endswith("postgres")
        if self.postgres:
            import psycopg

            self.conn: Any = psycopg.connect(db_url, autocommit=True)
            [(self.table,)] = self.conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
                "AND table_name LIKE '%\\_events'").fetchall()
            self.id = "notification_id"
        else:
            self.conn = sqlite3.connect(env["SQLITE_DBNAME"], isolation_level=None)
            self.table, self.id = "stored_events", "rowid"

    def __enter__(self) -> "Raw":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.conn.close()

    def run(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.postgres:
            statement = statement.replace("?", "%s")
        cursor = self.conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []

    def events(self) -> list[tuple[int, str, int, str, bytes]]:
        rows = self.run(f"SELECT {self.id}, originator_id, originator_version, topic, state FROM {self.table} "
                        f"ORDER BY {self.id}")
        return [(int(i), a, int(v), t, bytes(s)) for i, a, v, t, s in rows]

    def set_state(self, position: int, state: bytes) -> None:
        self.run(f"UPDATE {self.table} SET state = ? WHERE {self.id} = ?", (state, position))

    def delete(self, position: int) -> None:
        self.run(f"DELETE FROM {self.table} WHERE {self.id} = ?", (position,))

    def delete_link(self, position: int) -> None:
        self.run("DELETE FROM audit_chain WHERE position = ?", (position,))

    def relink(self) -> None:
        """Rewrite every link to match the log as it is now (a tamperer who knows the formula)."""
        previous = GENESIS
        for p, aggregate, version, topic, body in self.events():
            previous = hashlib.sha256(f"{previous}|{p}|{aggregate}|{version}|{topic}|".encode() + body).hexdigest()
            self.run("UPDATE audit_chain SET link = ? WHERE position = ?", (previous, p))


# --- A1: point in time ---------------------------------------------------------------------------------
def unified(name: str, minutes: float, deposits: dict[str, str]) -> list[dict[str, Any]]:
    cmds: list[dict[str, Any]] = [
        {"type": "open_account", "account": name},
        {"type": "whitelist", "account": name},
        {"type": "complete_risk_assessment", "account": name, "score": 80, "agreements_version": "v1"},
        {"type": "switch_mode", "account": name, "mode": "unified"},
    ] + [{"type": "deposit", "account": name, "currency": c, "amount": a} for c, a in deposits.items()]
    return [{**c, "at": rfc(m(minutes) + i * SEC)} for i, c in enumerate(cmds)]


def cmd(kind: str, minutes: float, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "at": rfc(m(minutes)), **fields}


# ("apply", [commands]) | ("interest", at) | ("sweep", at) | ("capture", at)
SCENARIO: list[tuple[str, Any]] = [
    ("apply", [cmd("set_price", 0, currency="BTC", price="20000"),
               cmd("set_price", 0, currency="ETH", price="1500"),
               cmd("set_interest_rate", 0, currency="USDT", hourly_rate="0.0001"),
               cmd("set_interest_rate", 0, currency="BTC", hourly_rate="0.0002"),
               *unified("alice", 1, {"BTC": "1", "USDT": "2000", "ETH": "3"}),
               *unified("bob", 2, {"BTC": "0.2"}),
               cmd("open_account", 3, account="carol"),
               cmd("deposit", 3.5, account="carol", currency="USDT", amount="500")]),
    ("capture", m(5)),
    ("apply", [cmd("borrow", 10, account="alice", currency="USDT", amount="5000"),
               cmd("withdraw", 10.5, account="alice", currency="USDT", amount="5000"),
               cmd("borrow", 11, account="bob", currency="USDT", amount="2500"),
               cmd("withdraw", 11.5, account="bob", currency="USDT", amount="2500"),
               cmd("place_order", 12, account="alice", order_id="f1", market="futures", symbol="BTC-USDT",
                   side="buy", qty="0.2", price="20000"),
               cmd("fill_order", 12.5, account="alice", order_id="f1", qty="0.2", price="20000", fee="2"),
               cmd("place_order", 13, account="carol", order_id="s1", market="spot", symbol="BTC-USDT",
                   side="buy", qty="0.01", price="19000")]),
    ("capture", m(20)),
    ("apply", [cmd("set_price", 30, currency="BTC", price="19000"),
               cmd("borrow", 31, account="alice", currency="BTC", amount="0.05")]),
    ("capture", m(45)),  # between events
    ("apply", [cmd("open_account", 50, account="dave")]),
    ("interest", m(60)),
    ("capture", m(60)),
    ("apply", [cmd("deposit", 61, account="alice", currency="USDT", amount="1000"),
               cmd("set_price", 70, currency="BTC", price="13000")]),
    ("sweep", m(75)),
    ("capture", m(75)),
    ("apply", [cmd("set_borrow_quota", 80, currency="USDT", amount="1000")]),
    ("sweep", m(85)),
    ("capture", m(85)),
    ("interest", m(120)),
    ("apply", [cmd("set_price", 121, currency="BTC", price="21000"),
               cmd("cancel_order", 122, account="carol", order_id="s1")]),
    ("capture", m(122)),
    ("apply", [cmd("deposit", 130, account="alice", currency="USDT", amount="1"),
               cmd("set_price", 131, currency="BTC", price="25000"),
               cmd("set_interest_rate", 132, currency="USDT", hourly_rate="0.0005")]),
    ("interest", m(180)),
]
ACCOUNTS = ("alice", "bob", "carol", "dave")


def normal(value: Any) -> Any:
    """§14: money compares as decimals ("0.80" equals "0.8")."""
    if isinstance(value, dict):
        return {k: normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normal(v) for v in value]
    if isinstance(value, str):
        try:
            return ("decimal", D(value))
        except InvalidOperation:
            return value
    return value


def show(db_url: str, account: str, *args: str) -> dict[str, Any]:
    result = ledger_cli(db_url, "account", "show", account, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_state_at_any_past_instant_equals_what_was_seen_then(db_url: str) -> None:
    """§0 auditors, §13: `account show --as-of T` and `audit replay --as-of T` equal the live
    views recorded at T."""
    seen: dict[datetime, dict[str, dict[str, Any]]] = {}
    opened_accounts: set[str] = set()
    did: Counter[str] = Counter()
    for kind, what in SCENARIO:
        if kind == "apply":
            for answer in apply_ok(db_url, what):
                did.update(e["type"] for e in answer["events"])
            opened_accounts |= {c["account"] for c in what if c["type"] == "open_account"}
        elif kind == "interest":
            did["InterestCharged"] += len(interest(db_url, what))
        elif kind == "sweep":
            did.update(f"sweep:{a['kind']}" for a in sweep(db_url, what))
        else:
            seen[what] = {a: show(db_url, a) for a in sorted(opened_accounts)}
    # the scenario does what it says: interest, a liquidation, a forced swap
    assert did["InterestCharged"] >= 3 and did["sweep:liquidation"] >= 1 and did["sweep:forced_quota"] >= 1, did
    for t, views in seen.items():
        for account in ACCOUNTS:
            if account in views:
                then = show(db_url, account, "--as-of", rfc(t))
                assert normal(then) == normal(views[account]), f"{account} at {rfc(t)}: as-of differs from live"
                assert then == views[account], f"{account} at {rfc(t)}: same values, other spelling"
            else:
                missing = ledger_cli(db_url, "account", "show", account, "--as-of", rfc(t), "--json")
                assert missing.exit_code == 1, f"{account} did not exist at {rfc(t)}: {missing.output}"
        result = ledger_cli(db_url, "audit", "replay", "--as-of", rfc(t), "--json")
        assert result.exit_code == 0, result.output
        replayed = json.loads(result.stdout)
        assert replayed["as_of"] == rfc(t)
        assert [v["account"] for v in replayed["accounts"]] == sorted(views)
        assert normal(replayed["accounts"]) == normal([views[a] for a in sorted(views)]), f"replay at {rfc(t)}"
    # the latest capture is not the present: later events changed alice, and as-of ignores them
    last = max(seen)
    assert normal(show(db_url, "alice")) != normal(seen[last]["alice"])


# --- A2: tamper evidence ---------------------------------------------------------------------------
BASE = [
    cmd("set_price", 0, currency="BTC", price="20000"),
    cmd("set_interest_rate", 0, currency="USDT", hourly_rate="0.0001"),
    *unified("alice", 1, {"BTC": "1"}),
    *unified("bob", 2, {"USDT": "3000"}),
    cmd("borrow", 5, account="alice", currency="USDT", amount="4000"),
    cmd("withdraw", 6, account="alice", currency="USDT", amount="4000"),
    cmd("deposit", 7, account="bob", currency="USDT", amount="111"),
    cmd("deposit", 8, account="bob", currency="USDT", amount="222"),
]


def build_base(db_url: str) -> None:
    """A store with accounts, a borrow, deposits and an interest charge (no seal yet)."""
    apply_ok(db_url, BASE)
    assert interest(db_url, m(60)), "the base store has an interest charge"
    apply_ok(db_url, [cmd("deposit", 61, account="bob", currency="USDT", amount="5"),
                      cmd("deposit", 62, account="alice", currency="USDT", amount="10")])


def aggregate_events(raw: Raw, aggregate: str) -> list[tuple[int, str, int, str, bytes]]:
    return [r for r in raw.events() if r[1] == aggregate]


def deposit_rows(raw: Raw, account: str) -> list[tuple[int, str, int, str, bytes]]:
    return [r for r in aggregate_events(raw, f"account/{account}") if r[3].endswith(".Deposited")]


def tamper(db_url: str, how: str) -> set[int]:
    """Do it; answer the positions a chain finding should name."""
    with Raw(db_url) as raw:
        rows = raw.events()
        first, last = rows[0][0], rows[-1][0]
        deposits = deposit_rows(raw, "bob")
        if how == "byte":  # 111 → 911: still a valid event, only the chain can tell
            position, state = deposits[1][0], deposits[1][4]
            assert state.count(b'"_data_":"111"') == 1
            raw.set_state(position, state.replace(b'"_data_":"111"', b'"_data_":"911"'))
            return {position}
        if how == "garble":  # one byte that leaves the row undecodable
            position, state = deposits[1][0], deposits[1][4]
            raw.set_state(position, b"[" + state[1:])
            return {position}
        if how == "delete_first":
            raw.delete(first)
            return {first}
        if how == "delete_middle":
            position = deposits[1][0]
            assert first < position < last
            raw.delete(position)
            return {position}
        if how == "delete_last":
            raw.delete(last)
            return {last}
        if how == "swap":  # two deposits of one account exchange their amounts
            (p, _, _, _, s), (q, _, _, _, t) = deposits[1], deposits[2]
            assert s != t
            raw.set_state(p, t)
            raw.set_state(q, s)
            return {p, q}
        if how == "delete_last_with_link":
            raw.delete(last)
            raw.delete_link(last)
            return {last}
        if how == "byte_and_relink":  # 111 → 911, and every link rewritten to match
            position, state = deposits[1][0], deposits[1][4]
            raw.set_state(position, state.replace(b'"_data_":"111"', b'"_data_":"911"'))
            raw.relink()
            return {position}
    raise AssertionError(how)


def test_a_clean_store_verifies_against_its_digest(db_url: str) -> None:
    build_base(db_url)
    kept = digest(db_url)
    code, report = verify(db_url, "--digest", kept)
    assert (code, report["ok"], report["findings"]) == (0, True, [])
    with Raw(db_url) as raw:
        assert report["events_checked"] == len(raw.events()) == int(kept.split(":")[0])
    # the log grows: the old digest still proves the log up to it, and the chain extends
    apply_ok(db_url, [cmd("deposit", 70, account="bob", currency="USDT", amount="1")])
    code, report = verify(db_url, "--digest", kept)
    assert (code, report["ok"]) == (0, True), report
    assert digest(db_url) != kept
    code, report = verify(db_url)
    assert (code, report["ok"]) == (0, True), report
    # a digest of a head that never was is refused
    position, _, link = kept.partition(":")
    code, report = verify(db_url, "--digest", f"{position}:{'f' * 64}")
    assert code == 1 and {f["kind"] for f in report["findings"]} == {"chain"}, report


TAMPERS = ["byte", "garble", "delete_first", "delete_middle", "delete_last", "swap", "delete_last_with_link",
           "byte_and_relink"]
# garble with the views behind: verify's catch-up reads the undecodable event first; it must
# still answer a JSON report (it once died with MapperDeserialisationError and printed nothing)
CASES = [pytest.param(how, projected, id=f"{how}-{'views-current' if projected else 'views-behind'}")
         for how in TAMPERS for projected in (False, True)]


@pytest.mark.parametrize("how,projected", CASES)
def test_tampering_is_detected(db_url: str, how: str, projected: bool) -> None:
    """§0: changing, deleting (first, middle, last — also with its link) or reordering a
    sealed event is found by `audit verify --digest`."""
    build_base(db_url)
    if projected:  # the worker keeps the views current: they have read every event already
        assert ledger_cli(db_url, "projections", "run").exit_code == 0
    kept = digest(db_url)
    positions = tamper(db_url, how)
    code, report = verify(db_url, "--digest", kept)
    assert code == 1 and report["ok"] is False, report
    kinds = {f["kind"] for f in report["findings"]}
    assert kinds & {"chain", "replay"}, report
    chain_at = {f.get("position") for f in report["findings"] if f["kind"] == "chain"}
    if how in ("delete_last_with_link", "byte_and_relink"):  # the links agree with the log: only the digest knows
        assert chain_at == {int(kept.split(":")[0])}, report
        code, report = verify(db_url)
        assert "chain" not in {f["kind"] for f in report["findings"]}, report  # a consistent chain
    else:
        assert positions <= chain_at, report


@pytest.mark.parametrize("how", ["byte", "delete_middle"])
def test_tampering_stays_detected_after_more_events_are_sealed(db_url: str, how: str) -> None:
    """Sealing new events on top of a broken chain does not mend it."""
    build_base(db_url)
    kept = digest(db_url)
    positions = tamper(db_url, how)
    apply_ok(db_url, [cmd("open_account", 70, account="carol"),  # an aggregate the tampering left alone
                      cmd("deposit", 71, account="carol", currency="USDT", amount="1")])
    assert ledger_cli(db_url, "audit", "seal").exit_code == 0
    for args in ((), ("--digest", kept)):
        code, report = verify(db_url, *args)
        assert code == 1 and positions <= {f.get("position") for f in report["findings"] if f["kind"] == "chain"}, report


# --- A4: interest recomputation and read models --------------------------------------------------
def edit_json(state: bytes, change: dict[str, str]) -> bytes:
    obj = json.loads(state)
    for name, value in change.items():
        assert obj[name]["_type_"] == "decimal_str", obj[name]
        obj[name]["_data_"] = value
    return json.dumps(obj, separators=(",", ":")).encode()


@pytest.mark.parametrize("change", [
    {"rate": "0.0002"}, {"liability": "1"}, {"interest_free": "100"},
    {"interest": "0.5", "capitalized": "0.5"},  # self-consistent, but more than the inputs give
], ids=["rate", "liability", "interest_free", "interest"])
def test_an_interest_charge_edited_and_relinked_is_recomputed_and_found(db_url: str, change: dict[str, str]) -> None:
    """§0: every charge recomputable from recorded inputs — the chain is valid (every link
    rewritten to match the edit; the stores link each event in its own transaction, so there
    is no seal window to edit in any more), the interest check is not."""
    build_base(db_url)
    with Raw(db_url) as raw:
        [charge] = [r for r in raw.events() if r[3].endswith(".InterestCharged")]
        before = json.loads(charge[4])
        assert all(D(before[k]["_data_"]) != D(v) for k, v in change.items()), before
        raw.set_state(charge[0], edit_json(charge[4], change))
        raw.relink()
    kept = digest(db_url)
    code, report = verify(db_url, "--digest", kept)
    assert code == 1 and report["ok"] is False, report
    kinds = {f["kind"] for f in report["findings"]}
    assert "chain" not in kinds, report
    if "capitalized" in change:  # the account owes more than the pool lent: D1 sees it too
        assert "interest" in kinds, report
    else:  # an input edited: nothing but the recomputation can tell
        assert kinds == {"interest"}, report
    field = next(iter(change))
    named = [f for f in report["findings"] if f.get("position") == charge[0]]
    assert named and all(f.get("account") == "alice" for f in named), report
    assert any(f"{field} is" in f["detail"] for f in named), report


def test_an_untouched_interest_charge_recomputes(db_url: str) -> None:
    build_base(db_url)
    with Raw(db_url) as raw:
        [charge] = [r for r in raw.events() if r[3].endswith(".InterestCharged")]
        fields = json.loads(charge[4])
        # 4000 USDT owed at 01:00, no UPL-generated part, 0.01 %/h → 0.4 (I3)
        assert D(fields["liability"]["_data_"]) == D("4000") and D(fields["interest"]["_data_"]) == D("0.4")
    code, report = verify(db_url)
    assert (code, report["findings"]) == (0, []), report


def edit_view(db_url: str, edit: str) -> None:
    with views_db(db_url) as db:
        if edit == "update":
            assert db.execute("UPDATE view_balances SET cash = ? WHERE account = 'bob' AND currency = 'USDT'",
                              [D("99999")]) == 1
        elif edit == "delete":
            assert db.execute("DELETE FROM view_balances WHERE account = 'alice' AND currency = 'USDT'") == 1
        else:  # a liability row for a currency the account never touched
            assert db.execute("INSERT INTO view_balances (account, currency, cash, liability, upl_liability) "
                              "VALUES ('bob', 'ETH', ?, ?, ?)", [D("0"), D("5"), D("0")]) == 1


# insert: a row for a pair no account has (bob owing 5 ETH, which `report borrowers` would show);
# check_views once compared only the accounts' own pairs and answered ok
@pytest.mark.parametrize("edit", ["update", "delete", "insert"])
def test_an_edited_read_model_row_is_found(db_url: str, edit: str) -> None:
    build_base(db_url)
    assert ledger_cli(db_url, "projections", "run").exit_code == 0  # the writer side builds the views
    code, report = verify(db_url)
    assert code == 0, report
    edit_view(db_url, edit)
    with opened(db_url) as app, views_db(db_url) as db:
        direct = audit.verify(app, db)
    assert {f["kind"] for f in direct.findings} == {"read_model"}, direct.findings
    code, report = verify(db_url)  # verify only reads: the edit stays, and is found
    assert code == 1 and {f["kind"] for f in report["findings"]} == {"read_model"}, report


# --- A5: export and offline verification ---------------------------------------------------------
def offline_link(previous: str, row: dict[str, Any]) -> str:
    body = f"{previous}|{row['position']}|{row['aggregate']}|{row['version']}|{row['topic']}|{row['state']}"
    return hashlib.sha256(body.encode()).hexdigest()


def export(db_url: str, *args: str) -> list[dict[str, Any]]:
    assert ledger_cli(db_url, "audit", "seal").exit_code == 0  # the writer side links; export only reads
    result = ledger_cli(db_url, "audit", "export", *args)
    assert result.exit_code == 0, result.output
    if "csv" in args:
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
        return [{**r, "position": int(r["position"]), "version": int(r["version"])} for r in rows]
    return [json.loads(line) for line in result.stdout.splitlines()]


def event_at(row: dict[str, Any]) -> datetime | None:
    at = json.loads(row["state"]).get("at")
    return datetime.fromisoformat(at["_data_"]) if isinstance(at, dict) else None


def test_export_verifies_offline_against_the_digest(db_url: str) -> None:
    build_base(db_url)
    kept = digest(db_url)
    rows = export(db_url, "--format", "jsonl")
    with Raw(db_url) as raw:
        stored = raw.events()
    assert [(r["position"], r["aggregate"], r["version"], r["topic"], r["state"].encode()) for r in rows] == stored
    previous = GENESIS
    for row in rows:
        assert row["previous_link"] == previous, row
        previous = offline_link(previous, row)
        assert row["link"] == previous, f"event {row['position']}: the exported link is not the chain"
    assert f"{rows[-1]['position']}:{previous}" == kept
    assert export(db_url, "--format", "csv") == rows
    # a tampered export no longer chains
    bad = dict(rows[3], state=rows[3]["state"].replace('"', "'", 1))
    assert offline_link(rows[3]["previous_link"], bad) != rows[3]["link"]


@pytest.mark.parametrize("fmt_", ["jsonl", "csv"])
def test_a_period_export_is_one_unbroken_range_that_chains_from_its_anchor(db_url: str, fmt_: str) -> None:
    """docs/audit.md §5: --since/--until select the positions from the first event at or after
    since to the last at or before until, everything in between included, so the period's
    chain continues from the link just before it."""
    build_base(db_url)
    full = export(db_url)
    since, until = m(5), m(60)
    part = export(db_url, "--since", rfc(since), "--until", rfc(until), "--format", fmt_)
    ats = [event_at(r) for r in full]
    first = next(i for i, at in enumerate(ats) if at is not None and at >= since)
    last = max(i for i, at in enumerate(ats) if at is not None and at <= until)
    assert part == full[first:last + 1] and part
    assert event_at(part[0]) == since and event_at(part[-1]) == until, "inclusive bounds"
    assert any(at is not None and at < since for at in ats[first:last + 1]), "earlier events in between are kept"
    anchor = full[first - 1]["link"] if first else GENESIS
    previous = anchor
    for row in part:
        assert row["previous_link"] == previous
        previous = offline_link(previous, row)
        assert row["link"] == previous
    # consecutive periods: the next one starts from this one's last link
    rest = export(db_url, "--since", rfc(until + SEC), "--format", fmt_)
    assert rest == full[last + 1:] and rest[0]["previous_link"] == part[-1]["link"]
    assert export(db_url, "--since", rfc(m(600)), "--format", fmt_) == []


def test_verify_digest_edge_cases(db_url: str) -> None:
    """An empty store's digest verifies; a malformed --digest is a usage error (exit 2)."""
    empty = digest(db_url)
    assert empty == f"0:{GENESIS}"
    code, report = verify(db_url, "--digest", empty)
    assert (code, report["ok"], report["events_checked"]) == (0, True, 0), report
    build_base(db_url)
    code, report = verify(db_url, "--digest", empty)
    assert (code, report["ok"]) == (0, True), report
    for bad in ("nonsense", "12", "x:" + "0" * 64, "3:" + "g" * 64):
        result = ledger_cli(db_url, "audit", "verify", "--digest", bad, "--json")
        assert result.exit_code == 2, (bad, result.output)


# --- A3: double entry over generated histories ------------------------------------------------------
COVERAGE: Counter[str] = Counter()


def totals(acct: Account | None) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    if acct is None:
        return {}, {}
    cash: dict[str, Decimal] = {}
    for wallet in acct.wallets.values():
        for c, v in wallet.items():
            cash[c] = cash.get(c, ZERO) + v
    return cash, dict(acct.liabilities())


def delta(after: dict[str, Decimal], before: dict[str, Decimal]) -> dict[str, Decimal]:
    out = {c: after.get(c, ZERO) - before.get(c, ZERO) for c in set(after) | set(before)}
    return {c: v for c, v in out.items() if v}


def sums(legs: list[tuple[str, str, Decimal]], book: str) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for b, c, v in legs:
        if b == book:
            out[c] = out.get(c, ZERO) + v
    return {c: v for c, v in out.items() if v}


def check_double_entry(app: LedgerApp) -> Counter[str]:
    books: dict[tuple[str, str], Decimal] = {}
    states: dict[str, Account] = {}
    seen: Counter[str] = Counter()
    for n in audit.notifications(app):
        e = app.mapper.to_domain_event(n)
        name = type(e).__name__
        seen[name] += 1
        legs = postings(n.originator_id, e)
        assert unbalanced(legs) == {}, f"event {n.id} {name} does not balance: {legs}"
        for book, currency, amount in legs:
            books[(book, currency)] = books.get((book, currency), ZERO) + amount
        if not n.originator_id.startswith("account/"):
            continue
        account = n.originator_id.removeprefix("account/")
        cash0, owed0 = totals(states.get(account))
        states[account] = copy.deepcopy(e.mutate(copy.deepcopy(states.get(account))))
        cash1, owed1 = totals(states[account])
        moved_in = {e.currency: e.amount} if name == "TransferredIn" else {}  # posted with TransferredOut
        own_wallet = sums(legs, f"user:{account}:wallet")
        for c, v in moved_in.items():
            own_wallet[c] = own_wallet.get(c, ZERO) + v
        assert delta(cash1, cash0) == {c: v for c, v in own_wallet.items() if v}, (
            f"event {n.id} {name}: {account}'s cash moved {delta(cash1, cash0)}, its wallet book {own_wallet}")
        assert delta(owed1, owed0) == {c: -v for c, v in sums(legs, f"user:{account}:liability").items()}, (
            f"event {n.id} {name}: {account}'s liability moved {delta(owed1, owed0)}, its book "
            f"{sums(legs, f'user:{account}:liability')}")
    per_currency: dict[str, Decimal] = {}
    for (_, currency), amount in books.items():
        per_currency[currency] = per_currency.get(currency, ZERO) + amount
    assert {c: v for c, v in per_currency.items() if v} == {}, f"books do not sum to zero: {per_currency}"
    owed_total: dict[str, Decimal] = {}
    for account in app.account_ids():
        acct = app.account(account)
        cash, owed = totals(acct)
        for c in set(cash) | set(owed) | {c for (b, c) in books if b.startswith(f"user:{account}:")}:
            assert books.get((f"user:{account}:wallet", c), ZERO) == cash.get(c, ZERO), f"{account} {c} wallet book"
            assert books.get((f"user:{account}:liability", c), ZERO) == -owed.get(c, ZERO), f"{account} {c} liability book"
            owed_total[c] = owed_total.get(c, ZERO) + owed.get(c, ZERO)
    for c in app.platform().currencies:
        assert D(app.platform_owed(c)) == owed_total.get(c, ZERO), f"pool/{c} != Σ liabilities"
        pool = app.find(f"pool/{c}")
        if pool is not None:
            assert pool.outstanding == owed_total.get(c, ZERO)
    return seen


def epilogue(h: History) -> None:
    """Make sure of interest, a liquidation with bad debt and a forced swap."""
    app = h.app
    h.apply({"type": "set_borrow_quota", "currency": "USDT", "amount": "1000000"})
    for who, share in (("m1", D("0.7")), ("s1", D("0.3"))):
        acct = app.account(who)
        if acct.mode != UNIFIED:
            continue
        try:
            ae = acct.margin(app.platform()).adjusted_equity
        except Exception:  # noqa: BLE001 - a missing price: no leverage for this one
            continue
        amount = (ae * share / D("1.2")).quantize(D("0.01"))
        if amount > 0:
            for op in ("borrow", "withdraw"):
                h.apply({"type": op, "account": who, "currency": "USDT", "amount": format(amount, "f")})
    h.t += 61 * MIN
    run_interest(app, h.t)
    price = app.platform().prices["BTC"]
    h.apply({"type": "set_price", "currency": "BTC", "price": format((price * D("0.2")).quantize(D("0.01")), "f")})
    h.t += 5 * MIN
    run_sweep(app, h.t)
    h.apply({"type": "set_borrow_quota", "currency": "USDT", "amount": "300"})
    h.t += 5 * MIN
    run_sweep(app, h.t)
    h.t += 2 * HOUR
    run_interest(app, h.t)


def extra_step(h: History, data: st.DataObject) -> None:
    """What History does not draw: transfers between accounts and wallets, VIP-level rates."""
    kind = data.draw(st.sampled_from(("transfer", "transfer", "own_wallets", "rate", "beta")), label="extra")
    if kind == "transfer":  # master ⇄ its sub (W3); the receiver's wallet book moves with TransferredOut
        src, dst = data.draw(st.sampled_from((("m1", "s1"), ("s1", "m1"))), label="transfer")
        currency = data.draw(st.sampled_from(("USDT", "BTC", "ETH")), label="transfer currency")
        h.apply({"type": "transfer", "from_account": src, "to_account": dst, "currency": currency,
                 "amount": data.draw(st.sampled_from(("0.01", "0.5", "100")), label="transfer amount")})
    elif kind == "own_wallets":  # classic spot → futures and back: no value moves between books
        pair = data.draw(st.sampled_from((("spot", "futures"), ("futures", "spot"))), label="wallets")
        h.apply({"type": "transfer", "from_account": "m2", "to_account": "m2", "currency": "USDT", "amount": "10",
                 "from_wallet": pair[0], "to_wallet": pair[1]})
    elif kind == "rate":
        cmd_: dict[str, Any] = {"type": "set_interest_rate", "currency": "USDT",
                                "hourly_rate": data.draw(st.sampled_from(("0.0001", "0.0003", "0.00005")), label="rate")}
        level = data.draw(st.sampled_from((None, 0, 1, 3)), label="rate level")
        if level is not None:
            cmd_["vip_level"] = level
        h.apply(cmd_)
    else:
        h.apply({"type": "set_platform_flags", "beta_highest_vip_rate": data.draw(st.booleans(), label="beta")})


def generated_history(h: History, data: st.DataObject) -> None:
    """The prelude, 12-30 drawn steps (a quarter of them transfers and rates), the epilogue."""
    h.prelude()
    for _ in range(data.draw(st.integers(12, 30), label="steps")):
        if data.draw(st.integers(0, 3), label="extra?") == 0:
            extra_step(h, data)
        else:
            h.step(data)
    epilogue(h)


def double_entry_example(env: dict[str, str], data: st.DataObject) -> None:
    h = History(env)
    try:
        generated_history(h, data)
        seen = check_double_entry(h.app)
        for name in ("InterestCharged", "AutoSwapped", "BadDebtWrittenOff", "LiquidationStarted",
                     "PositionLiquidated", "Repaid", "TransferredOut", "WalletTransferred", "OrderFilled"):
            if seen[name]:
                COVERAGE[name] += 1
                event(f"history has {name}")
        audit.seal(h.app, h.db)
        result = audit.verify(h.app, h.db)
        assert result.findings == [], result.findings
        assert result.events_checked == h.app.recorder.max_notification_id()
    finally:
        h.close()


HUNT_SETTINGS = dict(deadline=None, derandomize=True, print_blob=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                            HealthCheck.data_too_large])


def test_double_entry_over_generated_histories_sqlite() -> None:
    """D1 on SQLite, a fresh store per example."""
    COVERAGE.clear()

    @settings(max_examples=10, **HUNT_SETTINGS)
    @given(data=st.data())
    def inner(data: st.DataObject) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            double_entry_example({"PERSISTENCE_MODULE": "stores.sqlite",
                                  "SQLITE_DBNAME": str(Path(tmp) / "ledger.db")}, data)

    inner()
    for name in ("InterestCharged", "AutoSwapped", "BadDebtWrittenOff", "LiquidationStarted", "TransferredOut"):
        assert COVERAGE[name], f"no generated history had {name}: {COVERAGE}"


@pytest.mark.postgres
def test_double_entry_over_generated_histories_postgres() -> None:
    """D1 on PostgreSQL, a fresh schema per example."""
    pg.require_server()

    @settings(max_examples=4, **HUNT_SETTINGS)
    @given(data=st.data())
    def inner(data: st.DataObject) -> None:
        double_entry_example(pg.env(pg.new_schema()), data)

    inner()


def test_an_edited_platform_total_is_found(ledger: Ledger) -> None:
    """Issue 7: verify compares view_platform_totals with the lending pools."""
    from projections import audit, runner
    from projections.sql import ViewDatabase

    ledger.oks({"type": "set_price", "currency": "BTC", "price": "50000", "at": at(0)})
    ledger.unified_master("alice", {"BTC": "1"})
    ledger.ok({"type": "borrow", "account": "alice", "currency": "USDT", "amount": "100", "at": at(5)})
    db = ViewDatabase(ledger.env)
    audit.seal(ledger.app, db)
    runner.run(ledger.app, db)
    assert audit.verify(ledger.app, db).ok
    with db.transaction():
        db.execute("UPDATE view_platform_totals SET outstanding = ? WHERE currency = ?", [Decimal("99"), "USDT"])
    findings = audit.verify(ledger.app, db).findings
    assert [f["kind"] for f in findings] == ["read_model"] and "view_platform_totals USDT" in findings[0]["detail"]
    db.close()


def test_a_snapshot_that_differs_from_its_events_is_found(db_url: str) -> None:
    """verify loads each aggregate that has a snapshot and compares it with the replay of its
    events: a snapshot edited in the store (here: an account's cash) is a finding."""
    deposits = [{"type": "deposit", "account": "snap", "currency": "USDT", "amount": "1",
                 "at": f"2026-03-01T00:{n // 60:02d}:{n % 60:02d}Z"} for n in range(1, 260)]
    ledger_cli(db_url, "apply", "-", input="\n".join(json.dumps(c) for c in
               [{"type": "open_account", "account": "snap", "at": "2026-03-01T00:00:00Z"}, *deposits]))
    code, report = verify(db_url)
    assert code == 0, report
    with Raw(db_url) as raw:
        table = raw.table.replace("_events", "_snapshots") if raw.postgres else "stored_snapshots"
        [(version, state)] = raw.run(f"SELECT originator_version, state FROM {table} WHERE originator_id = ? "
                                     "ORDER BY originator_version DESC LIMIT 1", ("account/snap",))
        assert version == 260  # the one the account loads from
        edited = bytes(state).replace(b'"259"', b'"999"')
        assert edited != bytes(state)
        raw.run(f"UPDATE {table} SET state = ? WHERE originator_id = ? AND originator_version = ?",
                (edited, "account/snap", version))
    code, report = verify(db_url)
    assert code == 1 and [f["kind"] for f in report["findings"]] == ["replay"], report
    assert report["findings"][0]["aggregate"] == "account/snap"
