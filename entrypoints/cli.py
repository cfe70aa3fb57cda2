"""The `ledger` command line (docs/spec.md §13).  It parses arguments, opens the store, calls
the application and prints; people's output with Rich (entrypoints.people), machine output
with --json."""
from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, TypeVar

import typer
from typer.core import TyperGroup

from ledger.domain import ids
from ledger.service import jsonlines
from ledger.domain.errors import LedgerError
from ledger.service.jsonlines import MAX_LINE_BYTES
from ledger.domain.money import fmt
from ledger.adapters.retry import StoreUnavailable, describe
from ledger.adapters.store import DEFAULT_URL, StoreError, describe_store_error, persistence_env, redact
from workers.gc_tuning import fewer_collections

if TYPE_CHECKING:
    from rich.console import Console as Console_

    from ledger.service.app import LedgerApp as LedgerApp_


def hoist_db(args: list[str]) -> list[str]:
    """``--db URL`` (or ``--db=URL``) given after the command moves before it, where the main
    callback reads it: ``ledger account show alice --db URL``.  Later wins, as for any option.
    `demo` keeps its own ``--db``; nothing after ``--`` moves."""
    at = 0
    while at < len(args) and args[at].startswith("-") and args[at] != "--":
        at += 2 if args[at] == "--db" else 1
    if at >= len(args) or args[at] == "demo":
        return list(args)
    moved: list[str] = []
    rest: list[str] = []
    tail = list(args[at:])
    while tail:
        word = tail.pop(0)
        if word == "--":
            rest += [word, *tail]
            break
        if word == "--db" and tail:
            moved += [word, tail.pop(0)]
        elif word.startswith("--db="):
            moved.append(word)
        else:
            rest.append(word)
    return [*args[:at], *moved, *rest]


class Commands(TyperGroup):
    """The root command: reads ``--db`` wherever it is given (see hoist_db)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_db(args))


# Help is click's plain text: it fits any width and needs no Rich at start-up.
PLAIN = {"no_args_is_help": True, "rich_markup_mode": None}
cli = typer.Typer(cls=Commands, help="An event-sourced ledger for Unified Trading Accounts.", **PLAIN)
account_cli = typer.Typer(help="Accounts: show one, list all.", **PLAIN)
cli.add_typer(account_cli, name="account")
interest_cli = typer.Typer(help="Hourly interest (I1-I6).", **PLAIN)
cli.add_typer(interest_cli, name="interest")
repayment_cli = typer.Typer(help="The 5-minute forced-repayment sweep (L1-L4).", **PLAIN)
cli.add_typer(repayment_cli, name="repayment")
projections_cli = typer.Typer(help="Read models: run, rebuild, status.", **PLAIN)
cli.add_typer(projections_cli, name="projections")
audit_cli = typer.Typer(help="Audit: seal, digest, verify, replay, export.", **PLAIN)
cli.add_typer(audit_cli, name="audit")

# Start-up time: `ledger --version`, `--help` and shell completion import no domain, store,
# pydantic or Rich module.  The names below are bound by load_commands(), which the main
# callback calls before any command runs; the commands use them as ordinary globals.
LedgerApp: "type[LedgerApp_]"
BATCH_SIZE: int
Console: "type[Console_]"
out: "Console_"
show: Callable[..., None]  # entrypoints.people.show: a table, or one block per row when it is too wide
_timestamp: Callable[[str], datetime]
account_view: Callable[..., dict[str, Any]]
dumps: Callable[[Any], str]
event_dict: Callable[..., dict[str, Any]]
plain: Callable[[Any], Any]
rfc3339: Callable[[datetime], str]


def load_commands() -> None:
    """Import what the commands use, and a console for people sized for this output."""
    global LedgerApp, BATCH_SIZE, Console, out, show, _timestamp, account_view, dumps, event_dict, plain, rfc3339
    from rich.console import Console

    from entrypoints import people
    from ledger.service.app import BATCH_SIZE, LedgerApp
    from ledger.domain.commands import _timestamp
    from ledger.read.render import dumps, event_dict, plain, rfc3339
    from ledger.read.views import account_view

    show = people.show
    out = people.console()


class State:
    db_url = DEFAULT_URL


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


MAX_FUTURE_ALLOWANCE = 86_400  # seconds: a day of clock skew is a broken clock, not skew


def future_allowance() -> timedelta:
    """T4: how far ahead of this machine's clock an instant may lie, in whole seconds, from
    LEDGER_FUTURE_ALLOWANCE_SECONDS (default 60)."""
    from ledger.domain.horizon import FUTURE_ALLOWANCE

    raw = os.environ.get("LEDGER_FUTURE_ALLOWANCE_SECONDS")
    if raw is None:
        return FUTURE_ALLOWANCE
    text = raw.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 6 and int(text) <= MAX_FUTURE_ALLOWANCE):
        fail(f"LEDGER_FUTURE_ALLOWANCE_SECONDS: {raw!r} is not a whole number of seconds from 0 to {MAX_FUTURE_ALLOWANCE}")
    return timedelta(seconds=int(text))


def latest_clock() -> Callable[[], datetime]:
    """T4: the latest instant the ledger accepts, as the clock moves: now plus the allowance."""
    allowance = future_allowance()
    return lambda: utcnow() + allowance


def run_time(value: Optional[str], option: str) -> datetime:
    """The instant a run stands for: ``value`` (default now), never from the future (T4)."""
    from ledger.domain.horizon import check_not_future

    latest = latest_clock()
    at = parse_time(value, option) or utcnow()
    try:
        check_not_future(at, latest())
    except LedgerError as error:
        fail(f"{option}: {error.message}")
    return at


def fail(message: str, code: int = 2) -> None:
    """One line on standard error, then exit with ``code``."""
    print(f"ledger: {' '.join(message.split())}", file=sys.stderr)
    raise typer.Exit(code)


def note(message: str) -> None:
    """One line on standard error that does not change the exit code."""
    print(f"ledger: {' '.join(message.split())}", file=sys.stderr)


def events(count: int) -> str:
    return f"{count} event" + ("" if count == 1 else "s")


@contextmanager
def opened(url: Optional[str] = None, read_only: bool = False) -> Iterator[LedgerApp]:
    """The application on the store at ``url``; a bad URL or an unreachable server is one line.
    ``read_only`` for the commands that only read (§13): no table is created, nothing can be
    written, and a store without a ledger (a missing SQLite file, no tables) is one line."""
    url = url or State.db_url
    try:
        env = persistence_env(url, read_only)
    except StoreError as error:
        fail(str(error))
    if read_only and "SQLITE_PATH" in env:
        check_sqlite_ledger(env)
    app = None
    try:
        app = LedgerApp.open(env)
        if read_only:
            app.recorder.max_notification_id()  # reach the store now: a missing ledger is one line
    except Exception as error:  # the driver's own error: say it in one line
        if app is not None:
            app.close()
        if read_only and no_such_table(error):
            fail(f"no ledger at {redact(url)}: its tables do not exist (only a command that writes creates them)")
        fail(f"cannot open the store {redact(url)}: {describe_store_error(error) or type(error).__name__}")
    assert app is not None
    from eventsourcing.persistence import PersistenceError
    from eventsourcing.utils import TopicError

    try:
        yield app
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


T = TypeVar("T")


def with_progress(label: str, quiet: bool, work: Callable[[Optional[Callable[[int, int], None]]], T]) -> T:
    """Run ``work`` with a progress bar on standard error for people, or quietly."""
    if quiet:
        return work(None)
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)
        return work(lambda done, total: bar.update(task, completed=done, total=total))


def parse_time(value: Optional[str], option: str) -> Optional[datetime]:
    if value is None:
        return None
    try:
        return _timestamp(value)
    except ValueError:
        fail(f"{option}: {value!r} is not an RFC 3339 timestamp such as 2026-01-01T00:00:00Z")
    return None


def show_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"ledger {version('uta-ledger')}")
        except PackageNotFoundError:
            print("ledger (not installed: no version)")
        raise typer.Exit(0)


@cli.callback()
def main(
    db: str = typer.Option(DEFAULT_URL, "--db", envvar="LEDGER_DATABASE_URL",
                           help="sqlite:///path or postgresql://user:pass@host:port/db; before or after the command"),
    version: bool = typer.Option(False, "--version", callback=show_version, is_eager=True, help="the installed version"),
) -> None:
    State.db_url = db
    load_commands()


# --- apply -----------------------------------------------------------------------------------------
def read_lines(source: str) -> Iterator[bytes]:
    """The input's lines as bytes: each is decoded on its own (``ledger.service.jsonlines``), so a
    line that is not UTF-8 costs only its own result."""
    if source == "-":
        yield from bounded_lines(sys.stdin.buffer)
        return
    try:
        with open(source, "rb") as handle:
            yield from bounded_lines(handle)
    except OSError as error:
        fail(f"cannot read {source}: {error}")


def bounded_lines(stream: Any, limit: int = MAX_LINE_BYTES) -> Iterator[bytes]:
    """Lines with their endings; one longer than ``limit`` comes cut after ``limit + 1``
    bytes, the rest of it read and dropped, never held in memory."""
    while line := stream.readline(limit + 1):
        if len(line) > limit and not line.endswith(b"\n"):
            while (rest := stream.readline(limit)) and not rest.endswith(b"\n"):
                pass
        yield line


def decode(line: bytes) -> Any:
    """One line's JSON value, or the ``validation_error`` it earns (§12)."""
    try:
        return jsonlines.decode(line)
    except LedgerError as error:
        return error


def blank(line: bytes) -> bool:
    return len(line) <= MAX_LINE_BYTES and not line.strip()


@cli.command()
def apply(source: str = typer.Argument("-", metavar="[FILE|-]", help="JSON Lines commands; - is standard input")) -> None:
    """Apply JSON Lines commands (docs/spec.md §12); print one JSON result per line.  Exit 0 all ok, 1 any rejected, 2 unusable input."""
    any_rejected = False
    latest = latest_clock()
    with opened() as app, fewer_collections():
        batch: list[Any] = []
        numbers: list[int] = []  # the input line number of each command in the batch

        def write(results: list[Any]) -> None:
            # results are plain data already (ledger.read.render): one write per batch
            sys.stdout.write("".join(json.dumps(result, separators=(",", ":")) + "\n" for result in results))
            sys.stdout.flush()

        def flush() -> None:
            nonlocal any_rejected
            try:
                results = app.apply(batch, utcnow, latest)
            except StoreUnavailable as error:
                write(error.done)
                start = numbers[len(error.done)]
                fate = (f"those up to line {numbers[-1]} may or may not have been applied, the rest were not"
                        if error.in_doubt else "none of them was applied")
                fail(f"{error}; the commands from input line {start} on have no result: {fate} "
                     "(a command with a command_id is applied once however often it is sent)")
            any_rejected |= not all(result["ok"] for result in results)
            write(results)
            batch.clear()
            numbers.clear()

        for number, line in enumerate(read_lines(source), 1):
            if blank(line):
                continue
            numbers.append(number)
            batch.append(decode(line))
            if len(batch) >= BATCH_SIZE:
                flush()
        if batch:
            flush()
    raise typer.Exit(1 if any_rejected else 0)


# --- account -----------------------------------------------------------------------------------------
@account_cli.command("show")
def account_show(
    account: str,
    as_of: Optional[str] = typer.Option(None, "--as-of", help="RFC 3339 instant: the state then"),
    as_json: bool = typer.Option(False, "--json", help="machine output (docs/spec.md §14)"),
) -> None:
    """Mode, wallets, balances, positions, open orders and margin of one account."""
    at = parse_time(as_of, "--as-of")
    with opened(read_only=True) as app:
        try:
            acct = app.state_at(ids.account(account), at) if at else app.account(account)
            if acct is None:
                raise LedgerError("unknown_account", f"no account {account} at {as_of}")
        except LedgerError as error:
            fail(error.message, 1)
        view = account_view(acct, app.platform_at(at), lambda c: app.platform_owed(c, at))
    if as_json:
        print(json.dumps(view, indent=2))
        return
    print_account(view)


def print_account(view: dict[str, Any]) -> None:
    parent = f", sub-account of {view['parent']}" if view["parent"] else ""
    out.print(f"[bold]{view['account']}[/bold]  {view['mode']} mode, VIP {view['vip_level']}{parent}")
    if view["balances"]:
        show(out, ["currency", "cash", "liability", "upl liability", "available", "equity", "borrowable"],
             [[c, b["cash"], b["liability"], b["upl_liability"], b["available"], b["equity"], view["borrowable"].get(c, "-")]
              for c, b in view["balances"].items()])
    if view["positions"]:
        show(out, ["symbol", "qty", "entry", "mark", "unrealized P&L"],
             [[p["symbol"], p["qty"], p["entry_price"], p["mark_price"], p["unrealized_pnl"]] for p in view["positions"]],
             title="positions")
    if view["open_orders"]:
        show(out, ["order", "market", "symbol", "side", "qty", "filled", "price"],
             [[o["order_id"], o["market"], o["symbol"], o["side"], o["qty"], o["filled_qty"], o["price"]] for o in view["open_orders"]],
             title="open orders")
    if view["mode"] == "unified":
        if "margin_error" in view:
            out.print(f"margin: unavailable ({view['margin_error']['message']})")
        else:
            ratio = view["risk_ratio"] if view["risk_ratio"] is not None else "infinite"
            flag = "  [red]LIQUIDATABLE[/red]" if view["liquidatable"] else ""
            out.print(f"adjusted equity {view['adjusted_equity']}  IM {view['initial_margin']}  MM {view['maintenance_margin']}  "
                      f"risk ratio {ratio}  NAV {view['nav']}{flag}", highlight=False)


@account_cli.command("list")
def account_list(as_json: bool = typer.Option(False, "--json", help="machine output")) -> None:
    """Every account with its mode and totals."""
    rows = []
    with opened(read_only=True) as app:
        platform = app.platform()
        for account in app.account_ids():
            view = account_view(app.account(account), platform, app.platform_owed)
            rows.append({
                "account": account, "parent": view["parent"], "mode": view["mode"], "vip_level": view["vip_level"],
                "cash": {c: b["cash"] for c, b in view["balances"].items()},
                "liabilities": {c: b["liability"] for c, b in view["balances"].items() if b["liability"] != "0"},
                "nav": view["nav"], "risk_ratio": view["risk_ratio"],
            })
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    show(out, ["account", "parent", "mode", "VIP", "cash", "liabilities", "NAV", "risk ratio"],
         [[r["account"], r["parent"], r["mode"], r["vip_level"], ", ".join(f"{v} {c}" for c, v in r["cash"].items()),
           ", ".join(f"{v} {c}" for c, v in r["liabilities"].items()), r["nav"], r["risk_ratio"]] for r in rows])


# --- history -----------------------------------------------------------------------------------------
@cli.command()
def history(
    account: str,
    since: Optional[str] = typer.Option(None, "--since", help="only events at or after this instant"),
    until: Optional[str] = typer.Option(None, "--until", help="only events at or before this instant"),
    type_: Optional[str] = typer.Option(None, "--type", help="only events of this name, e.g. Borrowed"),
    as_json: bool = typer.Option(False, "--json", help="machine output (docs/spec.md §14)"),
) -> None:
    """The account's events in order."""
    start, end = parse_time(since, "--since"), parse_time(until, "--until")
    with opened(read_only=True) as app:
        try:
            events = app.history(account)
        except LedgerError as error:
            fail(error.message, 1)
    rows = []
    for e in events:
        row = event_dict(ids.account(account), e)
        row.pop("account", None)
        at = e.at
        if (start and at < start) or (end and at > end) or (type_ and row["type"] != type_):
            continue
        rows.append({"type": row.pop("type"), "at": rfc3339(at), "seq": e.originator_version, **{k: v for k, v in row.items() if k != "at"}})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    show(out, ["seq", "at", "event", "details"],
         [[r["seq"], r["at"], r["type"], ", ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}"
                                                   for k, v in r.items() if k not in ("type", "at", "seq"))] for r in rows])


# --- interest, worker, status --------------------------------------------------------------------
@interest_cli.command("run")
def interest_run(
    hour: Optional[str] = typer.Option(None, "--hour", help="run as if at this instant (default now)"),
    as_json: bool = typer.Option(False, "--json", help="machine output (docs/spec.md §14)"),
) -> None:
    """Charge every hour ≤ T not yet charged, exactly once; the events carry at = T."""
    from workers.interest import run_interest

    run_at = run_time(hour, "--hour")
    with opened() as app:
        run = with_progress("charging interest", as_json, lambda progress: run_interest(app, run_at, progress=progress))
    charges = [plain(vars(c)) for c in run.charges]
    if as_json:
        print(json.dumps({"at": rfc3339(run_at), "charges": charges,
                          "skipped": run.skipped}, indent=2))
        return
    show(out, ["account", "currency", "hour", "liability", "free", "rate", "interest", "paid", "capitalized"],
         [[c["account"], c["currency"], c["hour"], c["liability"], c["interest_free"], c["rate"], c["interest"], c["paid"],
           c["capitalized"]] for c in charges])
    totals = ", ".join(f"{fmt(v)} {c}" for c, v in run.totals().items()) or "nothing"
    out.print(f"{len(charges)} charges on {len({c['account'] for c in charges})} accounts at {rfc3339(run_at)}: {totals}",
              highlight=False)
    for s in run.skipped:
        out.print(f"skipped {s['account']}: {s['message']}", highlight=False)


@repayment_cli.command("run")
def repayment_run(
    at: Optional[str] = typer.Option(None, "--at", help="sweep the last 5-minute mark at or before this instant (default now)"),
    as_json: bool = typer.Option(False, "--json", help="machine output (docs/spec.md §14)"),
) -> None:
    """Sweep the last 5-minute mark ≤ T once: forced repayment (quota, platform), liquidation, alerts."""
    from workers.sweep import run_sweep

    run_at = run_time(at, "--at")
    with opened() as app:
        run = with_progress("sweeping", as_json, lambda progress: run_sweep(app, run_at, progress=progress))
    if as_json:
        print(json.dumps({"at": rfc3339(run_at), "mark": rfc3339(run.mark), "actions": plain(run.actions),
                          "skipped": run.skipped, "already_swept": run.already_swept}, indent=2))
        return
    if run.already_swept:
        out.print(f"mark {rfc3339(run.mark)} was swept already: nothing done")
        return
    show(out, ["account", "kind", "details"],
         [[a["account"], a["kind"], ", ".join(f"{k}={v}" for k, v in a.items() if k not in ("account", "kind"))]
          for a in plain(run.actions)])
    out.print(f"mark {rfc3339(run.mark)}: {run.accounts} accounts examined, {len(run.actions)} actions", highlight=False)
    for s in run.skipped:
        out.print(f"skipped {s['account']}: {s['message']}", highlight=False)


@cli.command()
def worker(as_json: bool = typer.Option(False, "--json", help="the summary at exit as JSON (log lines are JSON always)")) -> None:
    """Long-running scheduler: hourly interest, the 5-minute sweep, the read models.

    Interest at :00, the sweep every 5 minutes, the read models every few seconds; stops
    cleanly on SIGTERM/SIGINT.  Logs: one JSON object per line on standard error; a store it
    cannot open is one error line and exit 2."""
    from workers.scheduler import open_store, run_worker, setup_logging

    setup_logging()
    opened_store = open_store(State.db_url)
    if opened_store is None:
        raise typer.Exit(2)
    app, views = opened_store
    try:
        summary = run_worker(app, views)
    finally:
        views.close()
        app.close()
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    runs = ", ".join(f"{job} {n}" for job, n in summary["runs"].items()) or "none"
    failures = ", ".join(f"{job} {n}" for job, n in summary["failures"].items()) or "none"
    out.print(f"worker ran from {summary['started']} to {summary['stopped']}: runs {runs}; failures {failures}", highlight=False)
    if summary["last_failure"]:
        out.print(f"last failure ({summary['last_failure']['job']}): {summary['last_failure']['error']}", highlight=False)


@cli.command()
def status(
    check: bool = typer.Option(False, "--check", help="exit 1 when anything is overdue or in the future (health checks, cron)"),
    seconds: Optional[int] = typer.Option(None, "--allowance", min=0, max=MAX_FUTURE_ALLOWANCE,
                                          help="seconds past now that a recorded instant may lie "
                                               "(default LEDGER_FUTURE_ALLOWANCE_SECONDS, else 60: T4's allowance)"),
    as_json: bool = typer.Option(False, "--json", help="machine output"),
) -> None:
    """The scheduled jobs: what is due, overdue, or in the future.

    The last hour charged, the last sweep, anything overdue (beyond a 2-minute grace), and any
    recorded instant later than now plus the allowance (T4, LEDGER_FUTURE_ALLOWANCE_SECONDS).
    --check: exit 1 on either."""
    from workers.status import job_status

    allowance = future_allowance() if seconds is None else timedelta(seconds=seconds)
    with opened(read_only=True) as app:
        report = job_status(app, utcnow(), allowance=allowance)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print_status(report)
    if check and not report["ok"]:
        raise typer.Exit(1)


def print_status(report: dict[str, Any]) -> None:
    interest, sweep = report["interest"], report["sweep"]
    last = interest["last_hour"] or "never"
    ran = f" (last run {interest['last_run_at']})" if interest["last_run_at"] else ""
    if not interest["indebted_accounts"]:
        owed = "no account owes interest"
    elif interest["accounts_due"]:
        owed = f"{interest['accounts_due']} indebted account(s) owe the hour {interest['current_hour']}, not charged yet"
    else:
        owed = f"{interest['indebted_accounts']} indebted account(s), charged through the current hour"
    out.print(f"interest: last hour charged {last}{ran}; {owed}", highlight=False)
    ran = f" (run at {sweep['last_run_at']})" if sweep["last_run_at"] else ""
    out.print(f"sweep: last mark swept {sweep['last_mark'] or 'never'}{ran}; current mark {sweep['current_mark']}", highlight=False)
    for item in report["overdue"]:
        out.print(f"[red]overdue[/red]: {item}", highlight=False)
    for item in report["future"]:
        out.print(f"[red]future[/red]: {item}", highlight=False)
    if report["ok"]:
        out.print("nothing overdue, nothing in the future", highlight=False)


# --- projections and reports ----------------------------------------------------------------------
@contextmanager
def views_of(app: LedgerApp, read_only: bool = False) -> Iterator[Any]:
    """The read models' connection to the same store (read-only for readers, as ``opened``)."""
    from projections.sql import ViewDatabase

    try:
        db = ViewDatabase(persistence_env(State.db_url, read_only))
    except Exception as error:  # noqa: BLE001 - the driver's own error: one line
        fail(f"cannot open the store {redact(State.db_url)}: {str(error) or type(error).__name__}")
    try:
        yield db
    finally:
        db.close()


def say_view_lag(app: LedgerApp, db: Any, consequence: str) -> int:
    """Tell people (standard error) how far the read models are behind the log; return the
    views' position.  Views never built are a usage error for a report (exit 2)."""
    from projections import runner

    if not runner.built(db):
        fail("the read models have not been built in this store: `ledger projections run` or the worker builds them")
    position, head = runner.position(db), app.recorder.max_notification_id() or 0
    if head > position:
        note(f"the read models are {events(head - position)} behind the log (at position {position} of {head}): "
             f"{consequence}; `ledger projections run` or the worker catches them up")
    return position


def say_unsealed(app: LedgerApp, db: Any) -> None:
    from projections import audit

    count = audit.unsealed(app, db)
    if count:
        note(f"not sealed into the hash chain yet: {events(count)} after position {audit.head(db)[0]}; "
             "`ledger audit seal` or the worker links them")


def catch_up(app: LedgerApp, db: Any, quiet: bool) -> int:
    from projections import runner

    return with_progress("projecting events", quiet, lambda progress: runner.run(app, db, progress=progress))


@projections_cli.command("run")
def projections_run(
    follow: bool = typer.Option(False, "--follow", help="keep the views current until SIGTERM/SIGINT"),
    every: float = typer.Option(2.0, "--every", help="seconds between polls with --follow"),
    as_json: bool = typer.Option(False, "--json", help='machine output at the end: {"events"}'),
) -> None:
    """Bring every view up to the end of the event log (exactly once per event)."""
    import signal
    import threading

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    with opened() as app, views_of(app) as db:
        from projections import runner

        applied = catch_up(app, db, quiet=follow or as_json)
        while follow and not stopping.wait(every):
            applied += runner.run(app, db, stop=stopping.is_set)
    if as_json:
        print(json.dumps({"events": applied}))
    else:
        print(f"projected {applied} events", file=sys.stderr)


@projections_cli.command("rebuild")
def projections_rebuild(as_json: bool = typer.Option(False, "--json", help='machine output: {"events"}')) -> None:
    """Drop every view and replay the whole event log."""
    from projections import views

    with opened() as app, views_of(app) as db:
        views.drop(db)
        applied = catch_up(app, db, quiet=as_json)
    if as_json:
        print(json.dumps({"events": applied}))
    else:
        out.print(f"rebuilt the views from {applied} events", highlight=False)


@projections_cli.command("status")
def projections_status(as_json: bool = typer.Option(False, "--json", help="machine output")) -> None:
    """Each view's position in the event log and its lag."""
    from projections import runner

    with opened(read_only=True) as app, views_of(app, read_only=True) as db:
        rows = [{"view": s.view, "position": s.position, "head": s.head, "lag": s.lag} for s in runner.status(app, db)]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    show(out, ["view", "position", "head", "lag"], [[r["view"], r["position"], r["head"], r["lag"]] for r in rows])


@cli.command()
def report(
    kind: str = typer.Argument(..., metavar="interest|repayments|liquidations|borrowers|mode-switches"),
    since: Optional[str] = typer.Option(None, "--since", help="from this instant (inclusive)"),
    until: Optional[str] = typer.Option(None, "--until", help="to this instant (inclusive)"),
    account: Optional[str] = typer.Option(None, "--account", help="one account only"),
    currency: Optional[str] = typer.Option(None, "--currency", help="one currency only"),
    fmt_: str = typer.Option("table", "--format", help="table | csv | json"),
) -> None:
    """Compliance reports from the read models, as far as they are built (a lag is said on
    standard error): one row per fact.  Reads only; the worker or `projections run` builds them."""
    import csv

    from projections import reports

    if kind not in reports.REPORTS:
        fail(f"unknown report {kind!r}: use one of {', '.join(reports.REPORTS)}")
    if fmt_ not in ("table", "csv", "json"):
        fail(f"unknown format {fmt_!r}: use table, csv or json")
    start, end = parse_time(since, "--since"), parse_time(until, "--until")
    with opened(read_only=True) as app, views_of(app, read_only=True) as db:
        say_view_lag(app, db, "this report leaves them out")
        rows = reports.rows(app, db, kind, since=start, until=end, account=account, currency=currency)
    shown = [plain(r) for r in rows]
    if fmt_ == "json":
        print(json.dumps(shown, indent=2))
    elif fmt_ == "csv":
        columns = list(shown[0]) if shown else list(reports.REPORTS[kind].columns)
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(shown)
    else:
        columns = list(shown[0]) if shown else list(reports.REPORTS[kind].columns)
        show(out, columns, [[r[c] for c in columns] for r in shown], title=f"{kind} ({len(shown)} rows)")
        for currency_, sums in reports.totals(kind, rows).items():
            if sums:
                out.print(f"total {currency_}: " + ", ".join(f"{k} {fmt(v)}" for k, v in sorted(sums.items())))


# --- audit ----------------------------------------------------------------------------------------
@audit_cli.command("seal")
def audit_seal(as_json: bool = typer.Option(False, "--json", help='machine output: {"sealed", "head"}')) -> None:
    """Link every event not yet in the hash chain."""
    from projections import audit

    with opened() as app, views_of(app) as db:
        sealed = audit.seal(app, db)
        head = audit.digest(db)
    print(json.dumps({"sealed": sealed, "head": head}) if as_json else f"sealed {sealed} events; head {head}")


@audit_cli.command("digest")
def audit_digest(as_json: bool = typer.Option(False, "--json", help='machine output: {"head", "position", "link"}')) -> None:
    """Print the chain's head (position:link) for an auditor to keep.  Reads only: events not
    sealed yet are said on standard error."""
    from projections import audit

    with opened(read_only=True) as app, views_of(app, read_only=True) as db:
        head = audit.digest(db)
        position, _, link = head.partition(":")
        print(json.dumps({"head": head, "position": int(position), "link": link}) if as_json else head)
        say_unsealed(app, db)


@audit_cli.command("verify")
def audit_verify(
    digest: Optional[str] = typer.Option(None, "--digest", help="a head kept earlier: prove the log up to it unchanged"),
    as_json: bool = typer.Option(False, "--json", help="machine output (docs/spec.md §14)"),
) -> None:
    """Tamper, version, time (T1), replay, double-entry, read-model and interest checks; exit 1
    on any finding.  Reads only: nothing is sealed or projected first."""
    import re

    from projections import audit

    if digest is not None and not re.fullmatch(r"[0-9]+:[0-9a-f]{64}", digest):
        fail(f"--digest: {digest!r} is not POSITION:LINK as `ledger audit digest` prints it")

    with opened(read_only=True) as app, views_of(app, read_only=True) as db:
        result = with_progress("verifying", as_json, lambda progress: audit.verify(app, db, digest, progress))
    if as_json:
        print(json.dumps({"ok": result.ok, "events_checked": result.events_checked, "findings": plain(result.findings),
                          "unsealed": result.unsealed, "views": {"position": result.view_position, "lag": result.view_lag}},
                         indent=2))
    else:
        for finding in result.findings:
            out.print(f"[red]{finding['kind']}[/red]: {finding['detail']}", highlight=False)
        out.print(f"{result.events_checked} events checked: " + ("no findings" if result.ok else f"{len(result.findings)} findings"))
        if result.unsealed:
            note(f"not sealed yet: {events(result.unsealed)} at the end of the log, which the chain does not cover; "
                 "`ledger audit seal` or the worker links them")
        if not result.view_position:
            note("the read models have not been built: they were not checked")
        elif result.view_lag:
            note(f"the read models are {events(result.view_lag)} behind the log: they were checked at their "
                 f"position {result.view_position}")
    raise typer.Exit(0 if result.ok else 1)


@audit_cli.command("replay")
def audit_replay(
    as_of: str = typer.Option(..., "--as-of", help="RFC 3339 instant"),
    as_json: bool = typer.Option(False, "--json", help="machine output"),
) -> None:
    """Every account's state at instant T, from the events alone."""
    at = parse_time(as_of, "--as-of")
    with opened(read_only=True) as app:
        platform = app.platform_at(at)
        views = []
        for account in app.account_ids():
            acct = app.state_at(ids.account(account), at)
            if acct is not None:
                views.append(account_view(acct, platform, lambda c: app.platform_owed(c, at)))
    if as_json:
        print(json.dumps({"as_of": rfc3339(at), "accounts": views}, indent=2))
        return
    for view in views:
        print_account(view)


@audit_cli.command("export")
def audit_export(
    since: Optional[str] = typer.Option(None, "--since", help="events at or after this instant"),
    until: Optional[str] = typer.Option(None, "--until", help="events at or before this instant"),
    fmt_: str = typer.Option("jsonl", "--format", help="jsonl | csv"),
) -> None:
    """Events with their chain links, to verify a period offline (docs/audit.md)."""
    import csv

    from projections import audit

    if fmt_ not in ("jsonl", "csv"):
        fail(f"unknown format {fmt_!r}: use jsonl or csv")
    start, end = parse_time(since, "--since"), parse_time(until, "--until")
    with opened(read_only=True) as app, views_of(app, read_only=True) as db:
        rows = audit.export(app, db, start, end)
        say_unsealed(app, db)
    if fmt_ == "jsonl":
        for row in rows:
            print(json.dumps(row))
        return
    writer = csv.DictWriter(sys.stdout, fieldnames=["position", "aggregate", "version", "topic", "state", "previous_link", "link"],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


@cli.command()
def demo(db: str = typer.Option("sqlite:///ledger-demo.db", "--db", help="where the demo writes; it starts afresh")) -> None:
    """A self-contained tour on the embedded SQLite store."""
    from entrypoints.demo import run

    run(db, out, opened)


def entry() -> None:
    cli()
