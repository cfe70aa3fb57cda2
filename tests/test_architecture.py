"""The dependency rule: the domain knows nothing of SQL drivers, the CLI or the clock."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN_IMPORTS = {"sqlite3", "psycopg", "psycopg_pool", "typer", "click", "rich", "apscheduler",
                     "entrypoints", "workers", "projections"}
FORBIDDEN_CALLS = {"now", "utcnow", "today", "time"}


def test_ledger_package_imports_no_adapter_or_entry_point() -> None:
    for path in (ROOT / "ledger").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN_IMPORTS, f"{path.name} imports {name}"


def test_ledger_package_never_reads_the_clock() -> None:
    for path in (ROOT / "ledger").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = node.func.value
                if isinstance(owner, ast.Name) and owner.id in {"datetime", "time", "date"}:
                    assert node.func.attr not in FORBIDDEN_CALLS, f"{path.name} reads the clock"


def test_no_float_near_money() -> None:
    for package in ("ledger", "entrypoints"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                    assert node.func.id != "float", f"{path.name} calls float()"
