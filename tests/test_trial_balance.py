"""`ledger audit trial-balance` (SPEC §10, §13): every book per currency sums to zero, after
generated histories, on SQLite and PostgreSQL; each book equals what the accounts and the
events say it holds, now and at an earlier instant."""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.domain import ids
from projections import audit
from tests import pg
from tests.helpers import D, Ledger, ledger_cli
from tests.test_projections import HISTORY, HUNT, History, build_world, cli_world, fresh_env, m

ZERO = D(0)


def books(rows: list[dict[str, Any]]) -> dict[tuple[str, str], Decimal]:
    return {(r["book"], r["currency"]): r["balance"] for r in rows}


def expected_books(app: Any, at: Any = None) -> dict[tuple[str, str], Decimal]:
    """The users' books from the accounts (replayed to ``at``), the platform's and external
    from sums over the events — independent of ledger.domain.postings."""
    out: dict[tuple[str, str], Decimal] = {}

    def add(book: str, currency: str, amount: Decimal) -> None:
        out[(book, currency)] = out.get((book, currency), ZERO) + amount

    for name in app.account_ids():
        acct = app.state_at(ids.account(name), at) if at else app.account(name)
        if acct is None:
            continue
        for wallet in acct.wallets.values():
            for c, v in wallet.items():
                add("user:*:wallet", c, v)
        for c, v in acct.liabilities().items():
            add("user:*:liability", c, -v)
        for e in acct_events(app, name, at):
            kind = type(e).__name__
            if kind == "Deposited":
                add("external", e.currency, -e.amount)
            elif kind == "Withdrawn":
                add("external", e.currency, e.amount)
            elif kind == "InterestCharged":
                add("platform:interest_income", e.currency, e.paid + e.capitalized)
            elif kind == "BadDebtWrittenOff":
                add("platform:insurance_fund", e.currency, -e.amount)
    return out


def acct_events(app: Any, name: str, at: Any) -> list[Any]:
    return [e for e in app.history(name) if at is None or e.at <= at]


def check(app: Any, at: Any = None) -> None:
    rows = audit.trial_balance(app, at)
    assert audit.out_of_balance(rows) == {}  # D1: per currency, zero
    got = books(rows)
    for key, value in expected_books(app, at).items():
        assert got.get(key, ZERO) == value, (key, got.get(key), value)
    per_currency: dict[str, Decimal] = {}
    for (book, currency), value in got.items():
        per_currency[currency] = per_currency.get(currency, ZERO) + value
    assert set(per_currency.values()) <= {ZERO}


def history_books(env: dict[str, str], data: st.DataObject) -> None:
    h = History(env)
    try:
        h.prelude()
        middle = None
        for step in range(data.draw(st.integers(12, 25), label="steps")):
            h.step(data)
            if step == 6:
                middle = h.t
        check(h.app)
        check(h.app, middle)
    finally:
        h.close()


@settings(max_examples=HUNT or 10, **HISTORY)
@given(data=st.data())
def test_trial_balance_sums_to_zero_after_generated_histories_sqlite(data: st.DataObject) -> None:
    with fresh_env("sqlite") as env:
        history_books(env, data)


@pytest.mark.postgres
def test_trial_balance_sums_to_zero_after_generated_histories_postgres() -> None:
    pg.require_server()

    @settings(max_examples=HUNT or 4, **HISTORY)
    @given(data=st.data())
    def inner(data: st.DataObject) -> None:
        with fresh_env("postgres") as env:
            history_books(env, data)

    inner()


def test_trial_balance_of_the_world(ledger: Ledger) -> None:
    build_world(ledger)
    got = books(audit.trial_balance(ledger.app))
    assert got[("platform:interest_income", "USDT")] == D("1.43008")
    assert got[("platform:insurance_fund", "USDT")] == D("-0.60003")
    assert got[("user:*:liability", "USDT")] == D("-3300.83005")
    check(ledger.app)
    assert audit.trial_balance(ledger.app, m(-1)) == []


def test_cli_trial_balance_json_and_table(db_url: str) -> None:
    cli_world(db_url)
    result = ledger_cli(db_url, "audit", "trial-balance", "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert set(shown) == {"as_of", "books"} and all(set(b) == {"book", "currency", "balance"} for b in shown["books"])
    for currency in {b["currency"] for b in shown["books"]}:
        assert sum(D(b["balance"]) for b in shown["books"] if b["currency"] == currency) == 0
    at = ledger_cli(db_url, "audit", "trial-balance", "--as-of", "2026-03-01T00:30:00Z", "--json")
    then = {(b["book"], b["currency"]): b["balance"] for b in json.loads(at.stdout)["books"]}
    assert then[("user:*:liability", "USDT")] == "-8000" and json.loads(at.stdout)["as_of"] == "2026-03-01T00:30:00Z"
    table = ledger_cli(db_url, "audit", "trial-balance")
    assert table.exit_code == 0 and "USDT: the books sum to 0" in table.stdout, table.output
    before = ledger_cli(db_url, "audit", "trial-balance", "--as-of", "2020-01-01T00:00:00Z")
    assert before.exit_code == 0 and "no event moved any value" in before.stderr
