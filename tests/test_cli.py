"""The `ledger` command line (§13, §14): apply, account show/list, history, demo, store URLs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from entrypoints.cli import cli
from tests import pg
from tests.helpers import ledger_cli as run

runner = CliRunner()

GOOD_AND_BAD = [
    {"type": "open_account", "account": "alice", "at": "2026-01-01T00:00:00Z"},
    {"type": "deposit", "account": "alice", "currency": "USDT", "amount": "100", "at": "2026-01-01T00:01:00Z"},
    {"type": "deposit", "account": "alice", "currency": "USDT", "amount": "-5"},
    "this line is not JSON",
    {"type": "withdraw", "account": "alice", "currency": "USDT", "amount": "1000", "at": "2026-01-01T00:02:00Z"},
    {"type": "deposit", "account": "nobody", "currency": "USDT", "amount": "1"},
    {"type": "withdraw", "account": "alice", "currency": "USDT", "amount": "40", "at": "2026-01-01T00:03:00Z"},
]


def write_lines(path: Path, items: list) -> Path:
    path.write_text("".join((i if isinstance(i, str) else json.dumps(i)) + "\n" for i in items))
    return path


def test_apply_answers_every_line_and_bad_lines_leave_nothing(db_url: str, tmp_path: Path) -> None:
    """§12/§13: one result per line in order, exit 1 when any is rejected; T3."""
    result = run(db_url, "apply", str(write_lines(tmp_path / "mixed.jsonl", GOOD_AND_BAD)))
    assert result.exit_code == 1
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [a["ok"] for a in answers] == [True, True, False, False, False, False, True]
    assert [a["error"]["code"] for a in answers if not a["ok"]] == [
        "validation_error", "validation_error", "insufficient_balance", "unknown_account"]
    shown = json.loads(run(db_url, "account", "show", "alice", "--json").stdout)
    assert shown["wallets"] == {"spot": {"USDT": "60"}, "futures": {}}
    events = json.loads(run(db_url, "history", "alice", "--json").stdout)
    assert [e["type"] for e in events] == ["AccountOpened", "Deposited", "Withdrawn"]
    assert [e["seq"] for e in events] == [1, 2, 3]
    assert run(db_url, "account", "show", "nobody", "--json").exit_code == 1


def test_apply_exit_codes(tmp_path: Path) -> None:
    """§13: exit 0 when all are accepted, 2 when the input cannot be read."""
    db = f"sqlite:///{tmp_path / 'x.db'}"
    good = write_lines(tmp_path / "good.jsonl", GOOD_AND_BAD[:2])
    assert run(db, "apply", str(good)).exit_code == 0
    assert run(db, "apply", "-", input=json.dumps(GOOD_AND_BAD[1] | {"at": "2026-01-01T00:05:00Z"}) + "\n").exit_code == 0
    missing = run(db, "apply", str(tmp_path / "missing.jsonl"))
    assert missing.exit_code == 2 and "cannot read" in missing.stderr


def test_history_filters(tmp_path: Path) -> None:
    """§13: --since, --until, --type."""
    db = f"sqlite:///{tmp_path / 'h.db'}"
    run(db, "apply", str(write_lines(tmp_path / "in.jsonl", GOOD_AND_BAD)))
    only = json.loads(run(db, "history", "alice", "--type", "Withdrawn", "--json").stdout)
    assert [e["amount"] for e in only] == ["40"]
    window = json.loads(run(db, "history", "alice", "--since", "2026-01-01T00:01:00Z", "--until", "2026-01-01T00:02:59Z", "--json").stdout)
    assert [e["type"] for e in window] == ["Deposited"]
    assert "Withdrawn" in run(db, "history", "alice").stdout  # people's table
    assert run(db, "history", "alice", "--since", "yesterday").exit_code == 2


def test_account_show_as_of_and_list(tmp_path: Path) -> None:
    """§13: --as-of gives the state at that instant; list shows every account."""
    db = f"sqlite:///{tmp_path / 's.db'}"
    run(db, "apply", str(write_lines(tmp_path / "in.jsonl", GOOD_AND_BAD)))
    then = json.loads(run(db, "account", "show", "alice", "--as-of", "2026-01-01T00:02:00Z", "--json").stdout)
    assert then["wallets"]["spot"] == {"USDT": "100"}
    assert run(db, "account", "show", "alice", "--as-of", "2025-12-31T00:00:00Z").exit_code == 1
    listed = json.loads(run(db, "account", "list", "--json").stdout)
    assert [(r["account"], r["mode"], r["cash"]) for r in listed] == [("alice", "classic", {"USDT": "60"})]
    assert "alice" in run(db, "account", "show", "alice").stdout


@pytest.mark.parametrize("url, says", [
    ("mysql://localhost/x", "unsupported database URL"),
    ("sqlite://", "bad SQLite URL"),
    ("postgresql://localhost", "bad PostgreSQL URL"),
    ("postgresql://postgres@127.0.0.1:1/nowhere", "cannot open the store"),
])
def test_bad_store_is_one_clear_line(url: str, says: str) -> None:
    """Issue 2 §3: a wrong URL or an unreachable server is one line, not a traceback."""
    result = run(url, "account", "list")
    assert result.exit_code == 2
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_environment_variable_names_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """§13: LEDGER_DATABASE_URL when --db is not given."""
    monkeypatch.setenv("LEDGER_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    result = runner.invoke(cli, ["apply", "-"], input=json.dumps(GOOD_AND_BAD[0]) + "\n")
    assert result.exit_code == 0
    assert (tmp_path / "env.db").exists()


def test_demo_runs_and_shows_the_story(tmp_path: Path) -> None:
    """`ledger demo` tells the story end to end on SQLite."""
    result = runner.invoke(cli, ["demo", "--db", f"sqlite:///{tmp_path / 'demo.db'}"])
    assert result.exit_code == 0, result.stdout
    for expected in ("not_whitelisted", "ModeSwitched", "source=spot", "upl liability",
                     "source=deposit", "api_key_wrong_account", "borrow_limit_exceeded", "outstanding_liabilities",
                     "InterestCharged", "a second run for the same hour charges nothing: 0 charges",
                     "LiquidationStarted", "PositionLiquidated", "BadDebtWrittenOff", "already swept = True"):
        assert expected in result.stdout


@pytest.mark.postgres
def test_four_concurrent_apply_processes_lose_nothing(tmp_path: Path) -> None:
    """Issue 2: four `ledger apply` processes, 50 deposits each into one account → exactly 200."""
    url = pg.new_database()
    opened = run(url, "apply", "-", input=json.dumps({"type": "open_account", "account": "shared", "at": "2026-01-01T00:00:00Z"}) + "\n")
    assert opened.exit_code == 0, opened.stdout
    files = []
    for worker in range(4):
        lines = [{"type": "deposit", "account": "shared", "currency": "USDT", "amount": "1",
                  "command_id": f"w{worker}-{n}"} for n in range(50)]
        files.append(write_lines(tmp_path / f"w{worker}.jsonl", lines))
    procs = [subprocess.Popen([sys.executable, "-m", "entrypoints", "--db", url, "apply", str(f)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for f in files]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (stdout, stderr) in zip(procs, outputs):
        assert proc.returncode == 0, stderr
        assert len(stdout.splitlines()) == 50
    shown = json.loads(run(url, "account", "show", "shared", "--json").stdout)
    assert shown["wallets"]["spot"] == {"USDT": "200"}
    assert len(json.loads(run(url, "history", "shared", "--type", "Deposited", "--json").stdout)) == 200


def test_projections_follow_keeps_views_current_and_stops_on_sigterm(tmp_path: Path) -> None:
    """Issue 6: `ledger projections run --follow` picks up new events and exits 0 on SIGTERM."""
    import signal
    import time

    db = f"sqlite:///{tmp_path / 'follow.db'}"
    run(db, "apply", str(write_lines(tmp_path / "a.jsonl", GOOD_AND_BAD[:2])))
    proc = subprocess.Popen([sys.executable, "-m", "entrypoints", "--db", db, "projections", "run", "--follow", "--every", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        before = json.loads(run(db, "projections", "status", "--json").stdout)[0]["head"]
        run(db, "apply", "-", input=json.dumps(GOOD_AND_BAD[6]) + "\n")  # a withdrawal after the runner started
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            views = json.loads(run(db, "projections", "status", "--json").stdout)
            if all(v["lag"] == 0 for v in views) and views[0]["head"] == before + 1:
                break
            time.sleep(0.1)
        assert all(v["lag"] == 0 and v["position"] == before + 1 for v in views)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
