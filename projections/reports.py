"""Compliance reports (`ledger report ...`): one row per fact, or per breach, or per total.

Most reports are a SELECT over the read models with optional period, account and currency
filters; the same SQL is written out in docs/compliance.md for a read-only connection.
``borrowers`` adds, per account with a liability, its borrowing limit and risk ratio from the
domain (they depend on today's prices, which no view holds).  The others are read from the
event log itself (``LOG_REPORTS``): ``over-limits`` (the sweep's own tests, ledger.domain.sweep,
on the state now or at an instant), ``alerts``, ``movements`` and ``summary``.

Period options either apply or are refused (``LedgerError`` with a stable code): a report of
facts takes ``since``/``until``, a report of a state takes ``as_of``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Iterator

from ledger.domain import ids
from ledger.domain.account import UNIFIED, Account
from ledger.domain.errors import LedgerError
from ledger.domain.margin import account_borrow_limit, shown_ratio
from ledger.domain.sweep import at_alert_level, over_quota
from ledger.domain.times import rfc3339
from ledger.service.app import LedgerApp
from ledger.service.topics import stored_topics
from projections.sql import ViewDatabase
from projections.views import stamp

FACTS, STATE = "facts", "state"  # what a report's period options mean: a range of time, or an instant


@dataclass(frozen=True)
class Report:
    table: str
    columns: tuple[str, ...]
    money: frozenset[str]
    time_column: str  # what --since/--until filter on ("" for a report of a state)
    sums: tuple[str, ...] = ()  # the columns whose per-currency totals mean something
    period: str = FACTS
    times: tuple[str, ...] = ()  # columns holding instants (shown RFC 3339, no needless fraction)


REPORTS = {
    "interest": Report("view_interest_charges",
                       ("account", "currency", "hour", "liability", "interest_free", "rate", "interest", "paid", "capitalized", "at"),
                       frozenset({"liability", "interest_free", "rate", "interest", "paid", "capitalized"}), "hour",
                       ("interest", "paid", "capitalized"), times=("hour", "at")),
    "repayments": Report("view_repayments", ("account", "currency", "amount", "source", "principal", "interest", "at"),
                         frozenset({"amount", "principal", "interest"}), "at", ("amount", "principal", "interest"),
                         times=("at",)),
    "liquidations": Report("view_liquidations",
                           ("account", "started_at", "risk_ratio_before", "adjusted_equity", "maintenance_margin",
                            "completed_at", "risk_ratio_after", "bad_debt"),
                           frozenset({"risk_ratio_before", "adjusted_equity", "maintenance_margin", "risk_ratio_after"}),
                           "started_at", times=("started_at", "completed_at")),
    "mode-switches": Report("view_mode_switches", ("account", "from_mode", "to_mode", "at"), frozenset(), "at",
                            times=("at",)),
    "borrowers": Report("view_balances", ("account", "currency", "cash", "liability", "upl_liability"),
                        frozenset({"cash", "liability", "upl_liability"}), "", ("liability", "upl_liability"), STATE),
    "forced-swaps": Report("view_forced_swaps",
                           ("account", "from_currency", "from_amount", "to_currency", "to_amount", "reason", "at"),
                           frozenset({"from_amount", "to_amount"}), "at", times=("at",)),
    # from the event log (LOG_REPORTS below)
    "over-limits": Report("", ("kind", "account", "currency", "value", "limit", "excess"),
                          frozenset({"value", "limit", "excess"}), "", period=STATE),
    "alerts": Report("", ("account", "event", "risk_ratio", "at"), frozenset({"risk_ratio"}), "at", times=("at",)),
    "movements": Report("", ("account", "kind", "currency", "amount", "wallet", "counterparty", "at"),
                        frozenset({"amount"}), "at", times=("at",)),
    "summary": Report("", ("period", "group", "kind", "currency", "amount", "count"), frozenset({"amount"}), "at"),
}


def check_period(kind: str, since: datetime | None, until: datetime | None, as_of: datetime | None) -> None:
    """The period options a report takes, or a refusal with a stable code."""
    report = REPORTS[kind]
    if report.period == STATE and (since or until):
        raise LedgerError("period_not_applicable", f"`{kind}` is a state at one instant: it takes --as-of, not --since/--until")
    if report.period == FACTS and as_of:
        raise LedgerError("period_not_applicable", f"`{kind}` lists facts over a period: it takes --since/--until, not --as-of")
    if since and until and since > until:
        raise LedgerError("inverted_period", f"--since {rfc3339(since)} is later than --until {rfc3339(until)}")


def select(kind: str, since: datetime | None = None, until: datetime | None = None,
           account: str | None = None, currency: str | None = None, after: tuple[Any, ...] | None = None,
           limit: int | None = None, offset: int = 0) -> tuple[str, list[Any]]:
    """The report's SQL and parameters (``?`` placeholders): its columns, then its order key
    (``order_key``); ``after`` a key: only the rows after it (keyset paging); ``limit`` and
    ``offset``: a page."""
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
    key = order_key(kind)
    if after is not None:
        where.append(f"({', '.join(key)}) > ({', '.join('?' * len(key))})")
        params.extend(after)
    sql = f"SELECT {', '.join(report.columns + key)} FROM {report.table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {', '.join(key)}"
    if limit is not None:
        sql += " LIMIT ? OFFSET ?"
        params.extend([limit, offset])
    return sql, params


def order_key(kind: str) -> tuple[str, ...]:
    """The columns a report is ordered by, unique per row: time order for facts (a batch
    stores its events account by account, so position alone is not), then position."""
    return ("account", "currency") if kind == "borrowers" else (REPORTS[kind].time_column, "position")


def rows(app: LedgerApp, db: ViewDatabase, kind: str, since: datetime | None = None, until: datetime | None = None,
         account: str | None = None, currency: str | None = None, as_of: datetime | None = None,
         limit: int | None = None, offset: int = 0, **options: Any) -> list[dict[str, Any]]:
    """The report's rows (money as Decimal, instants as RFC 3339 text), or the page of
    ``limit`` rows from ``offset``; ``options``: the summary's ``by`` (day|month) and
    ``group_by`` (account|currency|source)."""
    check_period(kind, since, until, as_of)
    if from_events(kind, as_of):
        report_of = LOG_REPORTS.get(kind, borrowers_at)
        out = report_of(app, since=since, until=until, account=account, currency=currency, as_of=as_of, **options)
        out = out[offset:] if limit is None else out[offset:offset + limit]
    else:
        sql, params = select(kind, since, until, account, currency, limit=limit, offset=offset)
        out = [typed(kind, values) for values in db.rows(sql, params)]
    if kind == "borrowers":
        add_limits(app, out, as_of)
    return out


def stream(app: LedgerApp, views: Callable[[], ViewDatabase], kind: str, since: datetime | None = None,
           until: datetime | None = None, account: str | None = None, currency: str | None = None,
           page: int = 1000) -> Iterator[dict[str, Any]]:
    """Every row of the report over the period, ``page`` at a time from the read models (keyset
    on ``order_key``: each page an index range, whatever the period's size); a report of the
    event log is computed whole (its rows are sorted in time order) and then yielded.
    ``views()`` gives the read models' connection for each page (a server's streamed answer may
    read its pages on different threads, each with its own connection)."""
    check_period(kind, since, until, None)
    if from_events(kind, None):
        yield from rows(app, views(), kind, since=since, until=until, account=account, currency=currency)
        return
    after: tuple[Any, ...] | None = None
    width = len(REPORTS[kind].columns)
    while True:
        sql, params = select(kind, since, until, account, currency, after=after, limit=page)
        found = views().rows(sql, params)
        out = [typed(kind, values) for values in found]
        if kind == "borrowers":
            add_limits(app, out, None)
        yield from out
        if len(found) < page:
            return
        after = tuple(found[-1][width:])


def typed(kind: str, values: tuple[Any, ...]) -> dict[str, Any]:
    """A row of the read models as the report shows it: money as Decimal, instants RFC 3339
    (the order key's columns after the report's are left out)."""
    report = REPORTS[kind]
    row = {c: (Decimal(str(v)) if c in report.money and v is not None else v) for c, v in zip(report.columns, values)}
    for column in report.times:
        if row[column] is not None:
            row[column] = rfc3339(from_stamp(row[column]))
    if kind == "liquidations" and row["bad_debt"] is not None:
        row["bad_debt"] = {c: Decimal(v) for c, v in json.loads(row["bad_debt"]).items()}
    return row


def from_events(kind: str, as_of: datetime | None) -> bool:
    """Whether the report reads the event log (always current) rather than the read models."""
    return kind in LOG_REPORTS or (kind == "borrowers" and as_of is not None)


def from_stamp(text: str) -> datetime:
    """A view's fixed-width instant (projections.views.stamp) as a datetime."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def add_limits(app: LedgerApp, rows: list[dict[str, Any]], as_of: datetime | None = None) -> None:
    """Borrowers: the quota, what may still be borrowed (B2) and the risk ratio (F5), now or at ``as_of``."""
    platform = app.platform_at(as_of)
    for row in rows:
        acct = account_at(app, row["account"], as_of)
        row["quota"] = platform.quota(row["currency"], acct.vip_level)
        row["borrowable"] = row["risk_ratio"] = None
        if acct.mode == UNIFIED:
            try:
                m = acct.margin(platform)
                limit = account_borrow_limit(acct, row["currency"], platform, lambda c: app.platform_owed(c, as_of), m)
                row["borrowable"], row["risk_ratio"] = limit.limit, shown_ratio(m.risk_ratio)
            except LedgerError:
                pass  # a price is missing: shown as null


def account_at(app: LedgerApp, name: str, as_of: datetime | None) -> Any:
    return app.state_at(ids.account(name), as_of) if as_of is not None else app.account(name)


def accounts_at(app: LedgerApp, as_of: datetime | None, account: str | None = None) -> Iterator[Account]:
    """Every account (or one) as it is now or was at ``as_of`` (those opened later: none)."""
    for name in ([account] if account else app.account_ids()):
        acct = account_at(app, name, as_of)
        if acct is not None:
            yield acct


def borrowers_at(app: LedgerApp, as_of: datetime | None = None, account: str | None = None, currency: str | None = None,
                 **_: Any) -> list[dict[str, Any]]:
    """`borrowers --as-of`: the same columns from each account replayed to the instant."""
    out = []
    for acct in accounts_at(app, as_of, account):
        for c, owed in sorted(acct.liabilities().items()):
            if owed > 0 and currency in (None, c):
                cash = sum((w.get(c, Decimal(0)) for w in acct.wallets.values()), Decimal(0))
                out.append({"account": acct.account, "currency": c, "cash": cash, "liability": owed,
                            "upl_liability": acct.upl_liability.get(c, Decimal(0))})
    return out


# --- reports read from the event log -------------------------------------------------------------
def over_limits(app: LedgerApp, as_of: datetime | None = None, account: str | None = None,
                currency: str | None = None, **_: Any) -> list[dict[str, Any]]:
    """The sweep's own tests (ledger.domain.sweep) on the state now or at ``as_of``: each
    currency of a unified account whose liability exceeds its quota (L1, ``value`` the
    liability, ``limit`` the quota), each unified account whose risk ratio is at or above
    the alert level (L4, ``value`` the ratio, null when infinite), each currency whose
    platform total exceeds the platform limit (L2, ``value`` the total)."""
    platform = app.platform_at(as_of)
    out: list[dict[str, Any]] = []
    for acct in accounts_at(app, as_of, account):
        if acct.mode != UNIFIED:
            continue
        for c, excess in over_quota(acct, platform).items():
            if currency in (None, c):
                out.append({"kind": "quota", "account": acct.account, "currency": c, "value": acct.liability(c),
                            "limit": platform.quota(c, acct.vip_level), "excess": excess})
        try:
            m = acct.margin(platform)
        except LedgerError:
            continue  # a price is missing: no ratio to compare
        if currency is None and at_alert_level(m, platform):
            out.append({"kind": "risk", "account": acct.account, "currency": None, "value": shown_ratio(m.risk_ratio),
                        "limit": platform.thresholds["alert"], "excess": None})
    if account is None:
        for c, limit in sorted(platform.platform_limits.items()):
            total = Decimal(app.platform_owed(c, as_of))
            if total > limit and currency in (None, c):
                out.append({"kind": "platform", "account": None, "currency": c, "value": total, "limit": limit,
                            "excess": total - limit})
    return out


def log_events(app: LedgerApp, classes: tuple[type, ...], since: datetime | None, until: datetime | None,
               account: str | None) -> Iterator[tuple[str, Any]]:
    """(account, event) for the accounts' events of ``classes`` in the period, in log order,
    a page at a time (by stored topic: old stores too)."""
    topics = [t for cls in classes for t in stored_topics(cls)]
    start = 1
    while True:
        page = app.recorder.select_notifications(start=start, limit=1000, topics=topics)
        for n in page:
            if not n.originator_id.startswith(ids.ACCOUNT_PREFIX):
                continue
            name = ids.account_name(n.originator_id)
            if account not in (None, name):
                continue
            e = app.mapper.to_domain_event(n)
            if (since is None or e.at >= since) and (until is None or e.at <= until):
                yield name, e
        if len(page) < 1000:
            return
        start = page[-1].id + 1


def in_time_order(found: Iterator[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """A batch stores its events account by account: log order is not time order across accounts."""
    return sorted(found, key=lambda pair: (pair[1].at, pair[0]))


def alerts(app: LedgerApp, since: datetime | None = None, until: datetime | None = None, account: str | None = None,
           **_: Any) -> list[dict[str, Any]]:
    """Each RiskAlertRaised and RiskAlertCleared (L4) with its risk ratio (null: infinite)."""
    names = {Account.RiskAlertRaised: "raised", Account.RiskAlertCleared: "cleared"}
    return [{"account": a, "event": names[type(e)], "risk_ratio": e.risk_ratio, "at": rfc3339(e.at)}
            for a, e in in_time_order(log_events(app, tuple(names), since, until, account))]


def movements(app: LedgerApp, since: datetime | None = None, until: datetime | None = None, account: str | None = None,
              currency: str | None = None, **_: Any) -> list[dict[str, Any]]:
    """Deposits, withdrawals and transfers between accounts (W1-W3): one row per event."""
    kinds = {Account.Deposited: "deposit", Account.Withdrawn: "withdrawal", Account.TransferredOut: "transfer_out",
             Account.TransferredIn: "transfer_in"}
    out = []
    for a, e in in_time_order(log_events(app, tuple(kinds), since, until, account)):
        if currency in (None, e.currency):
            other = getattr(e, "to_account", None) or getattr(e, "from_account", None)
            out.append({"account": a, "kind": kinds[type(e)], "currency": e.currency, "amount": e.amount,
                        "wallet": e.wallet, "counterparty": other or "external", "at": rfc3339(e.at)})
    return out


# what the summary adds up: event class -> (kind, the amounts it gives: [(currency, amount, source)])
SUMMED: dict[type, tuple[str, Callable[[Any], list[tuple[str, Decimal, str]]]]] = {
    Account.InterestCharged: ("interest", lambda e: [(e.currency, e.interest, "interest")]),
    Account.Repaid: ("repayment", lambda e: [(e.currency, e.amount, e.source)]),
    Account.Borrowed: ("borrowing", lambda e: [(e.currency, e.amount, e.source)]),
    Account.LiquidationStarted: ("liquidation", lambda e: [("", Decimal(0), "liquidation")]),
    Account.BadDebtWrittenOff: ("bad_debt", lambda e: [(e.currency, e.amount, "liquidation")]),
}
PERIODS = {"day": "%Y-%m-%d", "month": "%Y-%m"}
GROUPS = ("account", "currency", "source")


def summary(app: LedgerApp, since: datetime | None = None, until: datetime | None = None, account: str | None = None,
            currency: str | None = None, by: str = "month", group_by: str = "currency", **_: Any) -> list[dict[str, Any]]:
    """Totals per period (UTC day or month of each event's ``at``) and group: interest
    charged, repaid, borrowed, bad debt written off (per currency) and liquidations started
    (a count, currency empty)."""
    if by not in PERIODS:
        raise LedgerError("validation_error", f"--by {by!r}: use day or month")
    if group_by not in GROUPS:
        raise LedgerError("validation_error", f"--group-by {group_by!r}: use account, currency or source")
    sums: dict[tuple[str, str, str, str], list[Any]] = {}
    for a, e in log_events(app, tuple(SUMMED), since, until, account):
        kind, amounts = SUMMED[type(e)]
        for c, amount, source in amounts(e):
            if currency not in (None, c) and c:
                continue
            group = {"account": a, "currency": c, "source": source}[group_by]
            key = (e.at.astimezone(timezone.utc).strftime(PERIODS[by]), group, kind, c)
            bucket = sums.setdefault(key, [Decimal(0), 0])
            bucket[0] += amount
            bucket[1] += 1
    return [{"period": p, "group": g, "kind": k, "currency": c, "amount": s[0], "count": s[1]}
            for (p, g, k, c), s in sorted(sums.items())]


LOG_REPORTS: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "over-limits": over_limits, "alerts": alerts, "movements": movements, "summary": summary,
}


def totals(kind: str, rows: list[dict[str, Any]]) -> dict[str, dict[str, Decimal]]:
    """Per currency sums of the money columns (for the table's footer and the tests)."""
    out: dict[str, dict[str, Decimal]] = {}
    for row in rows:
        bucket = out.setdefault(row.get("currency", "*"), {})
        for column in REPORTS[kind].sums:
            bucket[column] = bucket.get(column, Decimal(0)) + row[column]
    return out
