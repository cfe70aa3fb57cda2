"""People's output: Rich on standard output, and never a number or an id cut short.

A table prints as a table when its natural width fits the console, or else without its
vertical lines if that fits.  When neither does, each row prints as a block of "column
value" lines instead, so no cell is ever folded or cut to "11013.1…".  On a terminal the console is the terminal's width (or $COLUMNS); piped, it is
WIDE columns unless $COLUMNS says otherwise, and a line longer than that is left whole.
Rich is imported when something is printed, not when the command line starts.
"""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence

if TYPE_CHECKING:
    from rich.console import Console

WIDE = 160  # piped output: a table this wide stays a table


def console(stderr: bool = False) -> "Console":
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    sized = stream.isatty() or bool(os.environ.get("COLUMNS"))
    return Console(stderr=stderr, width=None if sized else WIDE)


def cell(value: Any) -> str:
    return "" if value is None else str(value)


def show(out: "Console", columns: Sequence[str], rows: Iterable[Sequence[Any]], title: Optional[str] = None) -> None:
    """``rows`` under ``columns``: a table if it fits ``out``'s width, else the same table
    without its vertical lines, else one block per row."""
    from rich import box

    cells = [[cell(v) for v in row] for row in rows]
    for style in ({}, {"box": box.SIMPLE_HEAD, "pad_edge": False, "show_edge": False}):
        table = build(columns, cells, title, **style)
        if width(out, table) <= out.width:
            out.print(table)
            return
    vertical(out, columns, cells, title)


def build(columns: Sequence[str], cells: list[list[str]], title: Optional[str], **style: Any) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(*columns, title=title, **style)
    for column in table.columns:
        column.overflow = "fold"  # never an ellipsis, even if a width is forced on the table
    for row in cells:
        table.add_row(*(Text(v) for v in row))  # values are text, not markup
    return table


def width(out: "Console", table: Any) -> int:
    """The table's natural width: every cell on one line."""
    from rich.measure import Measurement

    return Measurement.get(out, out.options.update_width(10_000), table).maximum


def vertical(out: "Console", columns: Sequence[str], cells: list[list[str]], title: Optional[str]) -> None:
    """One block per row: each column's name, padded, then its whole value."""
    from rich.text import Text

    pad = max(len(c) for c in columns)
    if title:
        out.print(Text(title, style="italic"))
    for number, row in enumerate(cells):
        if number:
            out.print()
        for name, value in zip(columns, row):
            line = Text(f"  {name:<{pad}}  ", style="bold")
            line.append(value)
            out.print(line, soft_wrap=True)  # a value longer than the line wraps on the terminal, whole


def heading(out: "Console", text: str) -> None:
    """A rule, then the heading, wrapped at word boundaries (a rule's title would be cut)."""
    from rich.text import Text

    out.rule()
    out.print(Text(text, style="bold"))
