"""The unit of work owns one command: ``with uow.command(at) as u: ...`` keeps it on a normal
exit, rolls it back exactly on a ``LedgerError`` (T3) and reports it in ``u.outcome``; any
other exception goes on."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any, Iterator

import pytest

from ledger.domain.commands import parse_command
from ledger.domain.errors import LedgerError
from ledger.service.app import LedgerApp, LedgerRepository
from ledger.service.handlers import execute
from ledger.service.unit_of_work import Outcome, UnitOfWork
from tests.helpers import T0, Ledger

AT = T0 + timedelta(hours=1)


@pytest.fixture
def saved(tmp_path) -> Iterator[Ledger]:  # type: ignore[no-untyped-def]
    """A store with alice, who holds 10 USDT."""
    book = Ledger({"PERSISTENCE_MODULE": "stores.sqlite", "SQLITE_DBNAME": str(tmp_path / "uow.db")})
    book.ok({"type": "open_account", "account": "alice"})
    book.ok({"type": "deposit", "account": "alice", "currency": "USDT", "amount": "10"})
    yield book
    book.close()


def unit(book: Ledger) -> UnitOfWork:
    return UnitOfWork(book.app.repository)


def run(u: UnitOfWork, obj: dict[str, Any]) -> None:
    execute(u, parse_command(obj))


def test_a_kept_command_returns_its_events_at_its_instant(saved: Ledger) -> None:
    uow = unit(saved)
    with uow.command(AT) as u:
        assert u is uow and u.at == AT
        run(u, {"type": "deposit", "account": "alice", "currency": "USDT", "amount": "5"})
        run(u, {"type": "open_account", "account": "bob"})
    outcome = u.outcome
    assert isinstance(outcome, Outcome) and outcome.ok and outcome.error is None
    kinds = [(agg.id, type(e).__name__) for agg, e in outcome.events]
    assert ("account/alice", "Deposited") in kinds and ("account/bob", "AccountOpened") in kinds
    assert {e.at for agg, e in outcome.events if agg.id.startswith("account/")} == {AT}
    assert [e["type"] for e in outcome.public_events] == ["Deposited", "AccountOpened"]
    assert outcome.as_dict() == {"ok": True, "events": outcome.public_events}
    assert u.account("alice").cash("USDT") == Decimal(15)


def test_a_ledger_error_rolls_back_exactly_and_is_reported(saved: Ledger) -> None:
    uow = unit(saved)
    with uow.command(AT) as u:
        run(u, {"type": "deposit", "account": "alice", "currency": "USDT", "amount": "5"})
    kept = list(u.account("alice")._pending_events)
    refusal = LedgerError("insufficient_balance", "no")
    with uow.command(AT + timedelta(seconds=1)) as u:
        run(u, {"type": "deposit", "account": "alice", "currency": "USDT", "amount": "7"})
        run(u, {"type": "open_account", "account": "bob"})
        raise refusal
    outcome = u.outcome
    assert outcome is not None and not outcome.ok and outcome.error is refusal and outcome.events == ()
    assert outcome.as_dict() == {"ok": False, "error": {"code": "insufficient_balance", "message": "no"}}
    alice = u.account("alice")
    assert alice._pending_events == kept and alice.cash("USDT") == Decimal(15)  # as before the command
    assert u.find_account("bob") is None  # created by the command: gone
    assert [a.id for a in uow.dirty()] == ["account/alice"]


def test_a_handler_refusal_is_suppressed(saved: Ledger) -> None:
    uow = unit(saved)
    with uow.command(AT) as u:
        run(u, {"type": "withdraw", "account": "alice", "currency": "USDT", "amount": "11"})
    assert u.outcome is not None and u.outcome.error is not None
    assert u.outcome.error.code == "insufficient_balance"
    assert uow.dirty() == []


def test_another_exception_propagates(saved: Ledger) -> None:
    uow = unit(saved)
    with pytest.raises(ZeroDivisionError):
        with uow.command(AT) as u:
            run(u, {"type": "deposit", "account": "alice", "currency": "USDT", "amount": "5"})
            1 / 0  # noqa: B018 - a fault, not a refusal
    assert uow.outcome is None
    with uow.command(AT) as u:  # the command is over: the next one may begin
        pass
    assert u.outcome == Outcome(value=None)


def test_one_command_at_a_time_and_what_it_gives_back(saved: Ledger) -> None:
    uow = unit(saved)
    with uow.command(AT) as u:
        with pytest.raises(AssertionError):
            uow.command(AT)
        u.give("charges")
    assert u.outcome is not None and u.outcome.value == "charges"
    with uow.command(AT) as u:
        u.give("lost")
        raise LedgerError("out_of_order", "later events")
    assert u.outcome is not None and u.outcome.value is None


def test_a_repeat_answers_with_its_first_answer() -> None:
    first = [{"type": "Deposited"}]
    assert Outcome(answered=first).as_dict() == {"ok": True, "events": first, "duplicate": True}


def test_the_repository_is_built_through_its_constructor(tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = LedgerApp(env={"PERSISTENCE_MODULE": "stores.sqlite", "SQLITE_DBNAME": str(tmp_path / "r.db"),
                         "AGGREGATE_CACHE_MAXSIZE": "10", "DEEPCOPY_FROM_AGGREGATE_CACHE": "n"})
    try:
        repository = app.repository
        assert isinstance(repository, LedgerRepository)
        assert repository.event_store is app.events and repository.snapshot_store is app.snapshots
        assert repository.cache is not None and not repository.deepcopy_from_cache
    finally:
        app.close()
