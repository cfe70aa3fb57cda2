"""Run the worked examples of docs/rules.md (tests/rules_page.py reads them) and compare.

``after`` starts from the store another example left (after its first N steps only, with
``:N``), else from an empty store; ``unified`` opens each account as the unified master of §1
(its four commands, at ``at`` when given); the hidden lines of the comment then run, and must
all succeed.  ``clock`` is the ledger's clock for the block (commands without `at` take it);
``clocks`` gives one per step (``-``: unchanged) for the examples run on the real clock: the
command line's clock (``entrypoints.cli.utcnow``) is set to it.  ``AGG=OTHER`` reads a store
dump's aggregate AGG from example OTHER's store.

Results are compared as the page says it trims them (§1): `at` left out of results,
``# trimmed`` shows some top-level fields, ``(compacted)`` JSON is JSON whatever its spacing,
people's output is compared line by line.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sqlite3
from contextlib import ExitStack
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Optional
from unittest import mock

from tests.rules_page import DUMP, Example, Step, examples

DEFAULT_CLOCK = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
SETUP_ALLOWANCE = "86400"  # hidden set-ups may record instants up to a day ahead (T4's maximum)
__all__ = ["Example", "Runner", "examples"]


def unified_master(account: str, at: Optional[str]) -> list[str]:
    """§1: the four commands that make a unified master (their results are left out)."""
    commands = [{"type": "open_account", "account": account}, {"type": "whitelist", "account": account},
                {"type": "complete_risk_assessment", "account": account, "score": 80, "agreements_version": "v1"},
                {"type": "switch_mode", "account": account, "mode": "unified"}]
    return [json.dumps(c | ({"at": at} if at else {}), separators=(",", ":")) for c in commands]


def without_at(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_at(v) for k, v in value.items() if k != "at"}
    if isinstance(value, list):
        return [without_at(v) for v in value]
    return value


def plain_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(type(value))


def clock_value(text: str, before: datetime) -> datetime:
    if text == "-":
        return before
    if "T" not in text:
        text = before.date().isoformat() + "T" + text
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


class Runner:
    """Runs examples on SQLite files in ``root``, each once (its store is kept for others)."""

    def __init__(self, root: Path, all_examples: list[Example]) -> None:
        self.root = root
        self.by_id = {e.id: e for e in all_examples}
        self.done: dict[str, Path] = {}
        self.clock = DEFAULT_CLOCK
        self.exit_code: Optional[int] = None

    # stores
    def store(self, example: Example) -> Path:
        if example.id not in self.done:
            self.done[example.id] = self.build(example, None, self.root / f"{example.id}.db")
        return self.done[example.id]

    def build(self, example: Example, steps: Optional[int], path: Path) -> Path:
        for stale in path.parent.glob(path.name + "*"):  # what a failed run left
            stale.unlink()
        parent, parent_steps = example.after
        self.clock = clock_value(example.options["clock"], DEFAULT_CLOCK) if "clock" in example.options else DEFAULT_CLOCK
        if parent:
            source = self.by_id[parent]
            if parent_steps is None:
                copy_store(self.store(source), path)
            else:
                self.build(source, parent_steps, path)
            if "clock" in example.options:
                self.clock = clock_value(example.options["clock"], DEFAULT_CLOCK)
        self.set_up(example, path)
        clocks = example.options.get("clocks", "").split(",") if "clocks" in example.options else None
        if clocks is not None:
            assert len(clocks) == len(example.steps), f"{example.id}: {len(clocks)} clocks for {len(example.steps)} steps"
        for n, step in enumerate(example.steps[:steps]):
            if clocks:
                self.clock = clock_value(clocks[n], self.clock)
            self.check(example, step, path)
        return path

    def set_up(self, example: Example, path: Path) -> None:
        lines = [c for name in example.options.get("unified", "").split(",") if name
                 for c in unified_master(name, example.options.get("at"))]
        for row in example.setup:
            if row.startswith("$ "):
                self.apply_setup(lines, path)
                lines = []
                result = self.ledger(path, shlex.split(row[2:])[1:], {})
                assert result.exit_code == 0, f"{example.id}: set-up {row!r}: {result.output}"
            else:
                lines.append(row)
        self.apply_setup(lines, path)

    def apply_setup(self, lines: list[str], path: Path) -> None:
        if not lines:
            return
        result = self.ledger(path, ["apply", "-"], {"LEDGER_FUTURE_ALLOWANCE_SECONDS": SETUP_ALLOWANCE},
                             "".join(line + "\n" for line in lines))
        refused = [r for r in map(json.loads, result.stdout.splitlines()) if not r["ok"]]
        assert result.exit_code == 0 and not refused, f"a hidden set-up command was refused: {refused or result.output}"

    def ledger(self, path: Path, args: list[str], env: dict[str, str], input: Optional[str | bytes] = None) -> Any:
        from typer.testing import CliRunner

        from entrypoints import cli

        with ExitStack() as stack:
            stack.enter_context(mock.patch.object(cli, "utcnow", lambda: self.clock))
            stack.enter_context(mock.patch.dict(os.environ, env))  # the settings are read as the command runs
            return CliRunner().invoke(cli.cli, ["--db", f"sqlite:///{path}", *args], input=input)

    # steps
    def check(self, example: Example, step: Step, path: Path) -> None:
        where = f"docs/rules.md:{step.line} ({example.id})"
        if step.kind == "apply":
            self.check_apply(where, step, path)
        elif step.kind == "dump":
            self.check_dump(where, example, step, path)
        elif step.kind == "command":
            self.check_command(where, step, path)
        else:
            raise AssertionError(f"{where}: cannot read {step.text!r}")

    def check_apply(self, where: str, step: Step, path: Path) -> None:
        data = b"".join(decode_input(line) for line in step.inputs)
        result = self.ledger(path, ["apply", "-"], step.env, data)
        self.exit_code = result.exit_code
        got = [without_at(json.loads(row)) for row in result.stdout.splitlines()]
        want = [json.loads(row) for row in step.expected]
        assert result.exit_code in (0, 1), f"{where}: ledger apply failed: {result.output}"
        for n, (mine, page) in enumerate(zip(got, want)):
            assert mine == page, f"{where}: result {n + 1} differs\n  page: {json.dumps(page)}\n  ran:  {json.dumps(mine)}"
        assert len(got) == len(want), f"{where}: {len(want)} results on the page, {len(got)} printed"

    def check_dump(self, where: str, example: Example, step: Step, path: Path) -> None:
        shown = [DUMP.match(line) for line in step.expected]
        aggregates = list(dict.fromkeys(m["agg"] for m in shown if m))
        got = []
        for aggregate in aggregates:
            source = self.store(self.by_id[example.options[aggregate]]) if aggregate in example.options else path
            got += dump(source, aggregate)
        assert got == step.expected, f"{where}: the store holds\n" + "\n".join(got)

    def check_command(self, where: str, step: Step, path: Path) -> None:
        command, _, comment = step.text.partition("   #")
        show_code = command.endswith("; echo $?")
        command = command.removesuffix("; echo $?").strip()
        expected = list(step.expected)
        if command == "echo $?":
            assert expected == [str(self.exit_code)], f"{where}: exit code {self.exit_code}, the page says {expected}"
            return
        if show_code:
            code = expected.pop()
        words = shlex.split(command)
        env = {}
        while "=" in words[0]:
            name, value = words.pop(0).split("=", 1)
            env[name] = value
        if words[0] == "date":
            assert expected == [self.clock.strftime("%Y-%m-%dT%H:%M:%SZ")], f"{where}: the clock is {self.clock}"
            return
        if words[0] == "sqlite3":
            with sqlite3.connect(path) as con:
                con.execute(words[2])
            return
        assert words[0] == "ledger", f"{where}: cannot run {command!r}"
        result = self.ledger(path, words[1:], env)
        self.exit_code = result.exit_code
        if show_code:
            assert str(result.exit_code) == code, f"{where}: exit code {result.exit_code}, the page says {code}"
        compare_output(where, words, comment, expected, result)


def compare_output(where: str, words: list[str], comment: str, expected: list[str], result: Any) -> None:
    if not expected:
        assert "left out" in comment or not result.stdout.strip(), f"{where}: the page shows nothing of\n{result.output}"
        return
    if "--json" in words and expected[0].startswith(("{", "[")):
        got = json.loads(result.stdout)
        text = "\n".join(expected)
        try:
            want = json.loads(text)
        except json.JSONDecodeError:  # one object a line
            want = [json.loads(line) for line in expected]
        if isinstance(got, list) and not isinstance(want, list):  # a list of one, on one line
            want = [want]
        if "trimmed" in comment:
            got = {k: got.get(k, "(missing)") for k in want}
        assert got == want, f"{where}: differs\n  page: {json.dumps(want)}\n  ran:  {json.dumps(got)}"
        return
    # a terminal shows standard output, then the notes on standard error (a progress bar that
    # disappears leaves an empty line there when the output is not a terminal)
    got_lines = [line.rstrip() for line in result.stdout.splitlines()]
    got_lines += [line.rstrip() for line in result.stderr.split("\n") if line.strip()]
    want_lines = [line.rstrip() for line in expected]
    assert got_lines == want_lines, f"{where}: printed\n" + "\n".join(
        f"{'  ' if a == b else '≠ '}{a!r}\n  page {b!r}" for a, b in zip(got_lines + [""] * len(want_lines), want_lines + [""] * len(got_lines)))


def decode_input(line: str) -> bytes:
    r"""An input line as bytes on the wire: a line that is not JSON may show bytes as ``\xNN``
    (§12: "the line shown as \xffdeposit is the byte 0xFF followed by deposit")."""
    if line.startswith("\\x"):
        return re.sub(rb"\\x([0-9a-f]{2})", lambda m: bytes([int(m[1], 16)]), line.encode()) + b"\n"
    return line.encode() + b"\n"


def copy_store(source: Path, target: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{source}{suffix}").exists():
            shutil.copyfile(f"{source}{suffix}", f"{target}{suffix}")


def dump(path: Path, aggregate: str) -> list[str]:
    """One line per stored event: aggregate, version, event, fields without `at` (§13)."""
    from ledger.service.app import LedgerApp
    from ledger.domain.base import event_fields

    app = LedgerApp(env={"PERSISTENCE_MODULE": "stores.sqlite", "SQLITE_DBNAME": str(path)})
    try:
        return [f"{aggregate} v{e.originator_version} {type(e).__name__} "
                + json.dumps(without_at(json.loads(json.dumps(event_fields(e), default=plain_json))), separators=(",", ":"))
                for e in app.events.get(aggregate)]
    finally:
        app.close()

