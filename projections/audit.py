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

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, Iterator

import orjson

from ledger.domain.account import Account
from ledger.domain import ids
from ledger.service.app import LedgerApp
from ledger.domain.base import replay
from ledger.domain.interest import hourly_rate
from ledger.domain.money import round_up
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


def verify(app: LedgerApp, db: ViewDatabase, expected_digest: str | None = None,
           progress: Callable[[int, int], None] | None = None) -> Verification:
    """Every check, reading only: nothing is sealed or projected first.  Events after the
    chain's head are counted as ``unsealed`` (the writers link them), unless the store links
    at commit; the read models are compared with the log at their own position."""
    result = Verification()
    total = app.recorder.max_notification_id() or 0
    chain_head = eventlog.chain_head(db)
    strict = links_at_commit(app)
    views = read_views(db)
    result.view_position = views.position
    views_checked = views.position == 0
    previous, books = GENESIS, {}
    states: dict[str, Any] = {}
    platform_events: list[Any] = []
    last = 0
    for n, stored in eventlog.by_position(app, db):
        if not views_checked and n.id > views.position:
            check_views(result, views, account_balances(states), states)
            views_checked = True
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
        try:
            event = app.mapper.to_domain_event(n)
            legs, _ = read(n.originator_id, event)
        except Exception as error:  # noqa: BLE001 - a tampered row may not decode, or not hold its type's fields
            result.find("chain", f"event {n.id} cannot be read: {type(error).__name__}", position=n.id)
            continue
        off = unbalanced(legs)
        if off:
            result.find("double_entry", f"event {n.id} does not balance: {off}", position=n.id)
        for book, currency, amount in legs:
            books[(book, currency)] = books.get((book, currency), Decimal(0)) + amount
        try:
            check_interest(result, n, event, states, platform_events, app)
        except Exception as error:  # noqa: BLE001 - e.g. the platform's history does not replay
            result.find("interest", f"event {n.id}: the charge cannot be recomputed: {type(error).__name__} {error}".strip(),
                        position=n.id)
        try:
            states[n.originator_id] = event.mutate(states.get(n.originator_id))
        except Exception as error:  # noqa: BLE001 - a gap or a foreign event in an aggregate's history
            result.find("replay", f"event {n.id} ({n.originator_id} v{n.originator_version}) does not replay: "
                                  f"{type(error).__name__} {error}".strip(), position=n.id)
        if n.originator_id == "platform":
            platform_events.append(event)
        if progress and result.events_checked % PAGE == 0:
            progress(result.events_checked, total)
    result.head = max(last, total)
    for position in eventlog.linked_but_missing(app, db):
        result.find("chain", f"event {position} is linked but missing: deleted", position=position)
    if expected_digest:
        position, _, wanted = expected_digest.partition(":")
        kept = eventlog.link_at(db, int(position)) if int(position) else GENESIS
        if kept != wanted:
            result.find("chain", f"the chain at {position} is not the digest the auditor kept", position=int(position or 0))
    check_aggregates(result, app, db)
    balances = account_balances(states)
    check_books(result, books, balances, states)
    check_replay(result, app, states)
    if result.view_position > last:
        result.find("read_model", f"the views are at {result.view_position}, the log at {last}")
    elif not views_checked:
        check_views(result, views, balances, states)
    return result


def keeps_time(aggregate: str) -> bool:
    """T1: an account's and the platform's events never go back in time.  The indexes (pools,
    account sets, run logs, ...) gather the facts of many accounts and runs, in commit order."""
    return aggregate == ids.PLATFORM or aggregate.startswith(ids.account(""))


def event_at(app: LedgerApp, state: Any) -> datetime | None:
    """The business time recorded in a stored event's state (None: none, or unreadable).
    Only ``at`` is revived (the stored state is JSON, its values in the transcoder's
    envelopes): reviving every field would cost a quarter of verify's time."""
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
    except Exception:  # noqa: BLE001 - an unreadable event is reported by the chain pass
        return None
    return at if isinstance(at, datetime) else None


def check_aggregates(result: Verification, app: LedgerApp, db: ViewDatabase) -> None:
    """Per aggregate, one ordered pass over (aggregate, version): versions contiguous from 1,
    and for accounts and the platform `at` never going back (T1).  The platform's first event
    carries the instant of the first command ever applied, and its defaults hold from the
    beginning of time, so its later events may be earlier."""
    current, expected, latest, latest_version = None, 1, None, 0
    for aggregate, version, position, state in eventlog.by_aggregate(app, db):
        if aggregate != current:
            current, expected, latest, latest_version = aggregate, 1, None, 0
        if version != expected:
            gap = f"v{expected}" if version == expected + 1 else f"v{expected} to v{version - 1}"
            what = f"starts at v{version}" if expected == 1 else f"has no {gap}"
            result.find("version", f"{aggregate} {what}: versions are not contiguous from 1 (event {position})",
                        aggregate=aggregate, position=position)
        expected = version + 1
        if not keeps_time(aggregate) or (aggregate == ids.PLATFORM and version == 1):
            continue
        at = event_at(app, state)
        if at is None:
            continue
        if latest is not None and at < latest:
            result.find("time", f"{aggregate} v{version} (event {position}) is at {at.isoformat()}, before "
                                f"v{latest_version} at {latest.isoformat()}: `at` went back (T1)",
                        aggregate=aggregate, position=position)
        else:
            latest, latest_version = at, version


def check_interest(result: Verification, n: Any, event: Any, states: dict[str, Any],
                   platform_events: list[Any], app: LedgerApp) -> None:
    """Every InterestCharged recomputes from its inputs and from the history before it."""
    if type(event) is not Account.InterestCharged:
        return
    acct = states.get(n.originator_id)
    then = replay(None, [e for e in platform_events if type(e) is Platform.PlatformInitialised or e.at <= event.hour])
    places = then.precision(event.currency)
    owed, upl = acct.owed_at(event.currency, event.hour)
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


def account_balances(states: dict[str, Any]) -> Balances:
    """Per account and currency the account's cash over all wallets, its liability and the
    UPL-generated part, as the replayed accounts hold them: what the books and the
    balances read model are both compared with."""
    out: Balances = []
    for agg in states.values():
        if isinstance(agg, Account):
            for currency in set(agg.liabilities()) | {c for w in agg.wallets.values() for c in w}:
                cash = sum((w.get(currency, Decimal(0)) for w in agg.wallets.values()), Decimal(0))
                out.append((agg.account, currency, cash, agg.liability(currency),
                            agg.upl_liability.get(currency, Decimal(0))))
    return out


def check_books(result: Verification, books: dict[tuple[str, str], Decimal], balances: Balances,
                states: dict[str, Any]) -> None:
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
    for key, agg in states.items():
        if key.startswith(ids.POOL_PREFIX) and agg.outstanding != owed_total.get(agg.currency, Decimal(0)):
            result.find("double_entry", f"pool {agg.currency} says {agg.outstanding}, accounts owe {owed_total.get(agg.currency, 0)}")


def check_replay(result: Verification, app: LedgerApp, states: dict[str, Any]) -> None:
    """Every aggregate as the application loads it from a snapshot equals its replay; loaded
    many at a time.  One without a snapshot loads by replaying the same events the same way,
    so it is compared only when the store cannot say which have snapshots."""
    with_snapshots = app.recorder.snapshot_ids() if hasattr(app.recorder, "snapshot_ids") else set(states)
    keys = [k for k in states if k in with_snapshots]
    for start in range(0, len(keys), LOAD_MANY):
        chunk = keys[start:start + LOAD_MANY]
        try:
            loaded = app.repository.get_many(chunk)  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - one that cannot be loaded: find which, one by one
            loaded = {key: load_one(result, app, key) for key in chunk}
        for key in chunk:
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


def check_views(result: Verification, views: ViewRows, balances: Balances, states: dict[str, Any]) -> None:
    """The balances and platform-totals read models equal the accounts and pools, as the
    events up to the views' position left them."""
    zero = (Decimal(0),) * 3
    accounts = {(account, currency): tuple(sums) for account, currency, *sums in balances}
    for key in sorted(set(views.balances) | set(accounts)):  # rows no account has must be zero too
        if views.balances.get(key, zero) != accounts.get(key, zero):
            result.find("read_model", f"view_balances {key[0]} {key[1]} differs from the account")
    pools = {agg.currency: agg.outstanding for key, agg in states.items() if key.startswith(ids.POOL_PREFIX)}
    for currency in sorted(set(views.totals) | set(pools)):
        if views.totals.get(currency, Decimal(0)) != pools.get(currency, Decimal(0)):
            result.find("read_model", f"view_platform_totals {currency} differs from the lending pool")


def normal(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [normal(v) for v in value]
    if isinstance(value, dict):
        return {k: normal(v) for k, v in value.items() if k != "_pending_events"}
    return value


def export(app: LedgerApp, db: ViewDatabase, since: datetime | None, until: datetime | None) -> list[dict[str, Any]]:
    """Events with their links for a period, as one unbroken range of positions — from the
    first event at or after ``since`` to the last at or before ``until`` — so that each
    period's chain continues from the previous period's last link."""
    rows, first, last, previous = [], None, None, GENESIS
    for n, stored in eventlog.by_position(app, db):
        at = getattr(app.mapper.to_domain_event(n), "at", None)
        rows.append({"position": n.id, "aggregate": n.originator_id, "version": n.originator_version, "topic": n.topic,
                     "state": stored_bytes(n).decode(), "previous_link": previous, "link": stored})
        previous = stored or previous
        if at is not None and (since is None or at >= since) and first is None:
            first = len(rows) - 1
        if at is not None and (until is None or at <= until):
            last = len(rows) - 1
    if first is None or last is None or first > last:
        return []
    return rows[first:last + 1]


# --- the trial balance (`ledger audit trial-balance`, SPEC §10, §13) ------------------------------------
USER_BOOKS = {"wallet": "user:*:wallet", "liability": "user:*:liability"}  # every user's, summed


def trial_balance(app: LedgerApp, as_of: datetime | None = None) -> list[dict[str, Any]]:
    """Every book of §10 per currency, from each event's one reading (its legs), for the
    events at or before ``as_of`` (all: None): the users' wallets and liabilities summed over
    the users, the platform's books and ``external``.  Per currency they sum to zero (D1).
    The lending pool's claim is the users' liability book negated (ledger.domain.postings)."""
    balances: dict[tuple[str, str], Decimal] = {}
    for n in notifications(app):
        event = app.mapper.to_domain_event(n)
        if as_of is not None and getattr(event, "at", as_of) > as_of:
            continue  # an event after the instant
        legs, _ = read(n.originator_id, event)
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
