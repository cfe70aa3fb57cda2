"""The worked examples of docs/rules.md, as the page writes them (tests/rules_examples.py runs them).

Every fenced block of the page is preceded by an HTML comment that says where its example
starts (docs/rules.md §1):

    <!-- example ID [after=OTHER[:N]] [unified=a,b] [at=T] [clock=T] [clocks=T1,T2,...] [AGG=OTHER]
    hidden set-up: JSON commands, or $ ledger ... lines
    -->

A block is steps: runs of `ledger apply` (command lines, each followed by its ``→`` result;
``# (new ledger apply run[, with NAME=VALUE])`` starts another), ``$`` command lines with the
output shown under them, and store dumps (``AGG vN Event {fields}``, after ``# store: AGG`` or
alone).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

PAGE = Path(__file__).resolve().parent.parent / "docs" / "rules.md"
COMMENT = re.compile(r"^<!-- example (?P<head>[^\n]*?)(?:\n(?P<body>.*?))?\s*-->$", re.S)
DUMP = re.compile(r"^(?P<agg>\S+) v(?P<version>\d+) (?P<event>\w+) (?P<fields>\{.*\})$")


@dataclass
class Step:
    kind: str  # "apply", "command", "dump", or "text" (not readable)
    line: int  # where it starts in the page
    text: str = ""  # the command line; for a dump, the aggregate
    inputs: list[str] = field(default_factory=list)  # apply: the input lines, "" for a blank one
    expected: list[str] = field(default_factory=list)  # apply: the → results; else the lines shown
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Example:
    id: str
    line: int
    options: dict[str, str]
    setup: list[str]
    steps: list[Step]

    @property
    def after(self) -> tuple[Optional[str], Optional[int]]:
        if "after" not in self.options:
            return None, None
        parent, _, steps = self.options["after"].partition(":")
        return parent, int(steps) if steps else None


# --- reading the page ----------------------------------------------------------------------------
def fenced_blocks(text: str) -> Iterator[tuple[int, Optional[str], list[str]]]:
    """(line of the fence, the comment just before it or None, the block's lines)."""
    lines = text.split("\n")
    number = 0
    while number < len(lines):
        if lines[number].strip().startswith("```"):
            start, body = number, []
            number += 1
            while not lines[number].strip().startswith("```"):
                body.append(lines[number])
                number += 1
            comment = None
            if start and lines[start - 1].rstrip().endswith("-->"):
                first = start - 1
                while not lines[first].startswith("<!--"):
                    first -= 1
                comment = "\n".join(lines[first:start])
            yield start + 1, comment, body
        number += 1


def examples(text: Optional[str] = None) -> list[Example]:
    found = []
    for line, comment, body in fenced_blocks(PAGE.read_text(encoding="utf-8") if text is None else text):
        match = COMMENT.match(comment or "")
        if not match:
            raise AssertionError(f"docs/rules.md:{line}: a fenced block without an <!-- example ... --> comment")
        head = match["head"].split()
        options = dict(word.split("=", 1) for word in head[1:])
        setup = [row for row in (match["body"] or "").split("\n") if row.strip()]
        found.append(Example(head[0], line, options, setup, list(parse_steps(body, line))))
    ids = [e.id for e in found]
    assert len(ids) == len(set(ids)), f"example ids repeat: {sorted({i for i in ids if ids.count(i) > 1})}"
    return found


def is_input(lines: list[str], n: int) -> bool:
    return n + 1 < len(lines) and lines[n + 1].startswith("→ ")


def parse_steps(lines: list[str], first_line: int) -> Iterator[Step]:
    n, run, env = 0, None, {}
    while n < len(lines):
        line, where = lines[n], first_line + n + 1
        if is_input(lines, n) or (line == "" and run is not None):
            if run is None:
                run = Step("apply", where, env=env)
                env = {}
            run.inputs.append(line)
            if line:
                run.expected.append(lines[n + 1][2:])
                n += 1
            n += 1
            continue
        if run is not None:
            yield run
            run = None
        if line.startswith("# (new ledger apply run"):
            env = dict(re.findall(r"(\w+)=(\S+?)\)?$", line))
            n += 1
        elif line.startswith("# store: ") or DUMP.match(line):
            aggregate = line.removeprefix("# store: ") if line.startswith("# store: ") else None
            n += 1 if aggregate else 0
            shown = []
            while n < len(lines) and DUMP.match(lines[n]):
                shown.append(lines[n])
                n += 1
            yield Step("dump", where, aggregate or "", expected=shown)
        elif line.startswith("$ "):
            command = line[2:]
            n += 1
            while n < len(lines) and lines[n].startswith("    "):  # a command continued
                command += "\n" + lines[n]
                n += 1
            shown = []
            while n < len(lines) and not (lines[n].startswith(("$ ", "# ")) or is_input(lines, n)):
                shown.append(lines[n])
                n += 1
            parts = split_commands(command)
            for part in parts:
                yield Step("command", where, part, expected=shown if part is parts[-1] else [])
        else:  # nothing this reader knows: fails when run (an example not run may hold anything)
            yield Step("text", where, line)
            n += 1
    if run is not None:
        yield run


def split_commands(command: str) -> list[str]:
    """``a; b`` is two commands; ``a; echo $?`` stays one (its exit code is shown)."""
    text, _, comment = command.partition("   #")
    parts = [p.strip() for p in text.split(";")]
    words = [p + ("; echo $?" if i + 1 < len(parts) and parts[i + 1] == "echo $?" else "")
             for i, p in enumerate(parts) if p != "echo $?"] or ["echo $?"]
    return [w + "   #" + comment for w in words] if comment else words
