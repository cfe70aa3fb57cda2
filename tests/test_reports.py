"""The reports of issue 18 (SPEC §13): over-limits, forced-swaps, alerts, movements, summary,
borrowers --as-of, and their period options, on SQLite and PostgreSQL.  Every report's rows
and totals are compared with the event history (or, for over-limits, with what the sweep
then does), on the fixed world of tests/test_projections.py."""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from ledger.domain.errors import LedgerError
from ledger.domain.margin import shown_ratio
from ledger.domain.times import parse_instant
from projections import reports, runner
from projections.sql import ViewDatabase
from tests.helpers import D, Ledger, ledger_cli
from tests.test_projections import WORLD_ACCOUNTS, build_world, cli_world, cmd, m, rfc, world_events
from workers.sweep import run_sweep

ZERO = D(0)


@pytest.fixture
def db(ledger: Ledger) -> Any:
    views_db = ViewDatabase(ledger.env)
    yield views_db
    views_db.close()


def world(ledger: Ledger, db: ViewDatabase) -> None:
    build_world(ledger)
    runner.run(ledger.app, db)


def ok(ledger: Ledger, *cmds: dict[str, Any]) -> None:
    for result in ledger.app.apply(list(cmds), ledger.now, ledger.latest):
        assert result["ok"], result


def sums(pairs: Any) -> dict[Any, Decimal]:
    out: dict[Any, Decimal] = {}
    for key, value in pairs:
        out[key] = out.get(key, ZERO) + value
    return out


# --- over-limits ------------------------------------------------------------------------------------
def test_over_limits_are_what_the_sweep_then_repays(ledger: Ledger, db: ViewDatabase) -> None:
    world(ledger, db)
    app = ledger.app
    # the world's end: within every quota, no limit, nobody at the alert level
    assert reports.rows(app, db, "over-limits") == []
    ok(ledger, cmd("set_borrow_quota", 130, currency="USDT", amount="1000"),
       cmd("set_platform_borrow_limit", 130, currency="BTC", amount="0.01"),
       cmd("set_price", 131, currency="BTC", price="3760"))
    rows = reports.rows(app, db, "over-limits")
    platform = app.platform()
    alice = app.account("alice")
    ratio = shown_ratio(alice.margin(platform).risk_ratio)
    assert ratio is not None and ratio >= platform.thresholds["alert"]
    assert rows == [
        {"kind": "quota", "account": "alice", "currency": "USDT", "value": D("3300.83005"), "limit": D(1000),
         "excess": D("2300.83005")},
        {"kind": "risk", "account": "alice", "currency": None, "value": ratio, "limit": D("0.8"), "excess": None},
        {"kind": "platform", "account": None, "currency": "BTC", "value": D("0.03"), "limit": D("0.01"),
         "excess": D("0.02")}]
    for name in WORLD_ACCOUNTS:  # the others: below the alert level (or classic)
        acct = app.account(name)
        if name != "alice" and acct.mode == "unified" and acct.liabilities():
            assert shown_ratio(acct.margin(platform).risk_ratio) < platform.thresholds["alert"]
    # --as-of: before the quota and the limit were set, as the log had it
    assert reports.rows(app, db, "over-limits", as_of=m(129)) == []
    assert [r["kind"] for r in reports.rows(app, db, "over-limits", as_of=m(130))] == ["quota", "platform"]
    assert reports.rows(app, db, "over-limits", account="bob") == []
    assert [r["kind"] for r in reports.rows(app, db, "over-limits", currency="BTC")] == ["platform"]
    # the sweep repays exactly the excesses the report shows
    actions = run_sweep(app, m(135)).actions
    quota = [(a["account"], a["currency"], a["excess"]) for a in actions if a["kind"] == "forced_quota"]
    assert quota == [(r["account"], r["currency"], r["excess"]) for r in rows if r["kind"] == "quota"]
    platform_repaid = sums((a["currency"], a["repaid"]) for a in actions if a["kind"] == "forced_platform")
    assert platform_repaid == {r["currency"]: r["excess"] for r in rows if r["kind"] == "platform"}
    assert {r["kind"] for r in reports.rows(app, db, "over-limits")} <= {"risk"}


def test_borrowers_as_of_replays_the_accounts(ledger: Ledger, db: ViewDatabase) -> None:
    world(ledger, db)
    app = ledger.app
    now = reports.rows(app, db, "borrowers")
    assert [(r["account"], r["currency"], r["liability"]) for r in reports.rows(app, db, "borrowers", as_of=m(200))] == \
        [(r["account"], r["currency"], r["liability"]) for r in now]
    then = reports.rows(app, db, "borrowers", as_of=m(30))  # before any interest or repayment
    assert [(r["account"], r["currency"], r["liability"], r["quota"]) for r in then] == [
        ("alice", "USDT", D(5000), D(1_000_000)), ("bob", "BTC", D("0.1"), D(20)), ("dave", "USDT", D(3000), D(1_000_000))]
    assert all(r["risk_ratio"] is not None for r in then)
    assert reports.rows(app, db, "borrowers", as_of=m(0)) == []


# --- forced swaps, alerts, movements --------------------------------------------------------------
def test_forced_swaps_alerts_movements_equal_the_events(ledger: Ledger, db: ViewDatabase) -> None:
    world(ledger, db)
    app = ledger.app
    swapped = world_events(ledger, "AutoSwapped")
    rows = reports.rows(app, db, "forced-swaps")
    assert len(rows) == len(swapped) >= 1
    assert sums((r["from_currency"], r["from_amount"]) for r in rows) == sums((e.from_currency, e.from_amount) for _, e in swapped)
    assert sums((r["to_currency"], r["to_amount"]) for r in rows) == sums((e.to_currency, e.to_amount) for _, e in swapped)
    assert {r["reason"] for r in rows} == {"liquidation"}
    # an alert: BTC falls, the sweep raises it for alice
    ok(ledger, cmd("set_price", 130, currency="BTC", price="3760"))
    raised = [a for a in run_sweep(app, m(135)).actions if a["kind"] == "alert"]
    events = world_events(ledger, "RiskAlertRaised") + world_events(ledger, "RiskAlertCleared")
    rows = reports.rows(app, db, "alerts")
    assert len(rows) == len(events) == len(raised) >= 1
    assert [(r["account"], r["event"], r["risk_ratio"], r["at"]) for r in rows] == [
        (a["account"], "raised", a["risk_ratio"], rfc(m(135))) for a in raised]
    assert reports.rows(app, db, "alerts", until=m(134)) == []
    # movements: every deposit, withdrawal and transfer
    moved = [(a, e) for name in ("Deposited", "Withdrawn") for a, e in world_events(ledger, name)]
    rows = reports.rows(app, db, "movements")
    assert len(rows) == len(moved)
    assert sums(((r["kind"], r["currency"]), r["amount"]) for r in rows) == sums(
        (("deposit" if type(e).__name__ == "Deposited" else "withdrawal", e.currency), e.amount) for _, e in moved)
    assert [r["at"] for r in rows] == sorted(r["at"] for r in rows)
    window = reports.rows(app, db, "movements", since=m(61), until=m(63), account="alice")
    assert [(r["kind"], r["amount"], r["at"]) for r in window] == [("deposit", D(1000), rfc(m(61))),
                                                                  ("deposit", D(700), rfc(m(63)))]


def test_transfers_are_movements_on_both_sides(ledger: Ledger, db: ViewDatabase) -> None:
    ok(ledger, cmd("open_account", 0, account="m"), cmd("open_account", 0, account="s", parent="m"),
       cmd("deposit", 1, account="m", currency="USDT", amount="100"),
       cmd("transfer", 2, from_account="m", to_account="s", currency="USDT", amount="40"))
    rows = reports.rows(ledger.app, db, "movements")
    assert [(r["account"], r["kind"], r["amount"], r["counterparty"]) for r in rows] == [
        ("m", "deposit", D(100), "external"), ("m", "transfer_out", D(40), "s"), ("s", "transfer_in", D(40), "m")]


# --- summary ----------------------------------------------------------------------------------------
def test_summary_totals_equal_sums_over_the_events(ledger: Ledger, db: ViewDatabase) -> None:
    world(ledger, db)
    app = ledger.app
    by_currency = reports.rows(app, db, "summary", by="day", group_by="currency")
    for kind, name, value in (("interest", "InterestCharged", lambda e: e.interest), ("repayment", "Repaid", lambda e: e.amount),
                              ("borrowing", "Borrowed", lambda e: e.amount),
                              ("bad_debt", "BadDebtWrittenOff", lambda e: e.amount)):
        events = world_events(ledger, name)
        assert events, name
        assert sums((r["currency"], r["amount"]) for r in by_currency if r["kind"] == kind) == sums(
            (e.currency, value(e)) for _, e in events), kind
        assert sum(r["count"] for r in by_currency if r["kind"] == kind) == len(events)
    assert {r["period"] for r in by_currency} == {"2026-03-01"}
    assert [r["count"] for r in by_currency if r["kind"] == "liquidation"] == [len(world_events(ledger, "LiquidationStarted"))]
    by_source = reports.rows(app, db, "summary", by="month", group_by="source")
    assert sums(((r["group"], r["currency"]), r["amount"]) for r in by_source if r["kind"] == "repayment") == sums(
        ((e.source, e.currency), e.amount) for _, e in world_events(ledger, "Repaid"))
    by_account = reports.rows(app, db, "summary", group_by="account", since=m(61), until=m(121))
    assert sums(((r["group"], r["currency"]), r["amount"]) for r in by_account if r["kind"] == "interest") == sums(
        ((a, e.currency), e.interest) for a, e in world_events(ledger, "InterestCharged") if m(61) <= e.at <= m(121))
    with pytest.raises(LedgerError) as refused:
        reports.rows(app, db, "summary", by="week")
    assert refused.value.code == "validation_error"


# --- period options: applied or refused ------------------------------------------------------------
def test_period_options_apply_or_are_refused(ledger: Ledger, db: ViewDatabase) -> None:
    world(ledger, db)
    for kind in ("borrowers", "over-limits"):
        with pytest.raises(LedgerError) as refused:
            reports.rows(ledger.app, db, kind, since=m(1))
        assert refused.value.code == "period_not_applicable"
    for kind in ("interest", "repayments", "liquidations", "mode-switches", "forced-swaps", "alerts", "movements", "summary"):
        with pytest.raises(LedgerError) as refused:
            reports.rows(ledger.app, db, kind, as_of=m(1))
        assert refused.value.code == "period_not_applicable", kind
    with pytest.raises(LedgerError) as refused:
        reports.rows(ledger.app, db, "interest", since=m(2), until=m(1))
    assert refused.value.code == "inverted_period"


def test_cli_period_refusals_and_empty_results_say_so(db_url: str) -> None:
    cli_world(db_url)
    assert ledger_cli(db_url, "projections", "run").exit_code == 0
    refused = ledger_cli(db_url, "report", "borrowers", "--since", "2026-03-01T00:00:00Z")
    assert refused.exit_code == 2 and "period_not_applicable" in refused.stderr, refused.output
    refused = ledger_cli(db_url, "report", "interest", "--since", "2026-03-02T00:00:00Z", "--until", "2026-03-01T00:00:00Z")
    assert refused.exit_code == 2 and "inverted_period" in refused.stderr, refused.output
    empty = ledger_cli(db_url, "report", "interest", "--since", "2026-03-02T00:00:00Z", "--format", "json")
    assert empty.exit_code == 0 and json.loads(empty.stdout) == [] and "no rows in the period" in empty.stderr
    over = ledger_cli(db_url, "report", "over-limits", "--as-of", "2026-03-01T01:00:00Z", "--format", "json")
    assert over.exit_code == 0 and json.loads(over.stdout) == [] and "no rows at" in over.stderr
    summary = json.loads(ledger_cli(db_url, "report", "summary", "--by", "month", "--group-by", "source",
                                    "--format", "json").stdout)
    assert {(r["kind"], r["group"]) for r in summary} >= {("interest", "interest"), ("repayment", "deposit"),
                                                          ("repayment", "liquidation"), ("borrowing", "manual")}
    table = ledger_cli(db_url, "report", "liquidations")
    assert "liquidations (1 row)" in table.stdout and "infinite" in table.stdout, table.stdout


# --- paging and streaming ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["interest", "repayments", "mode-switches", "borrowers", "movements"])
def test_pages_and_the_stream_add_up_to_the_whole_report(ledger: Ledger, db: ViewDatabase, kind: str) -> None:
    """``rows(limit, offset)`` pages and ``stream`` (keyset pages of the read models) give the
    whole report's rows, in its order, whatever the page size."""
    world(ledger, db)
    whole = reports.rows(ledger.app, db, kind)
    assert len(whole) >= 2, f"the world has too few {kind} rows to page"
    for size in (1, 2, len(whole) + 1):
        pages = [reports.rows(ledger.app, db, kind, limit=size, offset=start) for start in range(0, len(whole), size)]
        assert [r for p in pages for r in p] == whole
        assert list(reports.stream(ledger.app, lambda: db, kind, page=size)) == whole
    since = whole[len(whole) // 2].get("at") or whole[len(whole) // 2].get("hour")
    if since and kind != "borrowers":
        instant = parse_instant(since)
        assert list(reports.stream(ledger.app, lambda: db, kind, since=instant, page=2)) == \
            reports.rows(ledger.app, db, kind, since=instant)
