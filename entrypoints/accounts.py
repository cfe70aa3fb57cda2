"""`ledger apply`, `account show|list` and `history`: commands in, the accounts out."""
from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from typing import Any, Iterator, Optional

import typer

from entrypoints import lines, people
from entrypoints.session import Session, commands, fail, parse_time
from ledger.domain import ids
from ledger.domain.errors import LedgerError
from ledger.service import jsonlines
from workers.gc_tuning import fewer_collections

top = commands()  # apply, history: merged into the root
account_cli = commands("Accounts: show one, list all.")


# --- apply -----------------------------------------------------------------------------------------
def read_batches(source: str, size: int) -> Iterator[lines.Numbered]:
    """The input's non-blank lines as bytes, numbered, in batches (``entrypoints.lines``: a
    pipe's are answered as soon as it pauses).  Each is decoded on its own
    (``ledger.service.jsonlines``), so a line that is not UTF-8 costs only its own result."""
    try:
        with nullcontext(sys.stdin.buffer) if source == "-" else open(source, "rb") as stream:
            yield from lines.batches(stream, size)
    except OSError as error:
        fail(f"cannot read {'standard input' if source == '-' else source}: {error}")


def decode(line: bytes) -> Any:
    """One line's JSON value, or the ``validation_error`` it earns (§12)."""
    try:
        return jsonlines.decode(line)
    except LedgerError as error:
        return error


def write(results: list[Any]) -> None:
    """Results are plain data already (ledger.read.render): one write per batch."""
    sys.stdout.write("".join(json.dumps(result, separators=(",", ":")) + "\n" for result in results))
    sys.stdout.flush()


@top.command()
def apply(ctx: typer.Context,
          source: str = typer.Argument("-", metavar="[FILE|-]", help="JSON Lines commands; - is standard input")) -> None:
    """Apply JSON Lines commands (docs/spec.md §12); print one JSON result per line.  Exit 0 all ok, 1 any rejected, 2 unusable input."""
    from ledger.adapters.retry import StoreUnavailable
    from ledger.service import app as application

    session: Session = ctx.obj
    any_rejected = False
    latest = session.latest_clock()
    with session.opened() as app, fewer_collections():
        for numbered in read_batches(source, application.BATCH_SIZE):
            numbers = [number for number, _ in numbered]  # the input line number of each command
            batch = [decode(line) for _, line in numbered]
            try:
                results = app.apply(batch, session.clock, latest)
            except StoreUnavailable as error:
                write(error.done)
                start = numbers[len(error.done)]
                fate = (f"those up to line {numbers[-1]} may or may not have been applied, the rest were not"
                        if error.in_doubt else "none of them was applied")
                fail(f"{error}; the commands from input line {start} on have no result: {fate} "
                     "(a command with a command_id is applied once however often it is sent)")
            any_rejected |= not all(result["ok"] for result in results)
            write(results)
    raise typer.Exit(1 if any_rejected else 0)


# --- accounts --------------------------------------------------------------------------------------
@account_cli.command("show")
def account_show(
    ctx: typer.Context,
    account: str,
    as_of: Optional[str] = typer.Option(None, "--as-of", help="RFC 3339 instant: the state then"),
    as_json: bool = typer.Option(False, "--json", help="machine output (docs/spec.md §14)"),
) -> None:
    """Mode, wallets, balances, positions, open orders and margin of one account."""
    from entrypoints import machine

    session: Session = ctx.obj
    at = parse_time(as_of, "--as-of")
    with session.opened(read_only=True) as app:
        try:
            acct = app.state_at(ids.account(account), at) if at else app.account(account)
            if acct is None:
                raise LedgerError("unknown_account", f"no account {account} at {as_of}")
        except LedgerError as error:
            fail(error.message, 1)
        view = machine.account_at(app, acct, at)
    session.answer(view, as_json, people.account)


@account_cli.command("list")
def account_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="machine output")) -> None:
    """Every account with its mode and totals."""
    from entrypoints import machine

    session: Session = ctx.obj
    with session.opened(read_only=True) as app:
        rows = machine.account_rows(app)
    session.answer(rows, as_json, people.accounts)


@top.command()
def history(
    ctx: typer.Context,
    account: str,
    since: Optional[str] = typer.Option(None, "--since", help="only events at or after this instant"),
    until: Optional[str] = typer.Option(None, "--until", help="only events at or before this instant"),
    type_: Optional[str] = typer.Option(None, "--type", help="only events of this name, e.g. Borrowed"),
    as_json: bool = typer.Option(False, "--json", help="machine output (docs/spec.md §14)"),
) -> None:
    """The account's events in order."""
    from entrypoints import machine
    from ledger.service.history import Only, account_history

    session: Session = ctx.obj
    only = Only(parse_time(since, "--since"), parse_time(until, "--until"), type_)
    with session.opened(read_only=True) as app:
        try:
            events = account_history(app, account, only)
        except LedgerError as error:
            fail(error.message, 1)
    session.answer(machine.history_rows(account, events), as_json, people.history)
