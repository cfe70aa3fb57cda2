"""The read models and what is read from them: `projections run|rebuild|status`, `report`."""
from __future__ import annotations

import sys
from typing import Any, Optional

import typer

from entrypoints import people
from entrypoints.session import Session, commands, emit, events, fail, note, parse_time, with_progress

top = commands()  # report: merged into the root
projections_cli = commands("Read models: run, rebuild, status.")


def say_view_lag(app: Any, db: Any, consequence: str) -> int:
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


def catch_up(session: Session, app: Any, db: Any, quiet: bool) -> int:
    return with_progress("projecting events", quiet, lambda progress: session.root.project(app, db, progress=progress))


@projections_cli.command("run")
def projections_run(
    ctx: typer.Context,
    follow: bool = typer.Option(False, "--follow", help="keep the views current until SIGTERM/SIGINT"),
    every: float = typer.Option(2.0, "--every", help="seconds between polls with --follow"),
    as_json: bool = typer.Option(False, "--json", help='machine output at the end: {"events"}'),
) -> None:
    """Bring every view up to the end of the event log (exactly once per event)."""
    import json
    import signal
    import threading

    session: Session = ctx.obj
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    with session.opened() as app, session.views() as db:
        applied = catch_up(session, app, db, quiet=follow or as_json)
        while follow and not stopping.wait(every):
            applied += session.root.project(app, db, stop=stopping.is_set)
    if as_json:
        print(json.dumps({"events": applied}))
    else:
        print(f"projected {applied} events", file=sys.stderr)


@projections_cli.command("rebuild")
def projections_rebuild(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help='machine output: {"events"}')) -> None:
    """Drop every view and replay the whole event log."""
    import json

    from projections import views

    session: Session = ctx.obj
    with session.opened() as app, session.views() as db:
        views.drop(db)
        applied = catch_up(session, app, db, quiet=as_json)
    if as_json:
        print(json.dumps({"events": applied}))
    else:
        session.out.print(f"rebuilt the views from {applied} events", highlight=False)


@projections_cli.command("status")
def projections_status(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="machine output")) -> None:
    """Each view's position in the event log and its lag."""
    from entrypoints import machine

    session: Session = ctx.obj
    with session.opened(read_only=True) as app, session.views(read_only=True) as db:
        rows = machine.view_status(app, db)
    session.answer(rows, as_json, people.view_status)


@top.command()
def report(
    ctx: typer.Context,
    kind: str = typer.Argument(..., metavar="interest|repayments|liquidations|borrowers|mode-switches|over-limits|"
                                            "forced-swaps|alerts|movements|summary"),
    since: Optional[str] = typer.Option(None, "--since", help="from this instant (inclusive; reports of facts)"),
    until: Optional[str] = typer.Option(None, "--until", help="to this instant (inclusive; reports of facts)"),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="the state at this instant (borrowers, over-limits)"),
    account: Optional[str] = typer.Option(None, "--account", help="one account only"),
    currency: Optional[str] = typer.Option(None, "--currency", help="one currency only"),
    by: str = typer.Option("month", "--by", help="summary: day | month"),
    group_by: str = typer.Option("currency", "--group-by", help="summary: account | currency | source"),
    fmt_: str = typer.Option("table", "--format", help="table | csv | json | html"),
) -> None:
    """Compliance reports: one row per fact (from the read models, as far as they are built: a
    lag is said on standard error), per breach (over-limits) or per total (summary).  A period
    option a report cannot take is refused, never ignored.  Reads only."""
    from ledger.domain.errors import LedgerError
    from projections import reports

    session: Session = ctx.obj
    if kind not in reports.REPORTS:
        fail(f"unknown_report: no report {kind!r}: use one of {', '.join(reports.REPORTS)}")
    if fmt_ not in FORMATS:
        fail(f"unknown_report: no format {fmt_!r}: use {', '.join(FORMATS)}")
    start, end, at = parse_time(since, "--since"), parse_time(until, "--until"), parse_time(as_of, "--as-of")
    try:
        reports.check_period(kind, start, end, at)
        with session.opened(read_only=True) as app, session.views(read_only=True) as db:
            if not reports.from_events(kind, at):
                say_view_lag(app, db, "this report leaves them out")
            rows = reports.rows(app, db, kind, since=start, until=end, as_of=at, account=account, currency=currency,
                                by=by, group_by=group_by)
    except LedgerError as error:
        fail(f"{error.code}: {error.message}")
    if not rows:
        period = "" if not (start or end or at) else " in the period asked for" if not at else f" at {as_of}"
        note(f"no rows{period}: nothing to report")
    show_report(session, kind, rows, fmt_)


FORMATS = ("table", "csv", "json", "html")


def show_report(session: Session, kind: str, rows: list[dict[str, Any]], fmt_: str) -> None:
    import csv

    from ledger.read.render import plain
    from projections import reports

    shown = [plain(r) for r in rows]
    columns = list(shown[0]) if shown else list(reports.REPORTS[kind].columns)
    if fmt_ == "json":
        emit(shown)
    elif fmt_ == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows([{c: people.csv_cell(c, v) for c, v in r.items()} for r in shown])
    elif fmt_ == "html":
        from projections import pages

        sys.stdout.write(pages.page(kind, columns, shown, reports.totals(kind, rows)))
    else:
        people.report(session.out, kind, columns, shown, reports.totals(kind, rows))
