"""Stores written before the renovation keep working (issue 14).

tests/fixtures/store-2026-12.sqlite was written by the code of December 2026 through
tests/fixtures/make_fixture.py: its topics (``ledger.domain.account:Account.Deposited``), its event
shapes (lending-pool events without a class version) and its snapshots (an account's, the
pool's) are what a production store holds.  Today's code must open it, answer `account show`
as it did then, pass `audit verify`, and go on writing to it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import ledger_cli

FIXTURES = Path(__file__).resolve().parent / "fixtures"
STORE = FIXTURES / "store-2026-12.sqlite"
EXPECTED = json.loads((FIXTURES / "store-2026-12.expected.json").read_text())


@pytest.fixture
def old_store(tmp_path: Path) -> str:
    """A copy: the committed file is never opened for writing."""
    copy = tmp_path / "old.db"
    shutil.copyfile(STORE, copy)
    return f"sqlite:///{copy}"


def show(url: str, account: str) -> dict:
    result = ledger_cli(url, "account", "show", account, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def verify(url: str) -> dict:
    result = ledger_cli(url, "audit", "verify", "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 0 and report["ok"], report["findings"]
    return report


def test_the_old_store_answers_account_show_as_it_did(old_store: str) -> None:
    listed = json.loads(ledger_cli(old_store, "account", "list", "--json").stdout)
    assert [row["account"] for row in listed] == sorted(EXPECTED["accounts"])
    for account, expected in EXPECTED["accounts"].items():
        assert show(old_store, account) == expected, account


def test_the_old_store_passes_audit_verify(old_store: str) -> None:
    report = verify(old_store)
    assert report["events_checked"] == EXPECTED["audit"]["events_checked"]
    assert report["unsealed"] == 0 and report["views"]["lag"] == 0


def test_the_old_store_takes_new_commands(old_store: str) -> None:
    """New events go on top of old ones and old snapshots (bob's account and the USDT pool
    load from snapshots taken then); the books still balance and every replay agrees."""
    before = show(old_store, "bob")
    lines = [{"type": "borrow", "account": "bob", "currency": "USDT", "amount": "10", "at": "2026-06-01T12:10:00Z"},
             {"type": "deposit", "account": "carol", "currency": "USDT", "amount": "1", "at": "2026-06-01T12:10:00Z"}]
    applied = ledger_cli(old_store, "apply", "-", input="".join(json.dumps(line) + "\n" for line in lines))
    assert applied.exit_code == 0, applied.output
    after = show(old_store, "bob")
    assert after["balances"]["USDT"]["liability"] != before["balances"]["USDT"]["liability"]
    assert ledger_cli(old_store, "audit", "seal").exit_code == 0
    assert ledger_cli(old_store, "projections", "run").exit_code == 0
    verify(old_store)
