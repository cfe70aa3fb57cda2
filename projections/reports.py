"""Compliance reports (`ledger report ...`): SQL over the read models, one row per fact.

Each report is a SELECT with optional period, account and currency filters; the same SQL is
written out in docs/compliance.md for a read-only connection.  ``borrowers`` adds, per account
with a liability, its borrowing limit and risk ratio from the domain (they depend on today's
prices, which no view holds).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from ledger.domain.account import UNIFIED
from ledger.service.app import LedgerApp
from ledger.domain.errors import LedgerError
from ledger.domain.margin import account_borrow_limit, shown_ratio
from projections.sql import ViewDatabase
from projections.views import stamp


@dataclass(frozen=True)
class Report:
    table: str
    columns: tuple[str, ...]
    money: frozenset[str]
    time_column: str  # what --since/--until filter on
    sums: tuple[str, ...] = ()  # the columns whose per-currency totals mean something


REPORTS = {
    "interest": Report("view_interest_charges",
                       ("account", "currency", "hour", "liability", "interest_free", "rate", "interest", "paid", "capitalized", "at"),
                       frozenset({"liability", "interest_free", "rate", "interest", "paid", "capitalized"}), "hour",
                       ("interest", "paid", "capitalized")),
    "repayments": Report("view_repayments", ("account", "currency", "amount", "source", "principal", "interest", "at"),
                         frozenset({"amount", "principal", "interest"}), "at", ("amount", "principal", "interest")),
    "liquidations": Report("view_liquidations",
                           ("account", "started_at", "risk_ratio_before", "adjusted_equity", "maintenance_margin",
                            "completed_at", "risk_ratio_after", "bad_debt"),
                           frozenset({"risk_ratio_before", "adjusted_equity", "maintenance_margin", "risk_ratio_after"}),
                           "started_at"),
    "mode-switches": Report("view_mode_switches", ("account", "from_mode", "to_mode", "at"), frozenset(), "at"),
    "borrowers": Report("view_balances", ("account", "currency", "cash", "liability", "upl_liability"),
                        frozenset({"cash", "liability", "upl_liability"}), "", ("liability", "upl_liability")),
}


def select(kind: str, since: datetime | None = None, until: datetime | None = None,
           account: str | None = None, currency: str | None = None) -> tuple[str, list[Any]]:
    """The report's SQL and parameters (``?`` placeholders)."""
    report = REPORTS[kind]
    where, params = [], []
    if kind == "borrowers":
        where.append("CAST(liability AS NUMERIC) > 0")
    if since and report.time_column:
        where.append(f"{report.time_column} >= ?")
        params.append(stamp(since))
    if until and report.time_column:
        where.append(f"{report.time_column} <= ?")
        params.append(stamp(until))
    if account:
        where.append("account = ?")
        params.append(account)
    if currency and "currency" in report.columns:
        where.append("currency = ?")
        params.append(currency)
    # time order (a batch stores its events account by account, so position alone is not)
    order = "account, currency" if kind == "borrowers" else f"{report.time_column}, position"
    sql = f"SELECT {', '.join(report.columns)} FROM {report.table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql + f" ORDER BY {order}", params


def rows(app: LedgerApp, db: ViewDatabase, kind: str, **filters: Any) -> list[dict[str, Any]]:
    report = REPORTS[kind]
    sql, params = select(kind, **filters)
    out = []
    for values in db.rows(sql, params):
        row = {c: (Decimal(str(v)) if c in report.money and v is not None else v) for c, v in zip(report.columns, values)}
        out.append(row)
    if kind == "borrowers":
        add_limits(app, out)
    return out


def add_limits(app: LedgerApp, rows: list[dict[str, Any]]) -> None:
    """Borrowers: the quota, what may still be borrowed (B2) and the risk ratio (F5), now."""
    platform = app.platform()
    for row in rows:
        acct = app.account(row["account"])
        row["quota"] = platform.quota(row["currency"], acct.vip_level)
        row["borrowable"] = row["risk_ratio"] = None
        if acct.mode == UNIFIED:
            try:
                m = acct.margin(platform)
                limit = account_borrow_limit(acct, row["currency"], platform, app.platform_owed, m)
                row["borrowable"], row["risk_ratio"] = limit.limit, shown_ratio(m.risk_ratio)
            except LedgerError:
                pass  # a price is missing: shown as null


def totals(kind: str, rows: list[dict[str, Any]]) -> dict[str, dict[str, Decimal]]:
    """Per currency sums of the money columns (for the table's footer and the tests)."""
    out: dict[str, dict[str, Decimal]] = {}
    for row in rows:
        bucket = out.setdefault(row.get("currency", "*"), {})
        for column in REPORTS[kind].sums:
            bucket[column] = bucket.get(column, Decimal(0)) + row[column]
    return out
