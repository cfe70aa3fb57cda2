"""The ledger application: commands in, events saved, one transaction per batch.

``LedgerApp.apply(objs, now)`` takes decoded JSON commands and answers one result per
command, in order.  A batch runs against in-memory aggregates (``UnitOfWork``) and is saved
with one ``save()``: one transaction.  When the store refuses the batch for a reason a retry
can cure (``ledger.adapters.retry``: another writer got there first, a deadlock, a lock or statement
timeout, a lost connection) the batch is recomputed from fresh state, a bounded number of
times with jittered backoff, and at last split into single commands; a command that still
cannot win answers ``conflict``.  A store that stays unreachable raises ``StoreUnavailable``.
"""
from __future__ import annotations

import hashlib
import json
import types
from contextlib import nullcontext
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, ContextManager, Mapping

import orjson
from eventsourcing.application import AggregateNotFoundError, Application, Repository
from eventsourcing.persistence import IntegrityError, InternalError
from eventsourcing.utils import strtobool

from ledger.domain.account import Account
from ledger.domain import ids
from ledger.domain.base import replay
from ledger.service.cache import AggregateCache
from ledger.domain.commands import Command, parse_command
from ledger.domain.errors import LedgerError
from ledger.service.handlers import execute
from ledger.domain.horizon import FUTURE_ALLOWANCE, check_not_future
from ledger.domain.indexes import AccountSet, CommandRecord, InterestClock, LendingPool, RunLog, pool_change
from ledger.domain.platform import Platform, default_parameters
from ledger.adapters.retry import Failures, RetryPolicy, StoreUnavailable, classify, describe
from ledger.service.topics import register as register_moved_topics
from ledger.service.topics import stored_topics
from ledger.service.unit_of_work import Outcome, UnitOfWork

Result = dict[str, Any]
BATCH_SIZE = 2000  # commands per transaction (fewer commits; still a bounded unit of work)
EVENT_PAGE = 500  # events per read when replaying to an instant
AFTER_SNAPSHOT_PAGE = 101  # the first read after a snapshot: the next one is usually within 100 events


EXCLUSIVE_AFTER = 2  # lost attempts after which a batch takes the writers' exclusive turn (stores.postgres)


def conflict() -> Outcome:
    return Outcome(error=LedgerError("conflict", "other writers kept changing the same accounts, or the store "
                                                 "kept refusing the transaction; nothing was applied: retry"))


ACCOUNT_FIELDS = ("account", "from_account", "to_account", "parent")


def parsed(obj: Any) -> Command | LedgerError:
    """A decoded input as a typed command, or the rejection it earns (an input that failed to
    decode arrives as its ``LedgerError`` already, see ``ledger.service.jsonlines``)."""
    if isinstance(obj, LedgerError):
        return obj
    try:
        return parse_command(obj)
    except LedgerError as error:
        return error


def carried_id(obj: Any) -> str | None:
    """The ``command_id`` a decoded input carried, echoed in its result (§12) whether it was
    accepted or not: any string, even one that is not a valid id; None for anything else."""
    command_id = obj.get("command_id") if isinstance(obj, dict) else None
    return command_id if isinstance(command_id, str) else None


def referenced(commands: list[Command | LedgerError]) -> list[str]:
    """The aggregates a batch of commands names (accounts, command records): loading them
    together is one round trip.  Only valid commands count: their ids are well formed."""
    keys: dict[str, None] = {}
    for cmd in commands:
        if isinstance(cmd, Command):
            for name in ACCOUNT_FIELDS:
                value = getattr(cmd, name, None)
                if value:
                    keys[ids.account(value)] = None
            if cmd.command_id is not None:
                keys[ids.command(cmd.command_id)] = None
    return list(keys)


def digest(obj: Mapping[str, Any]) -> str:
    """T2: the content a command_id stands for (everything but the id itself)."""
    return hashlib.sha256(canonical({k: v for k, v in obj.items() if k != "command_id"})).hexdigest()


FLAT = (str, int, bool, type(None))


def canonical(content: Mapping[str, Any]) -> bytes:
    """The bytes a T2 digest is taken of: ``json.dumps`` with sorted keys, no spaces and
    non-ASCII escaped (what every stored digest was made from).  orjson gives the same bytes
    about three times faster (0.9 against 2.9 µs for a deposit) for a flat object of ASCII text, integers, booleans and nulls -- a
    command's usual shape -- so it is used there (its output checked: DEL is the one ASCII
    character ``json`` escapes and orjson does not); anything else goes the ``json`` way."""
    if all(type(v) in FLAT for v in content.values()):
        try:
            fast = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # orjson's JSONEncodeError: an integer past 64 bits, a key not text
            pass
        else:
            if fast.isascii() and b"\x7f" not in fast:
                return fast
    return json.dumps(content, sort_keys=True, separators=(",", ":"), default=str).encode()


def answers(batch: list[tuple[Any, Any]], outcomes: list[Outcome]) -> list[Result]:
    """Each outcome as its command's result, with the command's ``command_id`` (§12)."""
    return [outcome.as_dict(carried_id(obj)) for (obj, _), outcome in zip(batch, outcomes)]


class LedgerRepository(Repository[str]):
    """Loads aggregates with ``replay`` (see ledger.domain.base), one or many at a time."""

    def get(self, aggregate_id: str, **kwargs: Any) -> Any:
        kwargs.setdefault("projector_func", replay)
        return super().get(aggregate_id, **kwargs)

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        """Each id's aggregate, or None where it has no events.  A store from ``stores/``
        reads hundreds of aggregates in one query; any other loads them one by one."""
        select_many = getattr(self.event_store.recorder, "select_many", None)
        if select_many is None or self.snapshot_store is None:
            return {i: self._get_or_none(i) for i in keys}
        stored = select_many(keys)
        to_event = self.event_store.mapper.to_domain_event
        return {i: replay(None, map(to_event, stored[i])) if i in stored else None for i in keys}

    def _get_or_none(self, aggregate_id: str) -> Any:
        try:
            return self.get(aggregate_id)
        except AggregateNotFoundError:
            return None


def without_library_retries(recorder: Any) -> None:
    """One retry policy (``ledger.adapters.retry``), not two nested.  eventsourcing's PostgreSQL
    recorder retries every OperationalError of each insert and read ten times, 0.2 s apart:
    an insert sends the same events again (after a connection lost at commit, that second
    insert of a batch already saved fails as a duplicate version and the batch would be
    recomputed and applied twice; ``transact`` retries instead, after looking whether the
    batch was saved), and a read of a store that is gone waits ten times the pool's timeout.
    The recorder's methods are used undecorated; ``transact`` and ``reading`` retry."""
    for name in dir(type(recorder)):
        method = getattr(type(recorder), name, None)
        wrapped = getattr(method, "__wrapped__", None)
        if wrapped is not None and getattr(method, "__code__", None) is not None \
                and method.__code__.co_name == "retry_decorator":
            setattr(recorder, name, types.MethodType(wrapped, recorder))


class LedgerApp(Application[str]):
    env = {"ORIGINATOR_ID_TYPE": "text"}
    # Snapshot points, taken after the command that crosses one (see snapshot_if_due): an
    # account every 20 events (the workers load every indebted account every 5 minutes; more
    # often cost ingest 6 % per halving), an account set every 1,000 (its snapshot holds every
    # member), pools, run logs and the platform every 100 (a fresh process or an as-of
    # replays at most 100 platform events, however many prices were ever set).
    snapshotting_intervals = {Account: 20, LendingPool: 100, AccountSet: 1000, InterestClock: 100, RunLog: 100,
                              Platform: 100}

    @classmethod
    def open(cls, env: Mapping[str, str], attempts: int = 5) -> "LedgerApp":
        """Construct on a store, creating its tables on first use.  Processes starting
        together on a new PostgreSQL database race to create the same tables and functions
        ("tuple concurrently updated", or a duplicate catalog key); that DDL is idempotent,
        so it is retried briefly."""
        return cls.retry.racing(lambda: cls(env=dict(env)), (InternalError, IntegrityError), attempts)

    retry = RetryPolicy()  # how transient store errors are retried (tests give a quicker one)

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        register_moved_topics()  # stored topics of moved modules resolve before anything is read
        super().__init__(env=env)
        self.cache = AggregateCache(self.repository)
        for recorder in {self.recorder, getattr(self.snapshots, "recorder", self.recorder)}:
            without_library_retries(recorder)

    def turn(self, exclusive: bool) -> ContextManager[None]:
        """The writers' turn for one attempt (``stores.postgres``: a shared advisory lock, the
        exclusive one after EXCLUSIVE_AFTER lost attempts); a store without turns: nothing."""
        turn = getattr(self.recorder, "turn", None)
        return turn(exclusive) if turn is not None else nullcontext()

    def close(self) -> None:
        getattr(self.recorder, "close_turns", lambda: None)()
        super().close()

    def construct_repository(self) -> Repository[str]:
        """eventsourcing's ``Application.construct_repository``, building a ``LedgerRepository``."""
        cache_maxsize = self.env.get(self.AGGREGATE_CACHE_MAXSIZE)
        return LedgerRepository(
            event_store=self.events,
            snapshot_store=self.snapshots,
            cache_maxsize=int(cache_maxsize) if cache_maxsize else None,
            fastforward=strtobool(self.env.get(self.AGGREGATE_CACHE_FASTFORWARD, "y")),
            fastforward_skipping=strtobool(self.env.get(self.AGGREGATE_CACHE_FASTFORWARD_SKIPPING, "n")),
            deepcopy_from_cache=strtobool(self.env.get(self.DEEPCOPY_FROM_AGGREGATE_CACHE, "y")),
        )

    def save(self, *aggregates: Any, snapshots: list[Any] | None = None, **kwargs: Any) -> list[Any]:
        """eventsourcing's ``save`` for this application's own aggregates: their events, and
        the ``snapshots`` (stored form) their unit of work took, in one transaction when the
        store can (``stores/``), else right after.  The library's version checks every
        object against runtime Protocols (a twentieth of an ingest) and reads each
        snapshotted aggregate back from the store."""
        events: list[Any] = []
        for aggregate in aggregates:
            events.extend(aggregate.collect_events())
        together = bool(snapshots) and getattr(self.recorder, "inserts_snapshots", False)
        if together:
            kwargs["snapshots"] = snapshots
        recordings = self.events.put(events, **kwargs)
        if snapshots and not together and self.snapshots is not None:
            self.snapshots.recorder.insert_events(snapshots)
        self._notify(recordings)
        return recordings

    def snapshot_if_due(self, aggregate: Any, new_events: list[Any]) -> Any:
        """The aggregate's snapshot, encoded now (the state at this version, whatever happens
        to the object later), if one of its new events is at a multiple of its type's
        interval.  The aggregate in memory is the state its events give (tests compare
        snapshots with full replays, and ``audit verify`` does)."""
        interval = self.snapshotting_intervals.get(type(aggregate))
        if interval and any(e.originator_version % interval == 0 for e in new_events):
            return self.mapper.to_stored_event(type(aggregate).Snapshot.take(aggregate))
        return None

    # --- commands ----------------------------------------------------------------------------
    def apply(self, objs: list[Any], now: Callable[[], datetime],
              latest: Callable[[], datetime] | None = None) -> list[Result]:
        """Apply decoded commands in order; ``now`` is the clock for commands without `at`.
        ``latest`` gives the latest `at` accepted (T4: the clock plus the allowance), read once
        per batch; by default ``now()`` plus ``FUTURE_ALLOWANCE``.  Each command is validated
        first, once; an invalid one is answered without touching the store.  An item may be a
        ``LedgerError`` (an input line that could not be decoded): its result is that
        rejection."""
        horizon = latest or (lambda: now() + FUTURE_ALLOWANCE)
        results: list[Result] = []
        for start in range(0, len(objs), BATCH_SIZE):
            batch, limit = [(obj, parsed(obj)) for obj in objs[start:start + BATCH_SIZE]], horizon()
            try:
                outcomes = self.transact(batch, lambda uow, item: self._execute(uow, item, now, limit),
                                         referenced([cmd for _, cmd in batch]))
            except StoreUnavailable as error:
                error.done = results + answers(batch, error.done)
                raise
            results.extend(answers(batch, outcomes))
        return results

    def transact(self, items: list[Any], step: Callable[[UnitOfWork, Any], Outcome],
                 preload: list[str] | None = None) -> list[Outcome]:
        """Run ``step`` for every item in one unit of work and save it in one transaction;
        a step runs one command (``uow.command``) and answers its ``Outcome``.

        When the store refuses it for a transient reason (``ledger.adapters.retry``), everything is
        recomputed from fresh state (``retry.attempts`` times, then item by item), so results
        are only returned for what was saved; what still cannot be saved, or what is left when
        the retry budget is spent, answers ``conflict``.  Commands without `at` take the clock
        at each attempt, so a retried command is never older than the writer it lost to (T1).
        ``preload`` names aggregates the items will need, read together up front.  Raises
        ``StoreUnavailable`` when the connection cannot be had again."""
        return self._transact(items, step, preload, self.retry.attempts, self.retry.clock())

    def _transact(self, items: list[Any], step: Callable[[UnitOfWork, Any], Outcome],
                  preload: list[str] | None, attempts: int, started: float) -> list[Outcome]:  # float-ok: a clock reading in seconds
        policy = self.retry
        failures = Failures(policy)
        while failures.lost < attempts:
            try:
                with self.turn(failures.lost >= EXCLUSIVE_AFTER):
                    return self._attempt(items, step, preload)
            except Exception as error:  # noqa: BLE001 - classified; anything else re-raised
                kind = classify(error)
                if kind is None:
                    raise
                if not failures.again(kind):
                    raise StoreUnavailable(f"the store is unreachable: {describe(error)}") from error
                if policy.clock() - started > policy.budget:
                    break
                policy.pause(kind, failures.count(kind) - 1)
        if len(items) > 1:
            results: list[Outcome] = []
            for item in items:
                if policy.clock() - started > policy.budget:
                    results.append(conflict())
                    continue
                try:
                    results.extend(self._transact([item], step, None, policy.single_attempts, started))
                except StoreUnavailable as error:
                    error.done = results + error.done
                    raise
            return results
        return [conflict()]

    def _attempt(self, items: list[Any], step: Callable[[UnitOfWork, Any], Outcome],
                 preload: list[str] | None) -> list[Outcome]:
        """One try: load, run every step, save.  A save that failed is looked up before the
        error goes on: a connection lost at commit may have lost only the answer."""
        uow = UnitOfWork(self.repository, self.cache.load, self.snapshot_if_due)
        uow.preload(preload or [])
        results = [step(uow, item) for item in items]
        uow.finish()
        dirty = uow.dirty()
        if dirty:
            probe = next((a._pending_events[0] for a in dirty if a.pending_count), None)
            try:
                self.save(*dirty, snapshots=uow.snapshots)
            except Exception as error:
                if probe is None or classify(error) is None or not self._saved(probe):
                    raise
        self.cache.keep(uow.loaded.values())
        return results

    def _saved(self, event: Any) -> bool:
        """Whether the store holds exactly this event (the first of a batch: a transaction
        saves all or none).  Another writer's event at the same version differs from it (its
        ``timestamp`` at least)."""
        mine = self.mapper.to_stored_event(event)

        def look() -> bool:
            found = self.recorder.select_events(mine.originator_id, gt=mine.originator_version - 1,
                                                lte=mine.originator_version, limit=1)
            return bool(found) and found[0].topic == mine.topic and bytes(found[0].state) == mine.state

        try:
            return self.retry.run(look, "finding out whether a batch whose commit failed was saved")
        except StoreUnavailable as error:
            error.in_doubt = True
            raise

    def reading(self, work: Callable[[], Any]) -> Any:
        """``work()`` (reads only), retried on transient store errors (``RetryPolicy.run``)."""
        return self.retry.run(work)

    def _execute(self, uow: UnitOfWork, item: tuple[Any, Command | LedgerError], now: Callable[[], datetime],
                 latest: datetime) -> Outcome:
        obj, cmd = item
        if isinstance(cmd, LedgerError):
            return Outcome(error=cmd)
        if cmd.at is not None:  # T4; without `at` a command takes the clock
            try:
                check_not_future(cmd.at, latest)
            except LedgerError as error:
                return Outcome(error=error)
        with uow.command(cmd.at or now()) as u:  # a rejection rolls back exactly this command
            record = u.command_record(cmd.command_id) if cmd.command_id is not None else None
            if record is None:
                execute(u, cmd)
            elif record.digest != digest(obj):
                raise LedgerError("command_id_conflict", f"command_id {cmd.command_id} was used for another command")
        outcome = u.outcome
        if not outcome.ok or cmd.command_id is None:
            return outcome
        if record is not None:  # T2: answered before
            return Outcome(answered=record.result)
        u.add(CommandRecord(command_id=cmd.command_id, digest=digest(obj), result=outcome.public_events, at=u.at))
        return outcome

    # --- queries -----------------------------------------------------------------------------
    def account(self, account: str) -> Account:
        try:
            return self.repository.get(ids.account(account))  # type: ignore[return-value]
        except AggregateNotFoundError:
            raise LedgerError("unknown_account", f"no account {account}") from None

    def platform(self) -> Platform:
        try:
            return self.repository.get(ids.PLATFORM)  # type: ignore[return-value]
        except AggregateNotFoundError:
            return Platform(parameters=default_parameters(), at=datetime.min)

    def find(self, key: str) -> Any:
        try:
            return self.repository.get(key)
        except AggregateNotFoundError:
            return None

    def account_ids(self) -> list[str]:
        """Every account, from the notification log's AccountOpened events."""
        topics = stored_topics(Account.AccountOpened)  # ledger.service.topics: old stores too
        names, start = [], 1
        while True:
            page = self.recorder.select_notifications(start=start, limit=1000, topics=topics)
            names.extend(ids.account_name(n.originator_id) for n in page)
            if len(page) < 1000:
                return sorted(names)
            start = page[-1].id + 1

    def history(self, account: str) -> list[Any]:
        key = ids.account(account)
        self.account(account)
        return list(self.events.get(key))

    # --- point in time -------------------------------------------------------------------------
    def state_at(self, key: str, at: datetime) -> Any:
        """An aggregate as it was at instant ``at``, from its events alone (T1 keeps an
        account's and the platform's events in time order): the latest snapshot taken before
        ``at``, then the events after it up to ``at``, read a page at a time."""
        agg = self._snapshot_before(key, at)
        gt = agg.version if agg is not None else None
        limit = EVENT_PAGE if agg is None else AFTER_SNAPSHOT_PAGE
        while True:
            page = list(self.events.get(key, gt=gt, limit=limit))
            for e in page:
                if type(e).__name__ != "PlatformInitialised" and getattr(e, "at", at) > at:
                    return agg
                agg = e.mutate(agg)
            if len(page) < limit:
                return agg
            gt, limit = page[-1].originator_version, EVENT_PAGE

    def _snapshot_before(self, key: str, at: datetime) -> Any:
        """The latest snapshot whose aggregate had no event after ``at`` (every account and
        platform event sets ``last_at`` to its own ``at``), as an aggregate; None if none.
        T1 keeps ``last_at`` in version order, so the snapshot is found by bisecting the
        versions: a few reads, however many snapshots there are."""
        if self.snapshots is None:
            return None

        def latest_up_to(version: int | None) -> Any:
            return next(iter(self.snapshots.get(key, desc=True, lte=version, limit=1)), None)

        def before(snapshot: Any) -> bool:
            last_at = snapshot.state["last_at"]
            return last_at is None or last_at <= at

        latest = latest_up_to(None)
        if latest is None or "last_at" not in latest.state:
            return None  # none, or an aggregate without a clock: replay from the start
        if before(latest):
            return latest.mutate(None)
        best, low, high = None, 1, latest.originator_version - 1
        while low <= high:
            middle = (low + high) // 2
            snapshot = latest_up_to(middle)
            if snapshot is None:
                low = middle + 1
            elif before(snapshot):
                best, low = snapshot, middle + 1
            else:
                high = snapshot.originator_version - 1
        return best.mutate(None) if best is not None else None

    def platform_at(self, at: datetime | None) -> Platform:
        found = self.state_at(ids.PLATFORM, at) if at else self.find(ids.PLATFORM)
        return found or Platform(parameters=default_parameters(), at=datetime.min)

    def platform_owed(self, currency: str, at: datetime | None = None) -> Any:
        """What all accounts owe of ``currency`` (B2), now or at ``at``."""
        pool = ids.pool(currency)
        if at is None:
            found = self.find(pool)
            return found.outstanding if found else 0
        return sum((pool_change(e, at) for e in self.events.get(pool)), Decimal(0))
