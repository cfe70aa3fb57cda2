"""The thin command line (issue 14): the commands translate, the service filters history,
rendering has its own modules, and no import runs in a circle between the entry points."""
from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path

import pytest

from ledger.domain.errors import LedgerError
from ledger.domain.times import parse_instant
from ledger.service.history import Only, account_history
from tests.helpers import T0, Ledger, at

ENTRYPOINTS = Path(__file__).resolve().parent.parent / "entrypoints"


def test_history_filters_by_name_and_instant(ledger: Ledger) -> None:
    ledger.ok({"type": "open_account", "account": "kim", "at": at(0)})
    ledger.ok({"type": "deposit", "account": "kim", "currency": "USDT", "amount": "10", "at": at(1)})
    ledger.ok({"type": "withdraw", "account": "kim", "currency": "USDT", "amount": "4", "at": at(2)})
    names = lambda only: [type(e).__name__ for e in account_history(ledger.app, "kim", only)]  # noqa: E731
    assert names(Only()) == ["AccountOpened", "Deposited", "Withdrawn"]
    assert names(Only(kind="Deposited")) == ["Deposited"]
    minute = T0 + timedelta(minutes=1)
    assert names(Only(since=minute)) == ["Deposited", "Withdrawn"]
    assert names(Only(until=minute)) == ["AccountOpened", "Deposited"]  # both ends inclusive
    assert names(Only(since=minute, until=minute, kind="Withdrawn")) == []
    with pytest.raises(LedgerError) as raised:
        account_history(ledger.app, "nobody")
    assert raised.value.code == "unknown_account"


def test_parse_instant_is_the_commands_timestamp() -> None:
    assert parse_instant("2026-01-01T01:00:00+01:00") == parse_instant("2026-01-01t00:00:00z")
    for bad in ("2026-01-01", "2026-01-01T00:00:00", 20260101, None):
        with pytest.raises(ValueError):
            parse_instant(bad)


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def test_only_the_root_imports_the_command_groups() -> None:
    """entrypoints.cli imports the groups; nothing imports entrypoints.cli back (the demo
    draws accounts with entrypoints.people, as `account show` does)."""
    for path in ENTRYPOINTS.glob("*.py"):
        if path.name not in ("cli.py", "__main__.py"):
            assert "entrypoints.cli" not in imports(path), f"{path.name} imports entrypoints.cli"


def test_the_root_command_module_stays_small() -> None:
    assert len((ENTRYPOINTS / "cli.py").read_text(encoding="utf-8").splitlines()) < 200
