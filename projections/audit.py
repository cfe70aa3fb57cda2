"""Audit (issue 7): a hash chain over the event log, and the checks of `ledger audit verify`.

The stores write each event's link in the event's own transaction (``stores.chain``, which
also holds the formula): link n covers the event's position, aggregate id, version, topic,
its stored bytes, and link n − 1, so changing, deleting, inserting or reordering an event —
the last one included — at any moment after its commit breaks the chain at that point.
`ledger audit seal` is a one-off catch-up for logs written before the stores did this: it
links the events that have no link yet.  An auditor keeps `ledger audit digest`
(position:link) and later proves with `verify --digest` that the log up to there is
unchanged, even if someone rewrote the links table too.  Everything else here only reads, so
that an auditor's read-only credentials suffice (§13): verify, digest and export never seal.
"""
from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, Iterator

import orjson
from eventsourcing.persistence import Notification

from ledger.domain.account import Account
from ledger.domain import ids
from ledger.service.app import LedgerApp
from ledger.domain.base import replay
from ledger.domain.interest import hourly_rate, liability_at
from ledger.domain.money import round_up
from ledger.domain.times import rfc3339
from ledger.domain.platform import Platform
from ledger.domain.postings import book, read, unbalanced

from projections import eventlog
from projections.sql import ViewDatabase
from stores import chain
from stores.chain import GENESIS

PAGE = 1000

LOAD_MANY = 500  # aggregates per read when comparing loads with replays


def stored_bytes(n: Any) -> bytes:
    """The event's stored state as bytes (a tampered row may come back as text)."""
    return n.state.encode() if isinstance(n.state, str) else bytes(n.state)


def link(previous: str, n: Any) -> str:
    return chain.link(previous, n.id, n.originator_id, n.originator_version, n.topic, stored_bytes(n))


def notifications(app: LedgerApp, after: int = 0) -> Iterator[Any]:
    while True:
        page = app.recorder.select_notifications(start=after + 1, limit=PAGE)
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1].id


def head(db: ViewDatabase) -> tuple[int, str]:
    if not eventlog.has_chain(db):  # no chain table (a reader does not create one)
        return 0, GENESIS
    return chain.head(db.rows("SELECT position, link FROM audit_chain ORDER BY position DESC LIMIT 1"))


def seal(app: LedgerApp, db: ViewDatabase) -> int:
    """A one-off catch-up for logs written before the stores linked each event in its own
    transaction: link every event that has no link yet, in order (under the writers' lock);
    return how many were linked."""
    return app.recorder.link_backlog()


def digest(db: ViewDatabase) -> str:
    position, last = head(db)
    return f"{position}:{last}"


def unsealed(app: LedgerApp, db: ViewDatabase) -> int:
    """How many events lie after the chain's head (not linked yet)."""
    return max(0, (app.recorder.max_notification_id() or 0) - head(db)[0])


def links_at_commit(app: LedgerApp) -> bool:
    """Whether the store links every event in the transaction that inserts it: then an event
    without a link, even after the chain's head, was not written by the ledger."""
    return bool(getattr(app.recorder, "links_at_commit", False))


@dataclass
class Verification:
    events_checked: int = 0
    findings: list[dict[str, Any]] = field(default_factory=list)
    unsealed: int = 0  # events after the chain's head, not linked yet (not a finding: see verify)
    view_position: int = 0  # how far the read models were built (0: never)
    head: int = 0  # the last event's position

    def find(self, kind: str, detail: str, **more: Any) -> None:
        self.findings.append({"kind": kind, "detail": detail, **more})

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def view_lag(self) -> int:
        return max(0, self.head - self.view_position)


PROCESSES = 0  # processes of the aggregate pass, 0: one per CPU; LEDGER_VERIFY_PROCESSES through the settings
PARALLEL_FROM = 200_000  # events from which that pass runs in those processes; LEDGER_VERIFY_PARALLEL_FROM


def verify(app: LedgerApp, db: ViewDatabase, expected_digest: str | None = None,
           progress: Callable[[int, int], None] | None = None, processes: int = PROCESSES,
           parallel_from: int = PARALLEL_FROM) -> Verification:
    """Every check, reading only: nothing is sealed or projected first.  Events after the
    chain's head are counted as ``unsealed`` (the writers link them), unless the store links
    at commit; the read models are compared with the log at their own position.

    Two passes over the log, neither holding it: by position, the chain (``check_chain``);
    by (aggregate, version), every event decoded once and each aggregate replayed alone
    (``check_aggregates``; from ``parallel_from`` events on, in ``processes`` processes, each
    a range of aggregate ids: ``projections.verify_parts``).  What stays in memory is one
    aggregate (per process), the platform's history, and per account and currency its
    balances and books."""
    result = Verification()
    total = app.recorder.max_notification_id() or 0
    views = read_views(db)
    result.view_position = views.position
    last = check_chain(result, app, db, total, progress)
    result.head = max(last, total)
    for position in eventlog.linked_but_missing(app, db):
        result.find("chain", f"event {position} is linked but missing: deleted", position=position)
    if expected_digest:
        position, _, wanted = expected_digest.partition(":")
        kept = eventlog.link_at(db, int(position)) if int(position) else GENESIS
        if kept != wanted:
            result.find("chain", f"the chain at {position} is not the digest the auditor kept", position=int(position or 0))
    compared = views if 0 < views.position <= last else None
    from projections import verify_parts

    if processes != 1 and total >= parallel_from and verify_parts.possible(app):
        verify_parts.check_aggregates(result, app, db, compared, last, processes)
    else:
        check_aggregates(result, app, db, compared, last)
    if result.view_position > last:
        result.find("read_model", f"the views are at {result.view_position}, the log at {last}")
    return result


def check_chain(result: Verification, app: LedgerApp, db: ViewDatabase, total: int,
                progress: Callable[[int, int], None] | None) -> int:
    """Each event's link, in position order; the last position read."""
    chain_head = eventlog.chain_head(db)
    strict = links_at_commit(app)
    previous, last = GENESIS, 0
    for n, stored in eventlog.by_position(app, db):
        last = n.id
        result.events_checked += 1
        previous = link(previous, n)
        if stored is None:
            if n.id < chain_head:
                result.find("chain", f"event {n.id} has no link but later events do: inserted", position=n.id)
            elif strict:
                result.find("chain", f"event {n.id} ({n.originator_id} v{n.originator_version}) has no link: "
                                     "not written by the ledger (or written before links were made at commit: "
                                     "`ledger audit seal` links those once)", position=n.id)
            else:
                result.unsealed += 1
        elif stored != previous:
            result.find("chain", f"event {n.id} ({n.originator_id} v{n.originator_version}) does not match its link",
                        position=n.id)
            previous = stored  # go on from the recorded link, to report each break once
        if progress and result.events_checked % PAGE == 0:
            progress(result.events_checked, total)
    return last


def keeps_time(aggregate: str) -> bool:
    """T1: an account's and the platform's events never go back in time.  The indexes (pools,
    account sets, run logs, ...) gather the facts of many accounts and runs, in commit order."""
    return aggregate == ids.PLATFORM or aggregate.startswith(ids.account(""))


class PlatformHistory:
    """The platform's events with their positions, for recomputing a charge: the platform as
    the events before the charge left it for its hour."""

    def __init__(self, app: LedgerApp, db: ViewDatabase, last: int) -> None:
        self.positions: list[int] = []
        self.events: list[Any] = []
        for version, position, topic, state in eventlog.of_aggregate(app, db, ids.PLATFORM):
            if position > last:
                break
            try:
                event = app.mapper.to_domain_event(stored_event(ids.PLATFORM, version, position, topic, state))
            except Exception:  # noqa: BLE001 - reported when the platform's own events are checked
                continue
            self.positions.append(position)
            self.events.append(event)
        self.cache: dict[tuple[datetime, int], Platform] = {}

    def at(self, hour: datetime, before: int) -> Platform:
        count = bisect_left(self.positions, before)
        key = (hour, count)
        if key not in self.cache:
            if len(self.cache) > 1000:
                self.cache.clear()
            self.cache[key] = replay(None, [e for e in self.events[:count]
                                            if type(e) is Platform.PlatformInitialised or e.at <= hour])
        return self.cache[key]


def stored_event(aggregate: str, version: int, position: int, topic: str, state: Any) -> Notification:
    return Notification(id=position, originator_id=aggregate, originator_version=version, topic=topic, state=state)


class AggregateChecks:
    """``check_aggregates``'s state: the aggregate being replayed, and what the checks after
    the pass need of every one (balances, books, pools), never the aggregates themselves."""

    def __init__(self, result: Verification, app: LedgerApp, views: "ViewRows | None") -> None:
        self.result, self.app, self.views = result, app, views
        self.books: dict[tuple[str, str], Decimal] = {}
        self.balances: Balances = []
        self.pools: dict[str, Decimal] = {}
        # the views' rows, consumed as the accounts are compared (no copy: ``views`` is this
        # pass's own; a copy of 100,000 accounts' rows is 100 MB a process)
        self.view_rows = views.balances if views else {}
        self.view_pools: dict[str, Decimal] = {}
        self.with_snapshots = app.recorder.snapshot_ids() if hasattr(app.recorder, "snapshot_ids") else None
        self.pending: list[tuple[str, Any]] = []  # replayed, to compare with their loads
        self.key: str | None = None
        self.state: Any = None
        self.at_view = False  # the current aggregate was compared with the views

    def start(self, key: str) -> None:
        if self.key is not None:
            self.finish()
        self.key, self.state, self.at_view = key, None, False

    def before(self, position: int) -> None:
        """Before an event at ``position``: compare with the views if they end before it."""
        if self.views and not self.at_view and position > self.views.position:
            self.compare_views()

    def compare_views(self) -> None:
        self.at_view = True
        zero = (Decimal(0),) * 3
        for account, currency, *sums in account_balances(self.state):
            if self.view_rows.pop((account, currency), zero) != tuple(sums):
                self.result.find("read_model", f"view_balances {account} {currency} differs from the account")
        if self.key and self.key.startswith(ids.POOL_PREFIX) and self.state is not None:
            self.view_pools[self.state.currency] = self.state.outstanding

    def finish(self) -> None:
        key, state = self.key, self.state
        if key is None:
            return
        if self.views and not self.at_view:
            self.compare_views()
        self.balances.extend(account_balances(state))
        if key.startswith(ids.POOL_PREFIX) and state is not None:
            self.pools[state.currency] = state.outstanding
        if state is not None and (self.with_snapshots is None or key in self.with_snapshots):
            self.pending.append((key, state))
            if len(self.pending) >= LOAD_MANY:
                self.compare_loads()
        self.key = None

    def compare_loads(self) -> None:
        check_replay(self.result, self.app, dict(self.pending))
        self.pending.clear()

    def close(self) -> None:
        """After the last aggregate of a pass (or of one part of it)."""
        self.finish()
        self.compare_loads()

    def cross(self) -> None:
        """The checks across all aggregates: the books, the rows of the views no account has,
        the pools against the views' totals (after every part was merged, when in parts)."""
        check_books(self.result, self.books, self.balances, self.pools)
        if self.views:
            zero = (Decimal(0),) * 3
            for key in sorted(self.view_rows):  # rows no account has must be zero
                if self.view_rows[key] != zero:
                    self.result.find("read_model", f"view_balances {key[0]} {key[1]} differs from the account")
            for currency in sorted(set(self.views.totals) | set(self.view_pools)):
                if self.views.totals.get(currency, Decimal(0)) != self.view_pools.get(currency, Decimal(0)):
                    self.result.find("read_model", f"view_platform_totals {currency} differs from the lending pool")


def check_aggregates(result: Verification, app: LedgerApp, db: ViewDatabase, views: "ViewRows | None", last: int,
                     lo: str | None = None, hi: str | None = None, cross: bool = True) -> "AggregateChecks":
    """Per aggregate, one ordered pass over (aggregate, version) up to position ``last``:
    versions contiguous from 1; for accounts and the platform `at` never going back (T1);
    each event read once (D1: its legs balance, they add to the books); each InterestCharged
    recomputed; the aggregate replayed alone, then compared with its load, its balances kept
    for the books and its state at the views' position compared with the views (``views``:
    None when they are not compared).  The platform's first event carries the instant of the
    first command ever applied, and its defaults hold from the beginning of time, so its
    later events may be earlier.  ``lo`` and ``hi``: only the aggregates with ids in [lo, hi)
    (one part of the pass, ``projections.verify_parts``); ``cross``: then the checks across
    every aggregate too."""
    platform = PlatformHistory(app, db, last)
    checks = AggregateChecks(result, app, views)
    books = checks.books
    current, expected, latest, latest_version = None, 1, None, 0
    for aggregate, version, position, topic, state in eventlog.by_aggregate(app, db, lo, hi):
        if position > last:  # written after the chain's pass
            continue
        if aggregate != current:
            current, expected, latest, latest_version = aggregate, 1, None, 0
            checks.start(aggregate)
            timed = keeps_time(aggregate)
        if version != expected:
            gap = f"v{expected}" if version == expected + 1 else f"v{expected} to v{version - 1}"
            what = f"starts at v{version}" if expected == 1 else f"has no {gap}"
            result.find("version", f"{aggregate} {what}: versions are not contiguous from 1 (event {position})",
                        aggregate=aggregate, position=position)
        expected = version + 1
        n = stored_event(aggregate, version, position, topic, state)
        try:
            event = app.mapper.to_domain_event(n)
            legs, _ = read(aggregate, event)
        except Exception as error:  # noqa: BLE001 - a tampered row may not decode, or not hold its type's fields
            result.find("chain", f"event {position} cannot be read: {type(error).__name__}", position=position)
            continue
        at = getattr(event, "at", None)
        if timed and not (aggregate == ids.PLATFORM and version == 1) and isinstance(at, datetime):
            if latest is not None and at < latest:
                result.find("time", f"{aggregate} v{version} (event {position}) is at {rfc3339(at)}, before "
                                    f"v{latest_version} at {rfc3339(latest)}: `at` went back (T1)",
                            aggregate=aggregate, position=position)
            else:
                latest, latest_version = at, version
        off = unbalanced(legs)
        if off:
            result.find("double_entry", f"event {position} does not balance: {off}", position=position)
        for book_, currency, amount in legs:
            books[(book_, currency)] = books.get((book_, currency), Decimal(0)) + amount
        checks.before(position)
        try:
            check_interest(result, n, event, checks.state, platform)
        except Exception as error:  # noqa: BLE001 - e.g. the platform's history does not replay
            result.find("interest", f"event {position}: the charge cannot be recomputed: {type(error).__name__} {error}".strip(),
                        position=position)
        try:
            checks.state = event.mutate(checks.state)
        except Exception as error:  # noqa: BLE001 - a gap or a foreign event in an aggregate's history
            result.find("replay", f"event {position} ({aggregate} v{version}) does not replay: "
                                  f"{type(error).__name__} {error}".strip(), position=position)
    checks.close()
    if cross:
        checks.cross()
    return checks


def check_interest(result: Verification, n: Any, event: Any, acct: Any, platform: PlatformHistory) -> None:
    """Every InterestCharged recomputes from its inputs and from the history before it."""
    if type(event) is not Account.InterestCharged:
        return
    then = platform.at(event.hour, n.id)
    places = then.precision(event.currency)
    owed, upl = liability_at(acct, event.currency, event.hour, lambda _: then)
    expected = {
        "liability": owed,
        "interest_free": min(upl, then.allowance(event.currency)),
        "rate": hourly_rate(then, event.currency, acct.vip_level),
        "interest": round_up((event.liability - event.interest_free) * event.rate, places),
    }
    for name, value in expected.items():
        if getattr(event, name) != value:
            result.find("interest", f"event {n.id}: {name} is {getattr(event, name)}, history gives {value}",
                        position=n.id, account=ids.account_name(n.originator_id))


Balances = list[tuple[str, str, Decimal, Decimal, Decimal]]  # account, currency, cash, liability, upl_liability


def account_balances(agg: Any) -> Balances:
    """Per currency an account's cash over all wallets, its liability and the UPL-generated
    part, as the replayed account holds them (nothing for another aggregate): what the books
    and the balances read model are both compared with."""
    out: Balances = []
    if isinstance(agg, Account):
        for currency in set(agg.liabilities()) | {c for w in agg.wallets.values() for c in w}:
            cash = sum((w.get(currency, Decimal(0)) for w in agg.wallets.values()), Decimal(0))
            out.append((agg.account, currency, cash, agg.liability(currency),
                        agg.upl_liability.get(currency, Decimal(0))))
    return out


def check_books(result: Verification, books: dict[tuple[str, str], Decimal], balances: Balances,
                pools: dict[str, Decimal]) -> None:
    """D1: per currency the books sum to zero; each user's books equal the account; the
    lending pools equal what the users owe."""
    totals: dict[str, Decimal] = {}
    for (_, currency), amount in books.items():
        totals[currency] = totals.get(currency, Decimal(0)) + amount
    for currency, total in sorted(totals.items()):
        if total:
            result.find("double_entry", f"the {currency} books sum to {total}, not 0")
    owed_total: dict[str, Decimal] = {}
    for account, currency, cash, owed, _ in balances:
        if books.get((book(account, "wallet"), currency), Decimal(0)) != cash:
            result.find("double_entry", f"{account} {currency}: wallet book differs from the account")
        if -books.get((book(account, "liability"), currency), Decimal(0)) != owed:
            result.find("double_entry", f"{account} {currency}: liability book differs from the account")
        owed_total[currency] = owed_total.get(currency, Decimal(0)) + owed
    for currency, outstanding in pools.items():
        if outstanding != owed_total.get(currency, Decimal(0)):
            result.find("double_entry", f"pool {currency} says {outstanding}, accounts owe {owed_total.get(currency, 0)}")


def check_replay(result: Verification, app: LedgerApp, states: dict[str, Any]) -> None:
    """Each of these aggregates as the application loads it from a snapshot equals its
    replay; loaded together.  One without a snapshot loads by replaying the same events the
    same way, so it is compared only when the store cannot say which have snapshots."""
    keys = list(states)
    try:
        loaded = app.repository.get_many(keys)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - one that cannot be loaded: find which, one by one
        loaded = {key: load_one(result, app, key) for key in keys}
    for key in keys:
        if loaded[key] is not None and normal(vars(loaded[key])) != normal(vars(states[key])):
            result.find("replay", f"{key} loads differently from its events", aggregate=key)


def load_one(result: Verification, app: LedgerApp, key: str) -> Any:
    try:
        return app.repository.get(key)
    except Exception as error:  # noqa: BLE001
        result.find("replay", f"{key} cannot be loaded: {type(error).__name__}", aggregate=key)
        return None


@dataclass
class ViewRows:
    """The read models that verify compares, read in one snapshot with their position (a
    runner may move them on while verify reads the log)."""
    position: int = 0  # 0: never built, or no views in this store
    balances: dict[tuple[str, str], tuple[Decimal, ...]] = field(default_factory=dict)
    totals: dict[str, Decimal] = field(default_factory=dict)


def read_views(db: ViewDatabase) -> ViewRows:
    with db.snapshot():
        if not db.rows(db.table_exists_sql(), ["view_tracking"]):
            return ViewRows()
        position = int(db.rows("SELECT MIN(position) FROM view_tracking")[0][0] or 0)
        rows = db.rows("SELECT account, currency, cash, liability, upl_liability FROM view_balances")
        totals = db.rows("SELECT currency, outstanding FROM view_platform_totals")
    return ViewRows(position, {(a, c): tuple(Decimal(str(v)) for v in vals) for a, c, *vals in rows},
                    {c: Decimal(str(v)) for c, v in totals})


def normal(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [normal(v) for v in value]
    if isinstance(value, dict):
        return {k: normal(v) for k, v in value.items() if k != "_pending_events"}
    return value


def event_at(app: LedgerApp, state: Any) -> datetime | None:
    """The business time recorded in a stored event's state (None: none, or unreadable).
    Only ``at`` is revived (the stored state is JSON, its values in the transcoder's
    envelopes): reviving every field would cost most of a decode."""
    mapper = app.mapper
    try:
        data = state.encode() if isinstance(state, str) else bytes(state)
        if mapper.cipher:
            data = mapper.cipher.decrypt(data)
        if mapper.compressor:
            data = mapper.compressor.decompress(data)
        at = orjson.loads(data).get("at")
        if isinstance(at, dict):
            at = mapper.transcoder.names[at["_type_"]].decode(at["_data_"])  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - an unreadable event has no instant here
        return None
    return at if isinstance(at, datetime) else None


def export(app: LedgerApp, db: ViewDatabase, since: datetime | None, until: datetime | None) -> Iterator[dict[str, Any]]:
    """Events with their links for a period, as one unbroken range of positions — from the
    first event at or after ``since`` to the last at or before ``until`` — so that each
    period's chain continues from the previous period's last link.  Two passes over the log,
    holding neither: the range's ends, then its rows as they are read."""
    first = last = None
    for n, _ in eventlog.by_position(app, db):
        at = event_at(app, n.state)
        if at is not None and (since is None or at >= since) and first is None:
            first = n.id
        if at is not None and (until is None or at <= until):
            last = n.id
    if first is None or last is None or first > last:
        return
    previous = GENESIS
    for n, stored in eventlog.by_position(app, db):
        if n.id > last:
            return
        if n.id >= first:
            yield {"position": n.id, "aggregate": n.originator_id, "version": n.originator_version, "topic": n.topic,
                   "state": stored_bytes(n).decode(), "previous_link": previous, "link": stored}
        previous = stored or previous


# --- the trial balance (`ledger audit trial-balance`, SPEC §10, §13) ------------------------------------
USER_BOOKS = {"wallet": "user:*:wallet", "liability": "user:*:liability"}  # every user's, summed


def legs_at(app: LedgerApp, as_of: datetime | None = None) -> Iterator[tuple[str, Any]]:
    """Each event at or before ``as_of`` (all: None), in log order, as (its aggregate id, its
    legs): the one reading of the books that the trial balance and the proof of liabilities
    (projections/liabilities.py) both sum."""
    for n in notifications(app):
        event = app.mapper.to_domain_event(n)
        if as_of is not None and getattr(event, "at", as_of) > as_of:
            continue  # an event after the instant
        yield n.originator_id, read(n.originator_id, event)[0]


def trial_balance(app: LedgerApp, as_of: datetime | None = None) -> list[dict[str, Any]]:
    """Every book of §10 per currency, from each event's one reading (its legs), for the
    events at or before ``as_of`` (all: None): the users' wallets and liabilities summed over
    the users, the platform's books and ``external``.  Per currency they sum to zero (D1).
    The lending pool's claim is the users' liability book negated (ledger.domain.postings)."""
    balances: dict[tuple[str, str], Decimal] = {}
    for _, legs in legs_at(app, as_of):
        for name, currency, amount in legs:
            if name.startswith("user:"):
                name = USER_BOOKS[name.rsplit(":", 1)[1]]
            balances[(name, currency)] = balances.get((name, currency), Decimal(0)) + amount
    return [{"book": name, "currency": currency, "balance": amount}
            for (name, currency), amount in sorted(balances.items(), key=lambda item: (item[0][1], item[0][0]))]


def out_of_balance(books: list[dict[str, Any]]) -> dict[str, Decimal]:
    """Per currency the books' sum where it is not zero (empty: D1 holds)."""
    sums: dict[str, Decimal] = {}
    for row in books:
        sums[row["currency"]] = sums.get(row["currency"], Decimal(0)) + row["balance"]
    return {c: v for c, v in sums.items() if v != 0}
