"""One configuration object (issue 14): every LEDGER_* variable is a field of
``ledger.adapters.settings.Settings``, read when a command runs, never when a module is
imported; the composition root (``entrypoints.compose``) hands each part its value; a bad
value is one line naming the variable, exit 2, no traceback."""
from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from entrypoints.cli import cli
from entrypoints.compose import Root
from ledger.adapters.settings import Settings, SettingsError
from ledger.adapters.store import PG_LIMITS
from ledger.service.cache import AggregateCache
from projections import runner
from workers.interest import run_interest
from workers.screen import screen
from workers.sweep import run_sweep

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ledger", "workers", "projections", "entrypoints", "stores")


def invoke(url: str, *args: str, env: dict[str, str] | None = None, input: str | None = None) -> Any:
    return CliRunner().invoke(cli, ["--db", url, *args], env=env, input=input)


def test_every_variable_keeps_its_name_and_default() -> None:
    s = Settings.load()
    assert {name: getattr(s, name) for name in ("database_url", "future_allowance_seconds", "cache_aggregates",
                                                 "interest_batch_accounts", "sweep_batch_accounts", "sweep_processes",
                                                 "sweep_parallel_from", "projection_batch")} == {
        "database_url": "sqlite:///ledger.db", "future_allowance_seconds": 60, "cache_aggregates": 20_000,
        "interest_batch_accounts": 500, "sweep_batch_accounts": 500, "sweep_processes": 0,
        "sweep_parallel_from": 20_000, "projection_batch": 1000}
    # the store's bounds: one field per LEDGER_PG_<NAME> of ledger.adapters.store, and SQLite's
    bounds = {name for name in Settings.model_fields if name.startswith(("pg_", "sqlite_"))}
    assert bounds == {"pg_" + name.lower() for name in PG_LIMITS} | {"sqlite_lock_timeout"}


def default(function: Any, name: str) -> Any:
    return inspect.signature(function).parameters[name].default


def test_the_settings_defaults_are_the_functions_defaults() -> None:
    """Library callers (tests, bench) that pass nothing get what the settings default to."""
    s = Settings()
    assert default(run_interest, "batch_accounts") == s.interest_batch_accounts
    assert default(run_sweep, "batch_accounts") == s.sweep_batch_accounts
    assert default(run_sweep, "processes") == default(screen, "processes") == s.sweep_processes
    assert default(run_sweep, "parallel_from") == default(screen, "parallel_from") == s.sweep_parallel_from
    assert default(runner.run, "batch_events") == s.projection_batch
    assert default(AggregateCache, "maxsize") == s.cache_aggregates


def test_the_environment_reaches_each_part(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in {"LEDGER_INTEREST_BATCH_ACCOUNTS": "7", "LEDGER_SWEEP_BATCH_ACCOUNTS": "3",
                        "LEDGER_SWEEP_PROCESSES": "2", "LEDGER_SWEEP_PARALLEL_FROM": "10",
                        "LEDGER_PROJECTION_BATCH": "50", "LEDGER_CACHE_AGGREGATES": "0",
                        "LEDGER_PG_LOCK_TIMEOUT": "3", "LEDGER_SQLITE_LOCK_TIMEOUT": "4", "LEDGER_PG_PORT": "55432"}.items():
        monkeypatch.setenv(name, value)  # LEDGER_PG_PORT is docker compose's, not the ledger's: ignored
    root = Root.load(database_url="postgresql://u@h/db")
    assert root.job_options == {"interest": {"batch_accounts": 7},
                                "sweep": {"batch_accounts": 3, "processes": 2, "parallel_from": 10},
                                "projections": {"batch_events": 50}}
    assert root.store_env()["POSTGRES_LOCK_TIMEOUT"] == "3"
    sqlite = root.on(f"sqlite:///{tmp_path / 's.db'}")
    assert sqlite.store_env()["SQLITE_LOCK_TIMEOUT"] == "4"
    app = sqlite.open_app()
    try:
        assert app.cache.maxsize == 0
    finally:
        app.close()


def test_the_command_line_passes_them_to_the_jobs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import workers.interest
    import workers.sweep

    seen: dict[str, Any] = {}
    monkeypatch.setattr(workers.interest, "charging", lambda app, run, **kw: seen.setdefault("interest", kw) and iter(()))
    monkeypatch.setattr(workers.sweep, "run_sweep", lambda app, at, **kw: seen.setdefault("sweep", kw) and None)
    monkeypatch.setenv("LEDGER_INTEREST_BATCH_ACCOUNTS", "5")
    monkeypatch.setenv("LEDGER_SWEEP_PARALLEL_FROM", "9")
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    invoke(url, "interest", "run", "--json")
    invoke(url, "repayment", "run", "--json")
    assert seen["interest"]["batch_accounts"] == 5 and seen["sweep"]["parallel_from"] == 9
    assert seen["sweep"]["batch_accounts"] == 500 and seen["sweep"]["processes"] == 0


@pytest.mark.parametrize("name, value, args, says", [
    ("LEDGER_INTEREST_BATCH_ACCOUNTS", "abc", ["interest", "run"], "a whole number of accounts (1 or more)"),
    ("LEDGER_SWEEP_BATCH_ACCOUNTS", "0", ["repayment", "run"], "a whole number of accounts (1 or more)"),
    ("LEDGER_SWEEP_PROCESSES", "-1", ["repayment", "run"], "a whole number of processes (0 or more)"),
    ("LEDGER_PROJECTION_BATCH", "1e3", ["projections", "run"], "a whole number of events (1 or more)"),
    ("LEDGER_CACHE_AGGREGATES", "", ["account", "list"], "a whole number of aggregates (0 or more)"),
    ("LEDGER_FUTURE_ALLOWANCE_SECONDS", "soon", ["apply", "-"], "a whole number of seconds from 0 to 86400"),
])
def test_a_bad_value_is_one_line_naming_the_variable(tmp_path: Path, name: str, value: str, args: list[str],
                                                     says: str) -> None:
    url = f"sqlite:///{tmp_path / 'bad.db'}"
    assert invoke(url, "apply", "-", input="").exit_code == 0  # the store exists: only the setting is wrong
    result = invoke(url, *args, env={name: value}, input="")
    assert result.exit_code == 2 and result.stdout == "", result.output
    assert result.stderr == f"ledger: {name}: {value!r} is not {says}\n"


def test_a_setting_error_has_a_stable_code() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.load(sweep_processes="two")
    assert raised.value.code == "invalid_setting" and raised.value.variable == "LEDGER_SWEEP_PROCESSES"
    assert str(raised.value) == "LEDGER_SWEEP_PROCESSES: 'two' is not a whole number of processes (0 or more)"


def test_help_and_version_read_no_setting() -> None:
    """A bad setting does not stop `--help` (nor `--version`): nothing is read before a command runs."""
    env = {"LEDGER_PROJECTION_BATCH": "lots"}
    assert CliRunner().invoke(cli, ["projections", "run", "--help"], env=env).exit_code == 0
    assert CliRunner().invoke(cli, ["--version"], env=env).exit_code == 0


def test_the_worker_says_a_bad_setting_in_one_json_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "entrypoints", "--db", f"sqlite:///{tmp_path / 'w.db'}", "worker"],
                          capture_output=True, text=True, timeout=60,
                          env={**dict(__import__("os").environ), "LEDGER_SWEEP_BATCH_ACCOUNTS": "many"})
    [line] = done.stderr.splitlines()
    entry = json.loads(line)
    assert done.returncode == 2 and entry["level"] == "error" and entry["event"] == "invalid setting"
    assert entry["error_kind"] == "invalid_setting" and entry["error_type"] == "SettingsError"
    assert entry["error"] == "LEDGER_SWEEP_BATCH_ACCOUNTS: 'many' is not a whole number of accounts (1 or more)"


def reads_environment(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Attribute) and n.attr in ("environ", "getenv") for n in ast.walk(node))


def test_no_module_reads_the_environment_when_imported() -> None:
    """Module-level statements read no variable; only the settings read LEDGER_* at all."""
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for statement in tree.body:
                if not isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    assert not reads_environment(statement), f"{path.relative_to(ROOT)}:{statement.lineno} reads the environment"
            calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and reads_environment(n.func)]
            for call in calls:  # os.environ.get(...) / os.getenv(...) inside a function
                assert "LEDGER_" not in ast.unparse(call), f"{path.relative_to(ROOT)}:{call.lineno}: {ast.unparse(call)}"
