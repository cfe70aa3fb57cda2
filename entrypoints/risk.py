"""`ledger risk stress` (§17): the sweep's rules on copies of the state with the marks moved."""
from __future__ import annotations

import sys
from typing import List, Optional

import typer

from entrypoints import people
from entrypoints.session import Session, commands, fail, parse_time, with_progress

risk_cli = commands("Risk scenarios (§17): what the sweep would do if marks moved.")
FORMATS = ("table", "json", "html")


@risk_cli.command("stress")
def stress(
    ctx: typer.Context,
    shock: List[str] = typer.Option([], "--shock", help="CUR=P%, e.g. BTC=-30% (repeat for several currencies)"),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="the state at this instant (default now)"),
    as_json: bool = typer.Option(False, "--json", help="machine output (docs/spec.md §17)"),
    fmt_: str = typer.Option("table", "--format", help="table | json | html (a page with the risk-ratio charts)"),
) -> None:
    """What the 5-minute sweep (L1-L4) would do if the marks moved by the shocks: per account
    the risk ratio before and after, liquidation, forced repayments, bad debt; the totals and
    the insurance fund after.  Reads only: nothing is recorded."""
    from entrypoints import machine
    from ledger.domain.errors import LedgerError
    from workers.stress import parse_shocks, run_stress

    session: Session = ctx.obj
    if fmt_ not in FORMATS:
        fail(f"validation_error: no format {fmt_!r}: use {', '.join(FORMATS)}")
    as_json = as_json or fmt_ == "json"
    try:
        shocks = parse_shocks(shock)
    except LedgerError as error:
        fail(f"{error.code}: {error.message}")
    at = session.run_time(as_of, "--as-of")
    quiet = as_json or fmt_ == "html" or not sys.stderr.isatty()
    with session.opened(read_only=True) as app:
        try:
            run = with_progress("stress", quiet, lambda progress: run_stress(
                app, shocks, at, as_of=at if as_of else None, progress=progress))
        except LedgerError as error:
            fail(f"{error.code}: {error.message}")
    shown = machine.stress_run(run)
    if fmt_ == "html":
        from projections import pages

        sys.stdout.write(pages.stress_page(shown))
    else:
        session.answer(shown, as_json, lambda out, value: people.stress_run(out, value, run.accounts))
