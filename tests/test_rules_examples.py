"""Docs that cannot drift: every worked example of docs/rules.md runs on a fresh store and must
print what the page shows (tests/rules_examples.py reads and runs them).  A wrong example is
fixed in the page; an example this test cannot run is listed below with the reason."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.rules_examples import Example, Runner, examples

ALL = examples()

# Examples that are not run, and why.  Each names a block of the page; nothing else is skipped.
NOT_RUN = {
    "how-to-apply": "the command line that applies an example file (§1), not an example",
    "interest-four-processes": "counts printed by a script that started four `ledger interest run` processes on "
                               "PostgreSQL at once; the property (each hour charged once, reported by one run) is "
                               "tests/test_interest_processes.py::test_four_concurrent_runs_charge_each_hour_exactly_once",
    "sweep-four-processes": "counts printed by a script that started four `ledger repayment run` processes on "
                            "PostgreSQL at once; the property (each action once, one summary) is "
                            "tests/test_sweep.py::test_two_repayment_run_processes_at_once_act_once",
    "worker": "a long-running process on the real clock, stopped by SIGTERM after 6 s: its log lines carry wall-clock "
              "times and how much was caught up since June; tests/test_interest_processes.py::"
              "test_worker_starts_catches_up_and_stops_cleanly_on_sigterm runs it",
}


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Runner:
    return Runner(tmp_path_factory.mktemp("rules"), ALL)


@pytest.mark.parametrize("example", [e for e in ALL if e.id not in NOT_RUN], ids=lambda e: e.id)
def test_the_example_prints_what_the_page_shows(example: Example, runner: Runner) -> None:
    runner.store(example)


def test_every_example_not_run_is_on_the_page_and_says_why() -> None:
    ids = {e.id for e in ALL}
    assert set(NOT_RUN) <= ids, f"not on the page: {set(NOT_RUN) - ids}"
    assert all(len(reason) > 20 for reason in NOT_RUN.values())
    assert len(ALL) > 70  # the page's examples were all found


def test_the_reader_catches_a_block_without_its_comment(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="without an <!-- example"):
        examples("text\n\n```\n{\"type\":\"open_account\",\"account\":\"a\"}\n→ {}\n```\n")
    [found] = examples('<!-- example a after=b:2 unified=x at=2026-01-01T00:00:00Z\n{"type":"x"}\n-->\n```\n'
                       '{"type":"open_account","account":"a"}\n→ {"ok":true}\n$ ledger account show a --json   # trimmed\n'
                       '{"mode": "classic"}\n# store: pool/USDT\npool/USDT v1 LendingPoolOpened {"currency":"USDT"}\n```\n')
    assert found.after == ("b", 2) and found.options["unified"] == "x" and found.setup == ['{"type":"x"}']
    assert [s.kind for s in found.steps] == ["apply", "command", "dump"]
    assert found.steps[1].expected == ['{"mode": "classic"}'] and found.steps[2].text == "pool/USDT"


def test_a_wrong_result_on_the_page_fails(tmp_path: Path) -> None:
    page = ('<!-- example wrong -->\n```\n{"type":"open_account","account":"a"}\n'
            '→ {"ok":true,"events":[{"type":"AccountOpened","account":"a","parent":null,"vip_level":1}]}\n```\n')
    with pytest.raises(AssertionError, match="result 1 differs"):
        Runner(tmp_path, examples(page)).store(examples(page)[0])
