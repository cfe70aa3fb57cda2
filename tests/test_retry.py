"""Transient store errors (issue 12): a retry, then an answer; never a traceback.

Faults are injected into the store's insert, with the very errors eventsourcing raises (its
``OperationalError`` ``from`` the driver's error), on SQLite and PostgreSQL.  The retry
policy's sleep is recorded instead of slept."""
from __future__ import annotations

import json
import sqlite3
from typing import Any, Callable

import psycopg
import psycopg_pool
import pytest
from eventsourcing.persistence import DataError, IntegrityError, InterfaceError, OperationalError, ProgrammingError

from ledger.service.app import LedgerApp
from ledger.adapters.retry import CONFLICT, CONNECTION, RetryPolicy, StoreUnavailable, classify
from tests.helpers import D, Ledger, at
from tests.helpers import ledger_cli as run


def wrapped(outer: type[Exception], inner: BaseException) -> Exception:
    """As eventsourcing raises it: its own class, ``from`` the driver's error."""
    error = outer(str(inner))
    error.__cause__ = inner
    return error


FAULTS: dict[str, Callable[[], Exception]] = {
    "pipeline aborted": lambda: wrapped(OperationalError, psycopg.errors.PipelineAborted("pipeline aborted")),
    "deadlock": lambda: wrapped(OperationalError, psycopg.errors.DeadlockDetected("deadlock detected")),
    "serialisation": lambda: wrapped(OperationalError, psycopg.errors.SerializationFailure("could not serialize")),
    "lock timeout": lambda: wrapped(OperationalError, psycopg.errors.LockNotAvailable("canceling statement due to lock timeout")),
    "statement timeout": lambda: wrapped(OperationalError, psycopg.errors.QueryCanceled("canceling statement due to statement timeout")),
    "sqlite busy": lambda: wrapped(OperationalError, sqlite3.OperationalError("database is locked")),
    "duplicate version": lambda: wrapped(IntegrityError, psycopg.errors.UniqueViolation("duplicate key value")),
}
LOST = lambda: wrapped(OperationalError, psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly"))  # noqa: E731


@pytest.mark.parametrize("error, kind", [
    *[(make(), CONFLICT) for make in FAULTS.values()],
    (LOST(), CONNECTION),
    (wrapped(OperationalError, psycopg.errors.AdminShutdown("terminating connection due to administrator command")), CONNECTION),
    (wrapped(OperationalError, psycopg_pool.PoolTimeout("couldn't get a connection after 5.00 sec")), CONNECTION),
    (wrapped(InterfaceError, psycopg.InterfaceError("the connection is closed")), CONNECTION),
    (wrapped(OperationalError, psycopg.errors.ConnectionFailure("connection failure")), CONNECTION),
    (psycopg.errors.LockNotAvailable("raw, as the view database raises it"), CONFLICT),
    (sqlite3.OperationalError("database is locked"), CONFLICT),
    (wrapped(DataError, psycopg.errors.CharacterNotInRepertoire("invalid byte sequence")), None),
    (wrapped(ProgrammingError, psycopg.errors.UndefinedTable("relation does not exist")), None),
    (wrapped(OperationalError, sqlite3.OperationalError("no such table: x")), None),
    (ValueError("a bug"), None),
])
def test_classification(error: BaseException, kind: str | None) -> None:
    assert classify(error) == kind


class Faults:
    """Wraps the recorder's insert: ``plan`` says, call by call, what happens: "ok" inserts;
    an error name raises it instead; "commit+<name>" inserts and then raises (the answer of a
    commit lost)."""

    def __init__(self, app: LedgerApp, plan: Callable[[int], str]) -> None:
        self.calls = 0
        self.plan = plan
        self.insert = app.recorder.insert_events
        app.recorder.insert_events = self  # type: ignore[method-assign]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        step = self.plan(self.calls)
        if step == "ok":
            return self.insert(*args, **kwargs)
        if step.startswith("commit+"):
            self.insert(*args, **kwargs)
            step = step.removeprefix("commit+")
        raise (LOST() if step == "lost" else FAULTS[step]())


@pytest.fixture
def quick(ledger: Ledger) -> list[float]:
    """The ledger's retry policy without real sleeping; the delays asked for."""
    slept: list[float] = []
    ledger.app.retry = RetryPolicy(sleep=slept.append, random=lambda: 0.5)
    return slept


def deposits(n: int, account: str = "a", timed: bool = True) -> list[dict[str, Any]]:
    return [{"type": "deposit", "account": account, "currency": "USDT", "amount": "1", **({"at": at(1 + i)} if timed else {})}
            for i in range(n)]


@pytest.mark.parametrize("fault", [*FAULTS, "lost"])
def test_a_transient_fault_is_retried_and_nothing_is_doubled(ledger: Ledger, quick: list[float], fault: str) -> None:
    ledger.open("a")
    faults = Faults(ledger.app, lambda n: fault if n <= 2 else "ok")
    results = ledger.app.apply(deposits(5), ledger.now, ledger.latest)
    assert [r["ok"] for r in results] == [True] * 5
    assert faults.calls == 3 and len(quick) == 2
    assert ledger.cash("a", "USDT") == 5 and len(ledger.reopen().events("a", "Deposited")) == 5


@pytest.mark.parametrize("fault", ["lost", "duplicate version", "pipeline aborted"])
def test_a_commit_whose_answer_was_lost_is_not_applied_twice(ledger: Ledger, quick: list[float], fault: str) -> None:
    """The batch was saved, then the error came (a connection lost at COMMIT, or a library
    retry that inserted the same events again): it is looked up and answered, not redone."""
    ledger.open("a")
    faults = Faults(ledger.app, lambda n: f"commit+{fault}" if n == 1 else "ok")
    results = ledger.app.apply(deposits(3), ledger.now, ledger.latest)
    assert [r["ok"] for r in results] == [True] * 3 and faults.calls == 1
    assert len(ledger.reopen().events("a", "Deposited")) == 3


def test_a_store_that_always_refuses_answers_conflict_after_bounded_tries(ledger: Ledger, quick: list[float]) -> None:
    ledger.open("a")
    before = ledger.app.recorder.max_notification_id()
    faults = Faults(ledger.app, lambda n: "pipeline aborted")
    results = ledger.app.apply(deposits(4), ledger.now, ledger.latest)
    assert [r["error"]["code"] for r in results] == ["conflict"] * 4
    policy = ledger.app.retry
    assert faults.calls == policy.attempts + 4 * policy.single_attempts
    assert max(quick) <= policy.cap and ledger.app.recorder.max_notification_id() == before


def test_the_retry_budget_bounds_a_batch(ledger: Ledger, quick: list[float]) -> None:
    """Each failed save costs 10 s on this clock; with a 25 s budget what is left answers
    conflict at once."""
    ledger.open("a")
    now = [0.0]
    ledger.app.retry.clock = lambda: now[0]
    ledger.app.retry.budget = 25

    def plan(n: int) -> str:
        now[0] += 10
        return "lock timeout"

    faults = Faults(ledger.app, plan)
    results = ledger.app.apply(deposits(5), ledger.now, ledger.latest)
    assert [r["error"]["code"] for r in results] == ["conflict"] * 5
    assert faults.calls == 3


def test_an_error_that_is_not_transient_is_not_retried(ledger: Ledger, quick: list[float]) -> None:
    ledger.open("a")
    faults = Faults(ledger.app, lambda n: "bug")
    FAULTS["bug"] = lambda: wrapped(DataError, psycopg.errors.CharacterNotInRepertoire("invalid byte sequence"))
    try:
        with pytest.raises(DataError):
            ledger.app.apply(deposits(1), ledger.now, ledger.latest)
    finally:
        del FAULTS["bug"]
    assert faults.calls == 1 and quick == []


def test_a_lost_store_raises_store_unavailable_with_what_was_saved(ledger: Ledger, quick: list[float],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import ledger.service.app as app_module

    ledger.open("a")
    monkeypatch.setattr(app_module, "BATCH_SIZE", 2)
    faults = Faults(ledger.app, lambda n: "ok" if n == 1 else "lost")
    with pytest.raises(StoreUnavailable) as caught:
        ledger.app.apply(deposits(5), ledger.now, ledger.latest)
    assert [r["ok"] for r in caught.value.done] == [True, True] and not caught.value.in_doubt
    assert "unreachable" in str(caught.value) and "server closed the connection" in str(caught.value)
    assert faults.calls == 1 + 1 + ledger.app.retry.reconnects
    assert ledger.cash("a", "USDT") == 2


def test_a_commit_that_cannot_be_looked_up_is_in_doubt(ledger: Ledger, quick: list[float]) -> None:
    ledger.open("a")
    Faults(ledger.app, lambda n: "commit+lost")
    recorder = ledger.app.recorder  # the app binds its recorder's methods (without_library_retries)
    original = recorder.select_events

    def unreachable(*_: Any, **__: Any) -> Any:
        raise LOST()

    recorder.select_events = unreachable  # type: ignore[method-assign]
    try:
        with pytest.raises(StoreUnavailable) as caught:
            ledger.app.apply(deposits(1), ledger.now, ledger.latest)
    finally:
        recorder.select_events = original  # type: ignore[method-assign]
    assert caught.value.in_doubt


def test_interest_runs_retry_and_charge_once(ledger: Ledger, quick: list[float]) -> None:
    from tests.test_interest import borrow, charges, hour, setup
    from workers.interest import run_interest

    setup(ledger, cash="10")
    borrow(ledger, "1000", 30)
    Faults(ledger.app, lambda n: "deadlock" if n <= 3 else "ok")
    run = run_interest(ledger.app, hour(1))
    assert len(run.charges) == 1 and run.skipped == []
    assert len(charges(ledger.reopen())) == 1


def test_an_interest_batch_the_store_keeps_refusing_is_skipped_by_account(ledger: Ledger, quick: list[float]) -> None:
    from tests.test_interest import borrow, hour, setup
    from workers.interest import run_interest

    setup(ledger, cash="10")
    borrow(ledger, "1000", 30)
    Faults(ledger.app, lambda n: "statement timeout")
    run = run_interest(ledger.app, hour(1))
    assert run.charges == [] and [(s["account"], s["code"]) for s in run.skipped] == [("alice", "conflict")]


def test_the_projection_runner_retries_a_locked_batch(ledger: Ledger, quick: list[float]) -> None:
    from projections import runner
    from projections.sql import ViewDatabase

    ledger.open("a")
    ledger.app.apply(deposits(3), ledger.now, ledger.latest)
    db = ViewDatabase(ledger.env)
    try:
        execute = db.execute
        failed: list[str] = []

        def flaky(statement: str, params: Any = ()) -> int:
            if statement.startswith("UPDATE view_tracking") and len(failed) < 2:
                failed.append(statement)
                raise (psycopg.errors.LockNotAvailable("lock timeout") if db.postgres
                       else sqlite3.OperationalError("database is locked"))
            return execute(statement, params)

        db.execute = flaky  # type: ignore[method-assign]
        assert runner.run(ledger.app, db) == ledger.app.recorder.max_notification_id()
        assert len(failed) == 2
        [(cash,)] = db.rows("SELECT cash FROM view_balances WHERE account = 'a'")
        assert D(cash) == 3
    finally:
        db.close()


# --- the command line ------------------------------------------------------------------------------------
def test_apply_answers_conflict_when_the_store_keeps_refusing(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every line gets `conflict`, exit 1, no traceback."""
    monkeypatch.setattr(LedgerApp, "retry", RetryPolicy(sleep=lambda s: None))
    assert run(db_url, "apply", "-", input=json.dumps({"type": "open_account", "account": "a"}) + "\n").exit_code == 0

    def refuse(self: LedgerApp, *_: Any, **__: Any) -> None:
        raise FAULTS["pipeline aborted"]()

    monkeypatch.setattr(LedgerApp, "save", refuse)
    result = run(db_url, "apply", "-", input="".join(json.dumps(c) + "\n" for c in deposits(3, timed=False)))
    assert result.exit_code == 1 and "Traceback" not in result.stdout + result.stderr
    assert [json.loads(line)["error"]["code"] for line in result.stdout.splitlines()] == ["conflict"] * 3


def test_apply_on_a_lost_store_prints_what_it_has_then_one_line(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import ledger.service.app as app_module

    monkeypatch.setattr(LedgerApp, "retry", RetryPolicy(sleep=lambda s: None))
    monkeypatch.setattr(app_module, "BATCH_SIZE", 2)  # the app's batches and `apply`'s (it reads the same)
    saves = [0]
    save = LedgerApp.save

    def lose_the_store_after_two(self: LedgerApp, *args: Any, **kwargs: Any) -> Any:
        saves[0] += 1
        if saves[0] > 2:
            raise LOST()
        return save(self, *args, **kwargs)

    monkeypatch.setattr(LedgerApp, "save", lose_the_store_after_two)
    lines = [{"type": "open_account", "account": "a"}, *deposits(6, timed=False)]
    result = run(db_url, "apply", "-", input="".join(json.dumps(c) + "\n" for c in lines))
    assert result.exit_code == 2 and "Traceback" not in result.stdout + result.stderr
    assert [json.loads(line)["ok"] for line in result.stdout.splitlines()] == [True] * 4
    [message] = result.stderr.strip().splitlines()
    assert "the store is unreachable" in message and "the commands from input line 5 on have no result" in message
    assert "none of them was applied" in message


@pytest.mark.parametrize("command", [["interest", "run", "--json"], ["repayment", "run", "--json"], ["projections", "run"]])
def test_runs_on_a_lost_store_say_so_in_one_line(db_url: str, monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    """The interest run and the sweep save their summary, the runner its batch: all three
    meet the lost store, and each says so in one line, exit 2."""
    monkeypatch.setattr(LedgerApp, "retry", RetryPolicy(sleep=lambda s: None, reconnects=3))
    assert run(db_url, "apply", "-", input=json.dumps({"type": "open_account", "account": "a"}) + "\n").exit_code == 0

    def lost(*_: Any, **__: Any) -> Any:
        raise LOST()

    monkeypatch.setattr(LedgerApp, "save", lost)
    if command[0] == "projections":
        from projections import runner

        monkeypatch.setattr(runner, "run_batch", lost)
    result = run(db_url, *command)
    assert result.exit_code == 2 and "Traceback" not in result.stdout + result.stderr
    [message] = result.stderr.strip().splitlines()
    assert "the store is unreachable" in message and "server closed the connection" in message


def test_a_pool_read_after_a_repayment_its_accounts_missed_is_a_conflict_not_a_crash() -> None:
    """Chaos found it: accounts read at t1, the pool at t2 after another writer's repayment;
    repaying again would take the pool below zero in memory.  That attempt is retried."""
    from datetime import datetime, timezone
    from decimal import Decimal

    from ledger.domain.errors import StaleRead
    from ledger.domain.indexes import LendingPool
    from ledger.adapters.retry import CONFLICT, classify

    pool = LendingPool(currency="USDT")
    pool.change(Decimal("10"), datetime(2026, 3, 1, tzinfo=timezone.utc), 1)
    with pytest.raises(StaleRead) as caught:
        pool.change(Decimal("-11"), datetime(2026, 3, 1, tzinfo=timezone.utc), 1)
    assert classify(caught.value) == CONFLICT
    assert pool.version == 2  # the refused change recorded no event (the attempt's objects are dropped)


def test_racing_work_is_tried_again_with_jitter_then_the_error_goes_on() -> None:
    """``LedgerApp.open``: DDL that races with other processes, retried by the policy (its
    sleep and random), a uniform 50-200 ms times the try's number apart."""
    slept: list[float] = []
    policy = RetryPolicy(sleep=slept.append, random=lambda: 0.5)
    tries: list[int] = []

    def work() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise IntegrityError("tuple concurrently updated")
        return "built"

    assert policy.racing(work, (IntegrityError,), 5) == "built"
    assert slept == [pytest.approx(0.125), pytest.approx(0.25)]
    with pytest.raises(IntegrityError):
        policy.racing(lambda: (_ for _ in ()).throw(IntegrityError("again")), (IntegrityError,), 2)
    assert len(slept) == 3
