"""One run of the command line (Typer's context object): the store URL, the clock, the
composition root built from the settings when a command first needs them, and the ways a
command opens the store and says what went wrong: one line on standard error, exit 2.

Nothing here is imported by ``ledger --version`` or ``--help`` but typer and the standard
library: the rest comes when a command runs."""
from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from contextlib import contextmanager
from datetime import datetime
from functools import cached_property
from itertools import islice
from typing import TYPE_CHECKING, Any, Callable, Iterator, NoReturn, Optional, TypeVar

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from entrypoints.compose import Root
    from ledger.service.app import LedgerApp
    from projections.sql import ViewDatabase

T = TypeVar("T")
# Help is click's plain text: it fits any width and needs no Rich at start-up.
PLAIN: dict[str, Any] = {"no_args_is_help": True, "rich_markup_mode": None}


def commands(help: Optional[str] = None) -> typer.Typer:
    """A group of commands (named by ``entrypoints.cli``, or merged into the root without a name)."""
    return typer.Typer(help=help, **PLAIN)


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on standard error, then exit with ``code``."""
    note(message)
    raise typer.Exit(code)


def note(message: str) -> None:
    """One line on standard error that does not change the exit code."""
    print(f"ledger: {' '.join(message.split())}", file=sys.stderr)


def emit(value: Any) -> None:
    """Machine output: ``value`` as indented JSON on standard output."""
    print(json.dumps(value, indent=2))


def emit_streamed(fields: Iterable[tuple[str, Any]] | Iterable[Any]) -> None:
    """Machine output written as it is read: the JSON that ``emit`` writes for an object of
    ``fields`` (``(name, value)`` pairs) or, given an iterator, for an array.  A value that is
    an iterator is written as an array an item at a time; a callable is called when its turn
    comes (after the iterators before it are spent: totals, a next cursor)."""
    out = sys.stdout
    if isinstance(fields, Iterator):
        _array(out, fields, "")
    else:
        out.write("{")
        for number, (name, value) in enumerate(fields):
            out.write(("," if number else "") + f"\n  {json.dumps(name)}: ")
            value = value() if callable(value) else value
            if isinstance(value, Iterator):
                _array(out, value, "  ")
            else:
                out.write(_indented(value, "  "))
        out.write("\n}")
    out.write("\n")
    out.flush()


def _array(out: Any, items: Iterator[Any], indent: str) -> None:
    """``items`` as ``emit`` indents an array, written 500 at a time (one ``json.dumps`` per
    500: its indented encoder is Python, slow called per item)."""
    out.write("[")
    written = False
    while chunk := list(islice(items, 500)):
        inner = json.dumps(chunk, indent=2)[1:-2]  # the items' lines, without "[" and "\n]"
        out.write(("," if written else "") + (inner.replace("\n", "\n" + indent) if indent else inner))
        out.flush()
        written = True
    out.write(f"\n{indent}]" if written else "]")


def _indented(value: Any, indent: str) -> str:
    return json.dumps(value, indent=2).replace("\n", "\n" + indent)


def events(count: int) -> str:
    return f"{count} event" + ("" if count == 1 else "s")


def parse_time(value: Optional[str], option: str) -> Optional[datetime]:
    """An option's RFC 3339 instant, or None when it is not given."""
    from ledger.domain.times import parse_instant

    if value is None:
        return None
    try:
        return parse_instant(value)
    except ValueError:
        fail(f"{option}: {value!r} is not an RFC 3339 timestamp such as 2026-01-01T00:00:00Z")


class Session:
    """The store at ``db_url`` and the clock ``clock`` (the wall clock; tests give another)."""

    def __init__(self, db_url: str, clock: Callable[[], datetime]) -> None:
        self.db_url = db_url
        self.clock = clock

    @cached_property
    def out(self) -> "Console":
        """The console for people, sized for this output (entrypoints.people)."""
        from entrypoints import people

        return people.console()

    def answer(self, value: Any, as_json: bool, for_people: Callable[["Console", Any], None]) -> None:
        """``value`` as JSON with ``--json``, else drawn for people by ``for_people``."""
        if as_json:
            emit(value)
        else:
            for_people(self.out, value)

    @cached_property
    def root(self) -> "Root":
        """The composition root, from the settings (a bad one: its line, exit 2)."""
        from entrypoints.compose import Root
        from ledger.adapters.settings import SettingsError

        try:
            return Root.load(database_url=self.db_url)
        except SettingsError as error:
            fail(str(error))

    def latest_clock(self) -> Callable[[], datetime]:
        """T4: the latest instant the ledger accepts, as the clock moves: now plus the allowance."""
        allowance = self.root.settings.future_allowance
        return lambda: self.clock() + allowance

    def run_time(self, value: Optional[str], option: str) -> datetime:
        """The instant a run stands for: ``value`` (default now), never from the future (T4)."""
        from ledger.domain.errors import LedgerError
        from ledger.domain.horizon import check_not_future

        latest = self.latest_clock()
        at = parse_time(value, option) or self.clock()
        try:
            check_not_future(at, latest())
        except LedgerError as error:
            fail(f"{option}: {error.message}")
        return at

    @contextmanager
    def opened(self, read_only: bool = False) -> Iterator["LedgerApp"]:
        """The application on the store; a bad URL or an unreachable server is one line.
        ``read_only`` for the commands that only read (§13): no table is created, nothing can be
        written, and a store without a ledger (a missing SQLite file, no tables) is one line."""
        from ledger.adapters.store import StoreError, describe_store_error, redact

        url = self.db_url
        try:
            env = self.root.store_env(read_only)
        except StoreError as error:
            fail(str(error))
        if read_only and "SQLITE_PATH" in env:
            check_sqlite_ledger(env)
        app = None
        try:
            app = self.root.open_app(env)
            if read_only:
                app.recorder.max_notification_id()  # reach the store now: a missing ledger is one line
        except Exception as error:  # the driver's own error: say it in one line
            if app is not None:
                app.close()
            if read_only and no_such_table(error):
                fail(f"no ledger at {redact(url)}: its tables do not exist (only a command that writes creates them)")
            fail(f"cannot open the store {redact(url)}: {describe_store_error(error) or type(error).__name__}")
        with closing_app(app):
            yield app

    @contextmanager
    def views(self, read_only: bool = False) -> Iterator["ViewDatabase"]:
        """The read models' connection to the same store (read-only for readers, as ``opened``)."""
        from ledger.adapters.store import redact

        try:
            db = self.root.open_views(read_only)
        except Exception as error:  # noqa: BLE001 - the driver's own error: one line
            fail(f"cannot open the store {redact(self.db_url)}: {str(error) or type(error).__name__}")
        try:
            yield db
        finally:
            db.close()


@contextmanager
def closing_app(app: "LedgerApp") -> Iterator[None]:
    """Close ``app`` at the end; a store failure while a command runs is one line, exit 2."""
    from eventsourcing.persistence import PersistenceError
    from eventsourcing.utils import TopicError

    from ledger.adapters.retry import StoreUnavailable, describe

    try:
        yield
    except StoreUnavailable as error:  # retried already (ledger.adapters.retry): one line, exit 2
        fail(str(error))
    except TopicError as error:  # a topic no table of ledger.service.topics maps to today's code
        fail(f"the store holds events this version of the ledger cannot read: {error}")
    except PersistenceError as error:  # a store failure no retry cures: one line all the same
        fail(f"the store failed: {type(error).__name__}: {describe(error)}")
    finally:
        app.close()


def check_sqlite_ledger(env: dict[str, str]) -> None:
    """A file that is not a SQLite database, or holds no ledger, is one sentence: a reader
    cannot fall back on creating the tables (nor switch the file to WAL, as the store would)."""
    import sqlite3
    from contextlib import closing

    path = env["SQLITE_PATH"]
    try:
        with closing(sqlite3.connect(env["SQLITE_DBNAME"], uri=True, timeout=5)) as con:
            found = con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'stored_events'").fetchone()
    except sqlite3.DatabaseError as error:
        fail(f"no ledger at {path}: {error}")
    if not found:
        fail(f"no ledger at {path}: the file holds no ledger tables")


def no_such_table(error: BaseException) -> bool:
    """SQLite's "no such table", PostgreSQL's undefined_table (eventsourcing wraps both)."""
    cause = error.__cause__ or error
    return "no such table" in str(error) or getattr(cause, "sqlstate", None) == "42P01"


def with_progress(label: str, quiet: bool, work: Callable[[Optional[Callable[[int, int], None]]], T]) -> T:
    """Run ``work`` with a progress bar on standard error for people, or quietly."""
    if quiet:
        return work(None)
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)
        return work(lambda done, total: bar.update(task, completed=done, total=total))
