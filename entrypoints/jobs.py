"""The scheduled jobs: `interest run`, `repayment run`, `worker`, `status`."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable, Iterator, Optional

import typer

from entrypoints import people
from entrypoints.session import Session, commands, with_progress
from ledger.domain.horizon import MAX_FUTURE_ALLOWANCE

top = commands()  # worker, status: merged into the root
interest_cli = commands("Hourly interest (I1-I6).")
repayment_cli = commands("The 5-minute forced-repayment sweep (L1-L4).")


def ran(session: Session, at: Optional[str], option: str, label: str, quiet: bool,
        job: Callable[..., Any]) -> tuple[datetime, Any]:
    """``job(app, T, progress=...)`` for the instant T that ``at`` asks for (default now, never
    from the future: T4), with a progress bar for people unless ``quiet``."""
    run_at = session.run_time(at, option)
    with session.opened() as app:
        return run_at, with_progress(label, quiet, lambda progress: job(app, run_at, progress=progress))


def spend(items: Iterator[Any]) -> None:
    for _ in items:
        pass


@interest_cli.command("run")
def interest_run(
    ctx: typer.Context,
    hour: Optional[str] = typer.Option(None, "--hour", help="run as if at this instant (default now)"),
    as_json: bool = typer.Option(False, "--json", help="machine output (docs/spec.md §14)"),
) -> None:
    """Charge every hour ≤ T not yet charged, exactly once; the events carry at = T."""
    from entrypoints import machine
    from entrypoints.session import emit_streamed
    from workers.interest import InterestRun

    session: Session = ctx.obj
    run_at = session.run_time(hour, "--hour")
    run = InterestRun(run_at)
    with session.opened() as app:
        if as_json:  # each charge written once its batch is committed, none held
            emit_streamed(machine.interest_run(run, session.root.interest_charges(app, run)))
        else:
            with_progress("charging interest", False, lambda progress: spend(session.root.interest_charges(app, run, progress=progress)))
    if not as_json:
        people.interest_run(session.out, run)


@repayment_cli.command("run")
def repayment_run(
    ctx: typer.Context,
    at: Optional[str] = typer.Option(None, "--at", help="sweep the last 5-minute mark at or before this instant (default now)"),
    as_json: bool = typer.Option(False, "--json", help="machine output (docs/spec.md §14)"),
) -> None:
    """Sweep the last 5-minute mark ≤ T once: forced repayment (quota, platform), liquidation, alerts."""
    from entrypoints import machine

    session: Session = ctx.obj
    run_at, run = ran(session, at, "--at", "sweeping", as_json, session.root.run_sweep)
    session.answer(machine.sweep_run(run_at, run), as_json, lambda out, shown: people.sweep_run(out, shown, run.accounts))


@top.command()
def worker(ctx: typer.Context,
           publish: bool = typer.Option(False, "--publish", help="also relay every event to NATS, as `ledger publish` "
                                                                 "does (to LEDGER_NATS_URL)"),
           stream: str = typer.Option("LEDGER_EVENTS", "--publish-stream", help="with --publish: the stream"),
           prefix: str = typer.Option("ledger.events", "--events-prefix", help="with --publish: the subjects' prefix"),
           as_json: bool = typer.Option(False, "--json", help="the summary at exit as JSON (log lines are JSON always)"),
           consume: bool = typer.Option(False, "--consume", help="also run `ledger consume` with its defaults "
                                                                 "(LEDGER_NATS_URL)")) -> None:
    """Long-running scheduler: hourly interest, the 5-minute sweep, the read models.

    Interest at :00, the sweep every 5 minutes, the read models every few seconds; stops
    cleanly on SIGTERM/SIGINT.  Logs: one JSON object per line on standard error; a store it
    cannot open is one error line and exit 2."""
    from entrypoints.compose import Root
    from ledger.adapters.settings import SettingsError
    from workers.scheduler import refused_setting, setup_logging

    session: Session = ctx.obj
    setup_logging()
    try:
        root = Root.load(database_url=session.db_url)
    except SettingsError as error:
        refused_setting(error)
        raise typer.Exit(2)
    summary = root.serve(publish={"stream": stream, "prefix": prefix} if publish else None, consume=consume)
    if summary is None:
        raise typer.Exit(2)
    session.answer(summary, as_json, people.worker_summary)
    if summary["failures"].get("publish"):
        raise typer.Exit(2)


@top.command()
def status(
    ctx: typer.Context,
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

    session: Session = ctx.obj
    allowance = session.root.settings.future_allowance if seconds is None else timedelta(seconds=seconds)
    with session.opened(read_only=True) as app:
        report = job_status(app, session.clock(), allowance=allowance)
    session.answer(report, as_json, people.status)
    if check and not report["ok"]:
        raise typer.Exit(1)
