"""Issue 15: interest charges, sweep actions and the views at every rule instant, on generated
histories, equal what the ledger decided when each tick booked every holder's UPL-generated
liability (commit e192839, recorded in tests/fixtures/upl-golden.json by
tests/fixtures/upl_histories.py, which says what is recorded and why)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.upl_histories import GOLDEN, history, record, sqlite_env

RECORDED = {h["seed"]: h for h in json.loads(GOLDEN.read_text())["histories"]}
BOTH_STORES = 4  # the first histories on SQLite and PostgreSQL, the others on SQLite


def test_the_fixture_holds_every_kind_of_decision() -> None:
    """The histories exercise what they are meant to: charges with an interest-free part,
    capitalised interest, liquidations and alerts, rejected commands."""
    charges = [c for h in RECORDED.values() for run in h["interest"] for c in run]
    actions = {a["kind"] for h in RECORDED.values() for run in h["sweep"] for a in run["actions"]}
    answers = {a for h in RECORDED.values() for batch in h["answers"] for a in batch}
    assert len(RECORDED) == 20 and len(charges) > 100
    assert any(c["interest_free"] != "0" for c in charges) and any(c["capitalized"] != "0" for c in charges)
    assert {"liquidation", "alert"} <= actions
    assert True in answers and "insufficient_margin" in answers


def check(seed: int, env: dict[str, str]) -> None:
    expected = RECORDED[seed]
    got = json.loads(json.dumps({"seed": seed, **record(env, history(seed))}))
    for part in ("answers", "interest", "sweep", "views"):
        for n, (now, then) in enumerate(zip(got[part], expected[part])):
            assert now == then, f"history {seed}: {part} #{n} differs"
        assert len(got[part]) == len(expected[part]), f"history {seed}: {part}"


@pytest.mark.parametrize("seed", sorted(RECORDED)[:BOTH_STORES])
def test_rules_decide_as_recorded(seed: int, store_env: dict[str, str]) -> None:
    check(seed, store_env)


@pytest.mark.parametrize("seed", sorted(RECORDED)[BOTH_STORES:])
def test_rules_decide_as_recorded_on_sqlite(seed: int, tmp_path: Path) -> None:
    check(seed, sqlite_env(str(tmp_path)))
