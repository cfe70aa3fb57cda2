"""The read models (issue 6): SQL tables built from the event log, one row per fact.

Balances (per account and currency, over all wallets) and platform totals come from each
event's one reading (``ledger.domain.postings.read``: its postings and memo on the account's
own books and on the lending pools); the fact rows from a writer per event class (``FACTS``).
The changes are gathered per batch of events (``Batch``) and written together; money is exact
(NUMERIC on PostgreSQL, decimal text on SQLite).  Every view advances with the others in one
transaction (see runner.py).
"""
from __future__ import annotations

import json
from datetime import timezone
from decimal import Decimal
from typing import Any, Callable, Sequence

from ledger.domain import ids
from ledger.domain.account import Account
from ledger.domain.postings import LENDING_POOL, Reading, book, read
from ledger.read.render import plain
from projections.sql import ViewDatabase

VIEWS = ("balances", "interest_charges", "repayments", "forced_swaps", "liquidations",
         "mode_switches", "platform_totals")

DDL = [
    "CREATE TABLE IF NOT EXISTS view_tracking (view TEXT PRIMARY KEY, position BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS view_balances (account TEXT NOT NULL, currency TEXT NOT NULL, "
    "cash {money} NOT NULL, liability {money} NOT NULL, upl_liability {money} NOT NULL, "
    "PRIMARY KEY (account, currency))",
    "CREATE TABLE IF NOT EXISTS view_interest_charges (position BIGINT PRIMARY KEY, account TEXT NOT NULL, "
    "currency TEXT NOT NULL, hour TEXT NOT NULL, liability {money} NOT NULL, interest_free {money} NOT NULL, "
    "rate {money} NOT NULL, interest {money} NOT NULL, paid {money} NOT NULL, capitalized {money} NOT NULL, at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS view_repayments (position BIGINT PRIMARY KEY, account TEXT NOT NULL, "
    "currency TEXT NOT NULL, amount {money} NOT NULL, source TEXT NOT NULL, principal {money} NOT NULL, "
    "interest {money} NOT NULL, at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS view_forced_swaps (position BIGINT PRIMARY KEY, account TEXT NOT NULL, "
    "from_currency TEXT NOT NULL, from_amount {money} NOT NULL, to_currency TEXT NOT NULL, "
    "to_amount {money} NOT NULL, reason TEXT NOT NULL, at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS view_liquidations (position BIGINT PRIMARY KEY, account TEXT NOT NULL, "
    "started_at TEXT NOT NULL, risk_ratio_before {money}, adjusted_equity {money} NOT NULL, "
    "maintenance_margin {money} NOT NULL, completed_at TEXT, risk_ratio_after {money}, bad_debt TEXT)",
    "CREATE TABLE IF NOT EXISTS view_mode_switches (position BIGINT PRIMARY KEY, account TEXT NOT NULL, "
    "from_mode TEXT NOT NULL, to_mode TEXT NOT NULL, at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS view_platform_totals (currency TEXT PRIMARY KEY, outstanding {money} NOT NULL)",
]


def create(db: ViewDatabase) -> None:
    with db.transaction():
        for statement in DDL:
            db.execute(statement)
        for view in VIEWS:
            if not db.rows("SELECT position FROM view_tracking WHERE view = ?", [view]):
                db.execute("INSERT INTO view_tracking (view, position) VALUES (?, 0)", [view])


def drop(db: ViewDatabase) -> None:
    with db.transaction():
        for view in ("tracking",) + VIEWS:
            db.execute(f"DROP TABLE IF EXISTS view_{view}")


def stamp(at: Any) -> str:
    """Fixed-width UTC text, so that text order is time order in SQL (``--since``/``--until``)."""
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- balances ---------------------------------------------------------------------------------
Z = Decimal(0)
# an account's own books (ledger.domain.postings) -> (column of view_balances, sign)
COLUMNS = {"wallet": (0, 1), "incoming": (0, -1), "liability": (1, -1), "upl_liability": (2, 1)}
NOT_OWN = (-1, 0)
Delta = tuple[str, int, Decimal]  # currency, column (0 cash, 1 liability, 2 upl_liability), amount


def balance_deltas(account: str, reading: Reading) -> list[Delta]:
    """How an event of ``account`` changes its cash (all wallets), liability and the
    UPL-generated part: its reading's legs and memo on the account's own books.  A book of
    another account (the receiver's, on TransferredOut) moves that account's row with that
    account's own event (TransferredIn), as the account itself moves: the views equal the
    accounts at every position (audit verify compares them there)."""
    own, out = book(account, ""), []
    start = len(own)
    for part in reading:  # legs, memo
        for name, currency, amount in part:
            if name.startswith(own):
                column, sign = COLUMNS.get(name[start:], NOT_OWN)  # user:<account>:<more>:wallet is not own
                if column >= 0:
                    out.append((currency, column, amount if sign > 0 else -amount))
    return out


class Batch:
    """The view changes of one batch of events, written together: sums per balance and per
    platform total, and the fact rows in order, each run of one statement in one
    ``executemany`` (statement by statement, a catch-up made a round trip per event)."""

    def __init__(self, db: ViewDatabase) -> None:
        self.db = db
        self.balances: dict[tuple[str, str], list[Decimal]] = {}  # (account, currency) -> deltas
        self.totals: dict[str, Decimal] = {}  # currency -> outstanding delta
        self.writes: list[tuple[str, list[Any]]] = []

    def execute(self, statement: str, params: Sequence[Any] = ()) -> int:
        """A statement now, outside the batch's buffers."""
        return self.db.execute(statement, params)

    def add_balance(self, account: str, delta: Delta) -> None:
        currency, column, amount = delta
        self.balances.setdefault((account, currency), [Z, Z, Z])[column] += amount

    def add_total(self, currency: str, delta: Decimal) -> None:
        self.totals[currency] = self.totals.get(currency, Z) + delta

    def write(self, statement: str, params: list[Any]) -> None:
        self.writes.append((statement, params))

    def flush(self) -> None:
        start = 0
        for i in range(1, len(self.writes) + 1):
            if i == len(self.writes) or self.writes[i][0] != self.writes[start][0]:
                self.db.executemany(self.writes[start][0], [params for _, params in self.writes[start:i]])
                start = i
        self._add_rows("view_balances", ("account", "currency"), ("cash", "liability", "upl_liability"),
                       {key: sums for key, sums in self.balances.items()})
        self._add_rows("view_platform_totals", ("currency",), ("outstanding",),
                       {(currency,): [delta] for currency, delta in self.totals.items()})
        self.writes, self.balances, self.totals = [], {}, {}

    def _add_rows(self, table: str, keys: tuple[str, ...], columns: tuple[str, ...],
                  deltas: dict[tuple[str, ...], list[Decimal]]) -> None:
        """Add ``deltas`` to the rows of ``table`` (read, summed in Decimal, written back)."""
        pending = list(deltas)
        for start in range(0, len(pending), ROWS_PER_READ):
            chunk = pending[start:start + ROWS_PER_READ]
            values = ", ".join(["(" + ", ".join("?" * len(keys)) + ")"] * len(chunk))
            rows = self.db.rows(f"SELECT {', '.join(keys + columns)} FROM {table} "
                                f"WHERE ({', '.join(keys)}) IN (VALUES {values})", [k for key in chunk for k in key])
            old = {tuple(row[:len(keys)]): [Decimal(str(v)) for v in row[len(keys):]] for row in rows}
            self.db.executemany(
                f"UPDATE {table} SET {', '.join(c + ' = ?' for c in columns)} WHERE {' AND '.join(k + ' = ?' for k in keys)}",
                [[a + d for a, d in zip(old[key], deltas[key])] + list(key) for key in chunk if key in old])
            self.db.executemany(
                f"INSERT INTO {table} ({', '.join(keys + columns)}) VALUES ({', '.join('?' * (len(keys) + len(columns)))})",
                [list(key) + deltas[key] for key in chunk if key not in old])


ROWS_PER_READ = 400


# --- one event ----------------------------------------------------------------------------------
def apply_event(db: Batch, position: int, originator_id: str, e: Any) -> None:
    """Every view's change for the event at ``position`` in the notification log: the
    balances and platform totals from the event's one reading (ledger.domain.postings), the
    fact rows from the writer of its class."""
    reading = read(originator_id, e)
    _, _, name = originator_id.partition("/")
    for delta in balance_deltas(name, reading):
        db.add_balance(name, delta)
    _, memo = reading
    for book_name, currency, amount in memo:
        if book_name == LENDING_POOL:
            db.add_total(currency, amount)
    facts = FACTS.get(type(e))
    if facts is not None and originator_id.startswith(ids.ACCOUNT_PREFIX):
        facts(db, position, name, e)


def _interest_charged(db: Batch, position: int, account: str, e: Any) -> None:
    db.write("INSERT INTO view_interest_charges VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
             [position, account, e.currency, stamp(e.hour), e.liability, e.interest_free, e.rate,
              e.interest, e.paid, e.capitalized, stamp(e.at)])


def _repaid(db: Batch, position: int, account: str, e: Any) -> None:
    db.write("INSERT INTO view_repayments VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
             [position, account, e.currency, e.amount, e.source, e.principal, e.interest, stamp(e.at)])


def _auto_swapped(db: Batch, position: int, account: str, e: Any) -> None:
    db.write("INSERT INTO view_forced_swaps VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
             [position, account, e.from_currency, e.from_amount, e.to_currency, e.to_amount, e.reason, stamp(e.at)])


def _liquidation_started(db: Batch, position: int, account: str, e: Any) -> None:
    db.write("INSERT INTO view_liquidations (position, account, started_at, risk_ratio_before, adjusted_equity, "
             "maintenance_margin) VALUES (?, ?, ?, ?, ?, ?)",
             [position, account, stamp(e.at), e.risk_ratio, e.adjusted_equity, e.maintenance_margin])


def _liquidation_completed(db: Batch, position: int, account: str, e: Any) -> None:
    db.write("UPDATE view_liquidations SET completed_at = ?, risk_ratio_after = ?, bad_debt = ? "
             "WHERE account = ? AND completed_at IS NULL",
             [stamp(e.at), e.risk_ratio, json.dumps(plain(e.bad_debt), sort_keys=True), account])


def _mode_switched(db: Batch, position: int, account: str, e: Any) -> None:
    db.write("INSERT INTO view_mode_switches VALUES (?, ?, ?, ?, ?)",
             [position, account, e.from_mode, e.to_mode, stamp(e.at)])


# event class -> the writer of its fact rows (keyed by class: see ledger.service.topics)
FACTS: dict[type, Callable[[Batch, int, str, Any], None]] = {
    Account.InterestCharged: _interest_charged, Account.Repaid: _repaid, Account.AutoSwapped: _auto_swapped,
    Account.LiquidationStarted: _liquidation_started, Account.LiquidationCompleted: _liquidation_completed,
    Account.ModeSwitched: _mode_switched,
}
