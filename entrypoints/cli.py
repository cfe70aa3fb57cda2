"""The `ledger` command line (docs/spec.md §13): the root command and its groups.

The commands only translate: parse the options, call the application or a job through the
composition root (entrypoints.compose, from the settings), print.  They live by group in
entrypoints.accounts, .jobs, .readmodels and .audits; their output for people is drawn by
entrypoints.people, their machine output (--json) assembled by entrypoints.machine.  Each
run's store URL and clock travel in Typer's context object (entrypoints.session.Session).

Start-up time: `ledger --version`, `--help` and shell completion import no domain, store,
pydantic or Rich module; a command imports what it uses when it runs.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import typer
from typer.core import TyperGroup

from entrypoints import accounts, audits, jobs, publishing, readmodels, risk, serving
from entrypoints.session import PLAIN, Session, commands
from ledger.adapters.store import DEFAULT_URL
from entrypoints import consuming  # ledger consume (§18)


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


def utcnow() -> datetime:
    """The command line's clock (tests set another)."""
    return datetime.now(timezone.utc)


def show_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"ledger {version('uta-ledger')}")
        except PackageNotFoundError:
            print("ledger (not installed: no version)")
        raise typer.Exit(0)


tour = commands()


@tour.command()
def demo(ctx: typer.Context,
         db: str = typer.Option("sqlite:///ledger-demo.db", "--db", help="where the demo writes; it starts afresh")) -> None:
    """A self-contained tour on the embedded SQLite store."""
    from entrypoints.demo import run

    session: Session = ctx.obj
    run(Session(db, session.clock), session.out)


cli = typer.Typer(cls=Commands, help="An event-sourced ledger for Unified Trading Accounts.", **PLAIN)
for merged in (accounts.top, jobs.top, readmodels.top, serving.top, publishing.top, tour):  # apply, history, worker, status, report, serve, publish, demo
    cli.add_typer(merged)
cli.add_typer(accounts.account_cli, name="account")
cli.add_typer(jobs.interest_cli, name="interest")
cli.add_typer(jobs.repayment_cli, name="repayment")
cli.add_typer(readmodels.projections_cli, name="projections")
cli.add_typer(audits.audit_cli, name="audit")
cli.add_typer(serving.token_cli, name="token")
cli.add_typer(risk.risk_cli, name="risk")
cli.add_typer(consuming.top)  # consume


@cli.callback()
def main(
    ctx: typer.Context,
    db: str = typer.Option(DEFAULT_URL, "--db", envvar="LEDGER_DATABASE_URL",
                           help="sqlite:///path or postgresql://user:pass@host:port/db; before or after the command"),
    version: bool = typer.Option(False, "--version", callback=show_version, is_eager=True, help="the installed version"),
) -> None:
    ctx.obj = Session(db, utcnow)


def entry() -> None:
    cli()
