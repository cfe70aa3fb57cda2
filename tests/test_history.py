"""`ledger history` in pages and streams (issue 15): `ledger.service.history.page` and
`events` read version ranges of bounded size, bisect `--since/--until` on `at` (T1), match
`--type` on the stored topic; pages add up to the whole history, cursors continue, a bad
cursor is `validation_error`.  The reference is the filter the command used before: every
event read and `Only.admits` applied in Python."""
from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest

from ledger.domain.errors import LedgerError
from ledger.service import history
from ledger.service.history import MAX_PAGE, Only, account_history, page
from tests.helpers import T0, Ledger, at, ledger_cli

# minutes after T0 of each command: several at one instant, so that a bound falls on a tie
MINUTES = [1, 2, 2, 2, 3, 5, 5, 8, 9, 9, 9, 9, 12, 13, 13, 20, 21, 21, 30, 31]


def busy(ledger: Ledger, account: str = "kim") -> None:
    ledger.ok({"type": "open_account", "account": account, "at": at(0)})
    for number, minute in enumerate(MINUTES):
        if number % 3 == 2:
            ledger.ok({"type": "withdraw", "account": account, "currency": "USDT", "amount": "1", "at": at(minute)})
        else:
            ledger.ok({"type": "deposit", "account": account, "currency": "USDT", "amount": "10", "at": at(minute)})


def reference(ledger: Ledger, account: str, only: Only) -> list[int]:
    return [e.originator_version for e in ledger.app.history(account) if only.admits(e)]


def minute(m: float) -> Any:
    return T0 + timedelta(minutes=m)


FILTERS = [Only(), Only(kind="Withdrawn"), Only(kind="AccountOpened"), Only(kind="NoSuchEvent"),
           Only(since=minute(9)), Only(until=minute(9)), Only(since=minute(2), until=minute(13)),
           Only(since=minute(5), until=minute(5)), Only(since=minute(9), until=minute(21), kind="Deposited"),
           Only(since=minute(4), until=minute(4)), Only(since=minute(99)), Only(until=minute(-1)),
           Only(since=minute(30), until=minute(2))]


def all_pages(app: Any, account: str, only: Only, limit: int) -> tuple[list[int], int]:
    versions, cursor, pages = [], None, 0
    while True:
        items, cursor = page(app, account, only, limit, cursor)
        pages += 1
        assert len(items) <= limit
        versions += [e.originator_version for e in items]
        if cursor is None:
            return versions, pages
        assert items, "a page with a next cursor gave nothing"


@pytest.mark.parametrize("chunk", [3, 500])
def test_pages_add_up_to_the_whole_history_with_each_filter(ledger: Ledger, monkeypatch: pytest.MonkeyPatch,
                                                            chunk: int) -> None:
    busy(ledger)
    monkeypatch.setattr(history, "CHUNK", chunk)  # reads of 3 events: every page spans several
    for only in FILTERS:
        wanted = reference(ledger, "kim", only)
        assert [e.originator_version for e in account_history(ledger.app, "kim", only)] == wanted, only
        for limit in (1, 4, 7, MAX_PAGE):
            versions, pages = all_pages(ledger.app, "kim", only, limit)
            assert versions == wanted, (only, limit)
            assert pages == max(1, -(-len(wanted) // limit)), (only, limit)  # no empty last page


def test_bounds_are_inclusive_on_ties(ledger: Ledger) -> None:
    busy(ledger)
    names = [type(e).__name__ for e in account_history(ledger.app, "kim", Only(since=minute(9), until=minute(9)))]
    assert len(names) == MINUTES.count(9) == 4
    first, _ = page(ledger.app, "kim", Only(since=minute(9)), 1, None)
    assert first[0].at == minute(9) and first[0].originator_version == MINUTES.index(9) + 2


def test_a_cursor_continues_after_its_page(ledger: Ledger) -> None:
    busy(ledger)
    items, cursor = page(ledger.app, "kim", Only(), 5, None)
    assert [e.originator_version for e in items] == [1, 2, 3, 4, 5] and cursor
    more, after = page(ledger.app, "kim", Only(), 5, cursor)
    assert [e.originator_version for e in more] == [6, 7, 8, 9, 10]
    again, _ = page(ledger.app, "kim", Only(), 5, cursor)  # a cursor can be used again
    assert [e.originator_version for e in again] == [6, 7, 8, 9, 10]
    ledger.ok({"type": "deposit", "account": "kim", "currency": "USDT", "amount": "1", "at": at(40)})
    rest, end = page(ledger.app, "kim", Only(), MAX_PAGE, after)  # events added since come too
    assert [e.originator_version for e in rest] == list(range(11, len(MINUTES) + 3)) and end is None


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize("cursor", ["", "garbage!", "not-a-cursor", cursor_of("v1:-3"), cursor_of("v1:"),
                                    cursor_of("v2:5"), cursor_of("5"), "ü", cursor_of("v1:1 ")])
def test_a_bad_cursor_is_a_validation_error(ledger: Ledger, cursor: str) -> None:
    busy(ledger)
    with pytest.raises(LedgerError) as raised:
        page(ledger.app, "kim", Only(), 10, cursor)
    assert raised.value.code == "validation_error" and "cursor" in raised.value.message


@pytest.mark.parametrize("limit", [0, -1, MAX_PAGE + 1, True, 2.5])
def test_a_bad_limit_is_a_validation_error(ledger: Ledger, limit: Any) -> None:
    busy(ledger)
    with pytest.raises(LedgerError) as raised:
        page(ledger.app, "kim", Only(), limit, None)
    assert raised.value.code == "validation_error"


def test_an_unknown_account_is_unknown_account(ledger: Ledger) -> None:
    busy(ledger)
    for call in (lambda: page(ledger.app, "nobody", Only(), 10, None),
                 lambda: history.events(ledger.app, "nobody", Only(kind="Deposited"))):
        with pytest.raises(LedgerError) as raised:
            call()
        assert raised.value.code == "unknown_account"


def test_since_until_read_only_their_range(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--since` near the end reads a bisection's probes and the events in range, not the history."""
    busy(ledger)
    read: list[int] = []
    select = ledger.app.recorder.select_events

    def counting(*args: Any, **kwargs: Any) -> Any:
        found = select(*args, **kwargs)
        read.append(len(found))
        return found
    monkeypatch.setattr(ledger.app.recorder, "select_events", counting)
    got = account_history(ledger.app, "kim", Only(since=minute(30)))
    assert [e.at for e in got] == [minute(30), minute(31)]
    assert sum(read) <= 2 + 6, read  # the last version, about log2(21) probes, then the 2 events


# --- the command line ------------------------------------------------------------------------------
def test_cli_json_stays_an_array_and_pages_follow_cursors(db_url: str) -> None:
    from ledger.adapters.store import persistence_env

    led = Ledger(persistence_env(db_url))
    busy(led)
    led.close()
    whole = json.loads(ledger_cli(db_url, "history", "kim", "--json").stdout)
    assert [e["seq"] for e in whole] == list(range(1, len(MINUTES) + 2))
    assert whole[1] == {"type": "Deposited", "at": "2026-03-01T00:01:00Z", "seq": 2, "wallet": "spot",
                        "currency": "USDT", "amount": "10"} | {k: v for k, v in whole[1].items()
                                                                if k not in ("type", "at", "seq", "wallet", "currency", "amount")}
    items, cursor, pages = [], None, 0
    while True:
        result = ledger_cli(db_url, "history", "kim", "--limit", "6", "--json", *(["--cursor", cursor] if cursor else []))
        assert result.exit_code == 0, result.output
        shown = json.loads(result.stdout)
        assert set(shown) == {"items", "next_cursor"}
        items += shown["items"]
        pages += 1
        cursor = shown["next_cursor"]
        if cursor is None:
            break
    assert items == whole and pages == 4
    withdrawn = json.loads(ledger_cli(db_url, "history", "kim", "--type", "Withdrawn", "--since", at(9), "--json").stdout)
    assert withdrawn == [e for e in whole if e["type"] == "Withdrawn" and e["at"] >= at(9).replace(".000", "")]
    people = ledger_cli(db_url, "history", "kim", "--limit", "2").stdout
    assert "Deposited" in people and "next cursor: " in people
    last = ledger_cli(db_url, "history", "kim", "--limit", "100").stdout
    assert "no more events" in last and last.count("Deposited") + last.count("Withdrawn") == len(MINUTES)
    bad = ledger_cli(db_url, "history", "kim", "--cursor", "nonsense", "--json")
    assert bad.exit_code == 2 and "not a history cursor" in bad.stderr and not bad.stdout
    assert ledger_cli(db_url, "history", "kim", "--limit", "0").exit_code == 2
    unknown = ledger_cli(db_url, "history", "nobody", "--json")
    assert unknown.exit_code == 1 and not unknown.stdout



@pytest.mark.postgres
def test_a_busy_account_s_page_is_read_in_index_order_on_postgres() -> None:
    """A page of 11 events of an account with 30,000 is an index scan whatever the
    statistics say: on a table not yet analysed the planner guessed a few events per
    aggregate and read all of a busy account's events (a bitmap scan), then sorted them, for
    every page (49x at 100,000 events in the bench).  The store's connections rule bitmap
    scans out (stores.limits.connection_kwargs)."""
    from tests import pg

    book = Ledger(pg.env(pg.new_schema()))
    try:
        book.ok({"type": "open_account", "account": "kim", "at": at(0)})
        book.app.apply([{"type": "deposit", "account": "kim", "currency": "USDT", "amount": "1", "at": at(1)}] * 30000,
                       lambda: minute(1))
        recorder = book.app.recorder
        table = f"{recorder.datastore.schema}.{recorder.events_table_name}"
        with recorder.datastore.get_connection() as conn:
            plan = "\n".join(row["QUERY PLAN"] for row in conn.execute(  # the pool gives dict rows
                f"EXPLAIN SELECT * FROM {table} WHERE originator_id = 'account/kim' AND originator_version > 0 "
                "AND originator_version <= 30001 ORDER BY originator_version LIMIT 11").fetchall())
        assert "Bitmap" not in plan and "Index Scan" in plan, plan
        assert [e.originator_version for e in page(book.app, "kim", Only(), 10, None)[0]] == list(range(1, 11))
    finally:
        book.close()
