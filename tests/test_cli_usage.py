"""The command line fits its users' habits (issue 17): --version, shell completion, --db after
the command, --json where output was only for people, tables that never cut a number or an
id (at 80 columns and piped), a demo readable at 80 columns, and a light start-up."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from entrypoints.cli import cli, hoist_db
from tests.helpers import ledger_cli

runner = CliRunner()
LEDGER = Path(sys.executable).parent / "ledger"  # the installed console script
LONG_ID = "alice-bot-with-a-rather-long-account-name"
BIG = "11013.12345678"


def invoke(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(cli, list(args), env=env)


# --- --version, completion, start-up ---------------------------------------------------------------
def test_version_is_the_installed_one() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"ledger {version('uta-ledger')}"


@pytest.mark.parametrize("args", [["--version"], ["--help"]])
def test_version_and_help_load_no_domain_store_or_rich(args: list[str]) -> None:
    """Start-up time: nothing heavy is imported before a command runs (bench/ has the timing)."""
    probe = ("import sys, json\nfrom entrypoints.cli import cli\ntry:\n    cli(sys.argv[1:], prog_name='ledger')\n"
             "except SystemExit:\n    pass\nprint(json.dumps(sorted(m for m in sys.modules)), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60)
    loaded = {m.split(".")[0] for m in json.loads(done.stderr.strip().splitlines()[-1])}
    assert not loaded & {"eventsourcing", "psycopg", "psycopg_pool", "pydantic", "rich", "apscheduler", "orjson",
                         "stores", "projections"}
    assert not {m for m in json.loads(done.stderr.strip().splitlines()[-1]) if m in ("ledger.service.app", "ledger.domain.commands")}


@pytest.mark.skipif(not LEDGER.exists(), reason="the ledger console script is not installed")
def test_shell_completion() -> None:
    def complete(words: str, cword: int) -> list[str]:
        env = {**os.environ, "_LEDGER_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
        done = subprocess.run([str(LEDGER)], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("ledger acc", 1) == ["account"]
    assert complete("ledger account ", 2) == ["show", "list"]
    assert "--as-of" in complete("ledger account show alice --", 4)
    assert "--install-completion" in invoke("--help").stdout


# --- --db after the command ------------------------------------------------------------------------
def test_hoist_db() -> None:
    assert hoist_db(["account", "show", "a", "--db", "U"]) == ["--db", "U", "account", "show", "a"]
    assert hoist_db(["--db", "A", "history", "a", "--db=B", "--json"]) == ["--db", "A", "--db=B", "history", "a", "--json"]
    assert hoist_db(["demo", "--db", "U"]) == ["demo", "--db", "U"]  # the demo's own option
    assert hoist_db(["apply", "--", "--db"]) == ["apply", "--", "--db"]
    assert hoist_db(["--version"]) == ["--version"]


def leaves(command: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if hasattr(command, "commands"):  # a group
        return [leaf for name, sub in command.commands.items() for leaf in leaves(sub, (*path, name))]
    return [path]


ARGUMENTS = {("account", "show"): ["alice"], ("history",): ["alice"], ("report",): ["interest"],
             ("audit", "replay"): ["--as-of", "2026-01-01T00:00:00Z"],
             ("token", "create"): ["--name", "t", "--scope", "read"], ("token", "revoke"): ["t"],
             ("audit", "liabilities"): ["--out", "never-made", "--secret-file", __file__],
             ("risk", "stress"): ["--shock", "BTC=-30%"]}


# no store: the demo has its own --db, the worker is a process, keygen writes two key files (tests/test_signing.py),
# liabilities-verify reads two files (tests/test_liabilities.py)
APART = (("demo",), ("worker",), ("audit", "keygen"), ("audit", "liabilities-verify"))


@pytest.mark.parametrize("path", [p for p in leaves(typer.main.get_command(cli)) if p not in APART],
                         ids=" ".join)
def test_db_after_the_command_is_the_store_used(path: tuple[str, ...]) -> None:
    """Every command: a --db after it is the one opened (this one cannot be: one clear line)."""
    result = invoke(*path, *ARGUMENTS.get(path, []), "--db", "mysql://after/the/command")
    assert result.exit_code == 2, result.stdout
    assert "unsupported database URL 'mysql://after/the/command'" in result.stderr


def test_every_command_is_covered_by_the_db_test() -> None:
    names = set(leaves(typer.main.get_command(cli)))
    assert set(APART) <= names  # tested apart
    assert set(ARGUMENTS) <= names


def test_db_after_the_command_for_the_worker() -> None:
    done = subprocess.run([sys.executable, "-m", "entrypoints", "worker", "--db", "mysql://after/worker"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "mysql://after/worker" in json.loads(done.stderr)["store"]


def test_db_after_wins_and_both_spellings_work(tmp_path: Path) -> None:
    first, second = f"sqlite:///{tmp_path / 'first.db'}", f"sqlite:///{tmp_path / 'second.db'}"
    opened = json.dumps({"type": "open_account", "account": "bob", "at": "2026-01-01T00:00:00Z"}) + "\n"
    carol = json.dumps({"type": "open_account", "account": "carol", "at": "2026-01-01T00:00:00Z"}) + "\n"
    assert runner.invoke(cli, ["apply", "-", f"--db={second}"], input=opened).exit_code == 0
    assert runner.invoke(cli, ["apply", "-", "--db", first], input=carol).exit_code == 0
    assert invoke("--db", first, "account", "show", "bob", "--db", second, "--json").exit_code == 0
    assert invoke("account", "show", "bob", "--db", first).exit_code == 1  # not in the first store
    assert "bob" not in invoke("account", "list", "--db", first).stdout


def test_demo_keeps_its_own_db(tmp_path: Path) -> None:
    assert hoist_db(["--db", "x", "demo", "--db", "y"]) == ["--db", "x", "demo", "--db", "y"]


# --- --json where there was none -----------------------------------------------------------------
def store_with_events(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'json.db'}"
    commands = [{"type": "open_account", "account": LONG_ID, "at": "2026-01-01T00:00:00Z"},
                {"type": "deposit", "account": LONG_ID, "currency": "USDT", "amount": BIG, "at": "2026-01-01T00:01:00Z"}]
    assert ledger_cli(url, "apply", "-", input="".join(json.dumps(c) + "\n" for c in commands)).exit_code == 0
    return url


def test_json_for_audit_seal_digest_and_projections(tmp_path: Path) -> None:
    url = store_with_events(tmp_path)
    sealed = json.loads(ledger_cli(url, "audit", "seal", "--json").stdout)
    position = int(sealed["head"].split(":")[0])
    assert sealed["sealed"] == 0 and position >= 2  # the stores linked every event at commit
    digest = json.loads(ledger_cli(url, "audit", "digest", "--json").stdout)
    assert digest["head"] == sealed["head"] and digest == {"head": digest["head"], "position": position,
                                                            "link": digest["head"].split(":")[1]}
    run = ledger_cli(url, "projections", "run", "--json")
    assert run.exit_code == 0 and json.loads(run.stdout)["events"] >= 2
    assert json.loads(ledger_cli(url, "projections", "run", "--json").stdout) == {"events": 0}
    rebuilt = json.loads(ledger_cli(url, "projections", "rebuild", "--json").stdout)
    assert rebuilt["events"] == json.loads(run.stdout)["events"]


def test_worker_summary_as_json(tmp_path: Path) -> None:
    url = store_with_events(tmp_path)
    started = time.time()  # float-ok: wall seconds, to see whether a scheduled mark fell in the run
    proc = subprocess.Popen([sys.executable, "-m", "entrypoints", "--db", url, "worker", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line or json.loads(line)["event"] in ("projections run", "sweep run"):
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=60)
    summary = json.loads(stdout)
    assert proc.returncode == 0 and summary["signal"] == "SIGTERM"
    # One catch-up run of each at start; a scheduled one only if its wall-clock instant fell in the run.
    expected = {"interest": crossed(started, 3600), "sweep": crossed(started, 300)}
    for job, extra in expected.items():
        assert summary["runs"][job] in ({1} if not extra else {1, 2}), (job, summary["runs"])
    assert summary["failures"] == {}


def crossed(started: float, every: int) -> bool:  # float-ok: wall seconds
    """Whether a multiple of ``every`` seconds lay between a second before ``started`` and a second from now."""
    return int((started - 1) // every) != int((time.time() + 1) // every)


# --- people's output never cuts a value ------------------------------------------------------------
@pytest.fixture
def wide_store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'wide.db'}"
    at = "2026-01-05T09:00:00Z"
    commands = [{"type": "set_platform_flags", "whitelist_required": False, "at": at},
                {"type": "set_price", "currency": "BTC", "price": "60000.123456", "at": at},
                {"type": "open_account", "account": LONG_ID, "at": at},
                {"type": "complete_risk_assessment", "account": LONG_ID, "score": 80, "agreements_version": "v1", "at": at},
                {"type": "switch_mode", "account": LONG_ID, "mode": "unified", "at": at},
                {"type": "deposit", "account": LONG_ID, "currency": "USDT", "amount": BIG, "at": at},
                {"type": "deposit", "account": LONG_ID, "currency": "BTC", "amount": "1.98765432", "at": at},
                {"type": "borrow", "account": LONG_ID, "currency": "USDT", "amount": "2500.55555555", "at": at}]
    assert ledger_cli(url, "apply", "-", input="".join(json.dumps(c) + "\n" for c in commands)).exit_code == 0
    return url


def whole(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("columns", ["80", None], ids=["COLUMNS=80", "piped"])
@pytest.mark.parametrize("command", [["account", "show", LONG_ID], ["account", "list"], ["history", LONG_ID]], ids=" ".join)
def test_tables_never_cut_a_number_or_an_id(wide_store: str, columns: str | None, command: list[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    if columns:
        monkeypatch.setenv("COLUMNS", columns)
    else:
        monkeypatch.delenv("COLUMNS", raising=False)
    shown = ledger_cli(wide_store, *command)
    assert shown.exit_code == 0, shown.stdout
    assert "…" not in shown.stdout
    view = json.loads(ledger_cli(wide_store, "account", "show", LONG_ID, "--json").stdout)
    values = ["2026-01-05T09:00:00Z", BIG, "2500.55555555"] if command[0] == "history" else [LONG_ID]
    if command[:2] == ["account", "show"]:
        values += [v for b in view["balances"].values() for v in b.values()] + [view["nav"], view["adjusted_equity"]]
    for value in values:
        assert value in shown.stdout.split() or value in whole(shown.stdout), (value, shown.stdout)


def test_a_real_pipe_gets_whole_values(wide_store: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    done = subprocess.run([sys.executable, "-m", "entrypoints", "--db", wide_store, "account", "list"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0 and LONG_ID in done.stdout and "…" not in done.stdout


def test_the_demo_reads_at_80_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from entrypoints.demo import STEPS

    monkeypatch.setenv("COLUMNS", "80")
    result = invoke("demo", "--db", f"sqlite:///{tmp_path / 'demo.db'}")
    assert result.exit_code == 0, result.stdout
    assert "…" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    for number, (title, _, _) in enumerate(STEPS, 1):
        assert whole(f"{number}. {title}") in whole(result.stdout), title
    assert whole("13. An hour later the interest worker charges 10:00 UTC") in whole(result.stdout)
