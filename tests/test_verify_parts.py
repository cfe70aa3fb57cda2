"""`audit verify`'s aggregate pass in several processes (projections.verify_parts) finds
exactly what one process finds: on a clean store, after tampering with events, after an
edited read model; on both stores, with the log cut into ranges of aggregate ids."""
from __future__ import annotations

from typing import Any

import pytest

from projections import audit, eventlog
from tests.helpers import ledger_cli
from tests.test_audit import build_base, edit_view, opened, tamper, views_db


def both(db_url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The findings of one process, and of the pass in three processes (whatever the size)."""
    with opened(db_url) as app, views_db(db_url) as db:
        alone = audit.verify(app, db, processes=1)
        parted = audit.verify(app, db, processes=3, parallel_from=0)
        assert parted.events_checked == alone.events_checked
    return alone.findings, parted.findings


@pytest.mark.parametrize("how", [None, "byte", "delete_middle", "swap", "view-update", "view-insert"])
def test_parts_find_what_one_process_finds(db_url: str, how: str | None) -> None:
    build_base(db_url)
    assert ledger_cli(db_url, "projections", "run").exit_code == 0
    if how and how.startswith("view-"):
        edit_view(db_url, how.removeprefix("view-"))
    elif how:
        tamper(db_url, how)
    alone, parted = both(db_url)
    assert parted == alone
    assert bool(alone) == (how is not None), alone


def test_the_cuts_part_the_log_without_splitting_an_aggregate(db_url: str) -> None:
    build_base(db_url)
    with opened(db_url) as app, views_db(db_url) as db:
        whole = list(eventlog.by_aggregate(app, db))
        cuts = eventlog.split_aggregates(app, db, 3)
        assert 1 <= len(cuts) <= 2
        ranges = list(zip([None, *cuts], [*cuts, None]))
        parts = [list(eventlog.by_aggregate(app, db, lo, hi)) for lo, hi in ranges]
    assert [e for p in parts for e in p] == whole
    assert all(p for p in parts)
    firsts = [p[0][0] for p in parts[1:]]
    assert firsts == cuts  # each part starts with its cut's aggregate, whole
    for before, after in zip(parts, parts[1:]):
        assert before[-1][0] != after[0][0]


def test_verify_runs_in_processes_from_the_command_line(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    build_base(db_url)
    monkeypatch.setenv("LEDGER_VERIFY_PROCESSES", "2")
    monkeypatch.setenv("LEDGER_VERIFY_PARALLEL_FROM", "0")
    calls: list[int] = []
    from projections import verify_parts

    real = verify_parts.check_aggregates
    monkeypatch.setattr(verify_parts, "check_aggregates", lambda *args: calls.append(args[-1]) or real(*args))
    result = ledger_cli(db_url, "audit", "verify", "--json")
    assert result.exit_code == 0, result.output
    assert calls == [2]


