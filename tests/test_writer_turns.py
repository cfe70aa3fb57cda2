"""Writers' turns on PostgreSQL (stores.postgres): every attempt holds the writers' advisory
lock shared; a batch that lost EXCLUSIVE_AFTER times takes it exclusively, so no other
writer's attempt runs until it has committed, and it cannot lose again."""
from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any, Iterator

import pytest
from eventsourcing.persistence import IntegrityError

from ledger.adapters.store import persistence_env
from ledger.service import app as app_module
from ledger.service.app import LedgerApp
from tests import pg

pytestmark = pytest.mark.postgres
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def two() -> Iterator[tuple[LedgerApp, LedgerApp]]:
    url = pg.new_database()
    first, second = LedgerApp.open(persistence_env(url)), LedgerApp.open(persistence_env(url))
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def test_an_exclusive_turn_holds_every_other_writer_until_it_ends(two: tuple[LedgerApp, LedgerApp]) -> None:
    first, second = two
    done = threading.Event()
    results: list[Any] = []

    def write() -> None:
        results.extend(second.apply([{"type": "open_account", "account": "b"}], lambda: NOW))
        done.set()

    with first.turn(exclusive=True):
        writer = threading.Thread(target=write)
        writer.start()
        assert not done.wait(1.0), "another writer committed during an exclusive turn"
    assert done.wait(30)
    writer.join()
    assert results[0]["ok"]


def test_a_batch_that_lost_twice_takes_the_exclusive_turn(two: tuple[LedgerApp, LedgerApp],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    first, _ = two
    first.retry = app_module.RetryPolicy(sleep=lambda seconds: None)
    turns: list[bool] = []
    real_turn, real_attempt = first.turn, first._attempt

    def turn(exclusive: bool) -> Any:
        turns.append(exclusive)
        return real_turn(exclusive)

    def attempt(*args: Any) -> Any:
        if len(turns) <= app_module.EXCLUSIVE_AFTER:  # lose as to another writer, until then
            raise IntegrityError("duplicate key value violates unique constraint")
        return real_attempt(*args)

    monkeypatch.setattr(first, "turn", turn)
    monkeypatch.setattr(first, "_attempt", attempt)
    assert first.apply([{"type": "open_account", "account": "a"}], lambda: NOW)[0]["ok"]
    assert turns == [False] * app_module.EXCLUSIVE_AFTER + [True]


def test_a_lost_turns_connection_is_opened_again(two: tuple[LedgerApp, LedgerApp]) -> None:
    first, _ = two
    with first.turn(exclusive=False):
        pass
    turns = first.recorder._turns
    assert turns is not None
    with pg._connect("postgres") as conn:  # the server ends that session
        conn.execute("SELECT pg_terminate_backend(%s)", [turns.info.backend_pid])
    assert first.apply([{"type": "open_account", "account": "a"}], lambda: NOW)[0]["ok"]
    assert first.recorder._turns is not turns
