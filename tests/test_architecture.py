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
    for package in ("ledger", "entrypoints", "api"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                    assert node.func.id != "float", f"{path.name} calls float()"


# --- the floors (docs/architecture.md) ----------------------------------------------------------
# Of the project's own packages, what each floor may import.  A floor lower in the list never
# imports one higher up; entrypoints/ (the edge, the composition root) may import anything.
FLOORS: dict[str, set[str]] = {
    "ledger.domain": {"ledger.domain"},
    "ledger.read": {"ledger.domain", "ledger.read"},
    "ledger.adapters": {"ledger.domain", "ledger.adapters"},
    "ledger.service": {"ledger.domain", "ledger.read", "ledger.adapters", "ledger.service"},
    "stores": {"stores"},
    "projections": {"ledger", "stores", "projections"},
    "workers": {"ledger", "projections", "workers"},
    "bus": {"ledger", "projections", "bus"},  # the event bus (§18): NATS in, NATS out
}
OWN = ("ledger", "stores", "projections", "workers", "entrypoints", "api", "bench", "bus")
EDGES = ("entrypoints", "api")  # may import anything; only the edges import an edge
# The domain is pure: of the world outside it may use only these (no I/O, no clock, no
# threads, no environment, no storage).
DOMAIN_MAY_USE = {"__future__", "typing", "decimal", "datetime", "dataclasses", "re", "functools",
                  "enum", "collections", "itertools", "math", "abc", "eventsourcing.domain",
                  "eventsourcing.utils", "pydantic"}


def imports_of(path: Path) -> list[str]:
    """Every module ``path`` imports, at any depth (lazy imports inside functions too)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


def floor_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:2]) if parts[0] == "ledger" and len(parts) > 2 else parts[0]


def within(name: str, allowed: set[str]) -> bool:
    return any(name == a or name.startswith(a + ".") for a in allowed)


def test_each_floor_imports_only_the_floors_below_it() -> None:
    for floor, allowed in FLOORS.items():
        folder = ROOT.joinpath(*floor.split("."))
        files = sorted(folder.rglob("*.py"))
        assert files, f"no floor {floor}"
        for path in files:
            for name in imports_of(path):
                if name.split(".")[0] in OWN:
                    assert within(name, allowed), f"{path.relative_to(ROOT)} ({floor}) imports {name}"


def test_nothing_below_the_edges_imports_them() -> None:
    """api/ (the HTTP edge, `ledger serve`) is an edge like entrypoints/: the floors never
    import it, and it reads the settings only through the composition root."""
    for package in ("ledger", "stores", "projections", "workers", "bus"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in imports_of(path):
                assert name.split(".")[0] not in EDGES, f"{path.relative_to(ROOT)} imports {name}"
    for path in sorted((ROOT / "api").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv", "environb"}:
                raise AssertionError(f"{path.relative_to(ROOT)} reads the environment")


def test_every_module_of_ledger_lives_on_a_floor() -> None:
    """No module left at the top of ledger/: each says its trade by its folder."""
    loose = [p.name for p in (ROOT / "ledger").glob("*.py") if p.name != "__init__.py"]
    assert loose == []
    assert {p.name for p in (ROOT / "ledger").iterdir() if p.is_dir() and p.name != "__pycache__"} == \
        {f.split(".")[1] for f in FLOORS if f.startswith("ledger.")}


def test_the_domain_uses_nothing_of_the_world_outside() -> None:
    for path in sorted((ROOT / "ledger" / "domain").rglob("*.py")):
        for name in imports_of(path):
            if name.split(".")[0] not in OWN:
                assert within(name, DOMAIN_MAY_USE), f"{path.name} imports {name}"


def test_aggregate_ids_are_spelled_in_one_place() -> None:
    """ledger.domain.ids spells every aggregate id; no other module writes one as a literal."""
    spelled = ("account/", "pool/", "holders/", "apikey/", "command/", "runs/", "interest/due",
               "interest/clock", "risk/alerted")
    for package in ("ledger", "workers", "projections", "entrypoints", "api", "bench"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "ledger" / "domain" / "ids.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                        node.value.startswith(spelled) and " " not in node.value:
                    raise AssertionError(f"{path.relative_to(ROOT)} spells the id {node.value!r}")


def test_only_the_edge_reads_the_environment() -> None:
    """Settings come from one object (ledger.adapters.settings, built by entrypoints.compose):
    the domain, the service layer, the read side, the workers and the projections never read
    the environment themselves."""
    for folder in ("ledger/domain", "ledger/service", "ledger/read", "workers", "projections", "bus"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv", "environb"}:
                    raise AssertionError(f"{path.relative_to(ROOT)} reads the environment")
