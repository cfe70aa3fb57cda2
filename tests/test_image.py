"""The container image holds what the package needs.  Docker cannot run here, so this test
does what `docker build` would with the files: it lays out the image's file tree from the
Dockerfile's WORKDIR and COPY/ADD lines and .dockerignore, installs the package from it the
way the Dockerfile's `RUN pip install` does (into a fresh virtual environment that sees only
the already-installed dependencies, never this checkout), and runs `ledger` from there.  A
package folder left out of the image fails here.  Also: the compose file's promises."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


# --- Dockerfile and .dockerignore, as Docker reads them -----------------------------------------
def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comments dropped, continuation lines joined."""
    lines, current = [], ""
    for raw in dockerfile.read_text(encoding="utf-8").splitlines():
        if not current and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        lines.append(current + raw)
        current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip() if len(line.split(None, 1)) > 1 else "")
            for line in lines]


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match, plus ** for any number of folders)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + "[" + pattern[i + 1:end].replace("!", "^", 1) + "]", end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def ignore_rules(context: Path) -> list[tuple[bool, re.Pattern[str]]]:
    """(is an exception `!`, pattern) for each line of .dockerignore."""
    path = context / ".dockerignore"
    rules = []
    for line in (path.read_text(encoding="utf-8").splitlines() if path.exists() else []):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        cleaned = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((keep, pattern_regex(cleaned)))
    return rules


def ignored(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parent folders decides."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    verdict = False
    for keep, regex in rules:
        if any(regex.fullmatch(p) for p in prefixes):
            verdict = not keep
    return verdict


def context_files(context: Path) -> list[str]:
    """Every file of the build context that .dockerignore lets through, relative to it."""
    rules = ignore_rules(context)
    prune = not any(keep for keep, _ in rules)  # without exceptions an ignored folder is ignored whole
    found = []
    for folder, dirs, files in os.walk(context):
        rel = os.path.relpath(folder, context)
        rel = "" if rel == "." else rel + "/"
        if prune:
            dirs[:] = [d for d in dirs if not ignored(rel + d, rules)]
        found += [rel + f for f in files if not ignored(rel + f, rules)]
    return sorted(found)


def image_tree(context: Path, dockerfile: Path, image: Path) -> tuple[Path, list[str]]:
    """Lay out under ``image`` what WORKDIR and COPY/ADD put in the image, up to the first
    `RUN pip install`; return that step's folder and what it installs."""
    files = context_files(context)
    workdir = Path("/")
    for name, args in instructions(dockerfile):
        if name == "WORKDIR":
            workdir = workdir / args
        elif name in ("COPY", "ADD"):
            words = json.loads(args) if args.startswith("[") else shlex.split(args)
            flags = [w for w in words if w.startswith("--")]
            assert not [f for f in flags if f.startswith("--from")], "multi-stage COPY --from is not emulated"
            *sources, dest = [w for w in words if not w.startswith("--")]
            target = image / (workdir / dest).relative_to("/")
            for source in sources:
                assert "://" not in source, "ADD of a URL is not emulated"
                src = os.path.normpath(source)
                src = "" if src == "." else src
                matched = [f for f in files if f == src or not src or f.startswith(src + "/")]
                assert matched, f"{name} {source}: nothing in the build context"
                for f in matched:
                    inside = f[len(src) + 1:] if src and f != src else f
                    if f == src:  # a file: into dest/ when dest is a folder, else as dest
                        inside = os.path.basename(f) if dest.endswith("/") or len(sources) > 1 else ""
                    out = target / inside if inside else target
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(context / f, out)
        elif name == "RUN" and re.search(r"\bpip install\b", args):
            words = shlex.split(args.split("&&")[[i for i, part in enumerate(args.split("&&")) if "pip install" in part][0]])
            targets = [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
            return image / workdir.relative_to("/"), targets
    raise AssertionError("the Dockerfile has no `RUN pip install`")


# --- the test ------------------------------------------------------------------------------------
def packages(root: Path) -> list[str]:
    """The repository's Python packages that belong in the image (not the tests, nor the bench)."""
    return sorted(p.parent.name for p in root.glob("*/__init__.py") if p.parent.name not in ("tests", "bench"))


def install_from_image_tree(dockerfile: Path, tmp: Path) -> Path:
    """The image's tree installed into a fresh venv: its python.  Fast and offline: no
    dependency is installed (the venv sees the ones this interpreter already has, not this
    checkout), no build isolation, no index."""
    folder, targets = image_tree(ROOT, dockerfile, tmp / "image")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # A plain folder line in a .pth is added to sys.path without running that folder's own .pth
    # files: the dependencies are found, this checkout's editable install is not.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    for target in targets:
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                               "--no-index", "--target", str(site), str(folder / target)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    return python


ENTRY = ("import sys; from importlib.metadata import entry_points; "
         "(ep,) = entry_points(group='console_scripts', name='ledger'); sys.argv[0] = 'ledger'; sys.exit(ep.load()())")


def ledger_in(python: Path, cwd: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The installed `ledger` console script, run outside this checkout with a clean environment."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd), "LANG": "C.UTF-8"}
    return subprocess.run([str(python), "-c", ENTRY, *args], input=stdin, capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


def test_the_image_tree_installs_and_runs(tmp_path: Path) -> None:
    python = install_from_image_tree(ROOT / "Dockerfile", tmp_path)
    work = tmp_path / "run"
    work.mkdir()
    url = f"sqlite:///{work / 'image.db'}"
    commands = [{"type": "open_account", "account": "alice", "at": "2026-01-01T00:00:00Z"},
                {"type": "deposit", "account": "alice", "currency": "USDT", "amount": "12.5", "at": "2026-01-01T00:01:00Z"}]
    applied = ledger_in(python, work, "--db", url, "apply", "-", stdin="".join(json.dumps(c) + "\n" for c in commands))
    assert applied.returncode == 0, applied.stderr
    assert [json.loads(line)["ok"] for line in applied.stdout.splitlines()] == [True, True]
    shown = ledger_in(python, work, "--db", url, "account", "show", "alice", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["wallets"]["spot"] == {"USDT": "12.5"}
    # every package of the repository, the PostgreSQL store among them, imports from the install
    where = subprocess.run([str(python), "-c", "import importlib, json, sys; print(json.dumps("
                            "{m: importlib.import_module(m).__file__ for m in sys.argv[1:]}))",
                            *packages(ROOT), "stores.postgres"], capture_output=True, text=True, cwd=work,
                           env={"PATH": os.environ.get("PATH", "")}, timeout=60)
    assert where.returncode == 0, where.stderr
    for module, path in json.loads(where.stdout).items():
        assert Path(path).is_relative_to(tmp_path / "venv"), f"{module} came from {path}, not the image's install"


def test_a_package_left_out_of_the_image_fails_the_tree(tmp_path: Path) -> None:
    """The check above is not vacuous: the Dockerfile this repository had (a COPY per package,
    stores/ forgotten) gives a tree without stores/."""
    old = tmp_path / "Dockerfile"
    old.write_text("FROM python:3.11-slim\nWORKDIR /app\nCOPY pyproject.toml README.md ./\nCOPY ledger ledger\n"
                   "COPY workers workers\nCOPY projections projections\nCOPY entrypoints entrypoints\n"
                   "RUN pip install --no-cache-dir .\n")
    folder, targets = image_tree(ROOT, old, tmp_path / "image")
    assert targets == ["."] and (folder / "pyproject.toml").exists() and (folder / "ledger" / "service" / "app.py").exists()
    assert not (folder / "stores").exists()
    ours, _ = image_tree(ROOT, ROOT / "Dockerfile", tmp_path / "ours")
    assert {p for p in packages(ROOT) if not (ours / p / "__init__.py").exists()} == set()
    assert not (ours / "tests").exists() and not (ours / ".venv").exists() and not (ours / ".git").exists()


def test_dockerignore_semantics() -> None:
    rules = [(False, pattern_regex("**/__pycache__")), (False, pattern_regex("*.db")), (False, pattern_regex("docs")),
             (True, pattern_regex("docs/keep.md"))]
    assert ignored("ledger/__pycache__/x.pyc", rules) and ignored("__pycache__/x.pyc", rules)
    assert ignored("ledger.db", rules) and not ignored("data/ledger.db", rules)  # * does not cross folders
    assert ignored("docs/rules.md", rules) and not ignored("docs/keep.md", rules)
    assert not ignored("ledger/service/app.py", rules)


# --- compose -------------------------------------------------------------------------------------
def test_compose_builds_one_image_keeps_secrets_out_and_checks_the_worker() -> None:
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    ledger_services = {name: s for name, s in services.items() if name not in ("postgres", "nats")}
    assert [name for name, s in services.items() if "build" in s] == ["worker"], "one build, one image"
    assert {s["image"] for s in ledger_services.values()} == {"uta-ledger:local"}
    assert not any(p.split(":")[-2:] == ["5432", "5432"] for p in services["postgres"].get("ports", [])), \
        "5432 on the host is left to a host PostgreSQL"
    assert "${POSTGRES_PASSWORD" in services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    for s in ledger_services.values():
        assert "${POSTGRES_PASSWORD" in s["environment"]["LEDGER_DATABASE_URL"]
    assert services["worker"]["healthcheck"]["test"] == ["CMD", "ledger", "status", "--check"]
    assert services["nats"]["image"] == "nats:2" and "-js" in services["nats"]["command"]  # the bus (§18)
    assert services["consume"]["command"] == ["consume"] and "nats" in services["consume"]["depends_on"]
    assert all(s["environment"]["LEDGER_NATS_URL"] == "nats://nats:4222" for s in ledger_services.values())
    assert services["publish"]["command"] == ["publish"] and "-js" in services["nats"]["command"]
    assert "nats" in services["publish"]["depends_on"]
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    assert re.search(r"^POSTGRES_PASSWORD=", example, re.M)
    assert ".env" in (ROOT / ".gitignore").read_text(encoding="utf-8").split()
