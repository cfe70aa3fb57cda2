"""The audit (docs/audit.md): `audit seal|digest|verify|replay|export`."""
from __future__ import annotations

import json
import sys
from typing import Any, Optional

import typer

from entrypoints import people
from entrypoints.session import Session, commands, emit, events, fail, note, parse_time, with_progress

audit_cli = commands("Audit: seal, digest, verify, replay, export, trial-balance, keygen.")


def say_unsealed(app: Any, db: Any) -> None:
    from projections import audit

    count = audit.unsealed(app, db)
    if count:
        note(f"not sealed into the hash chain yet: {events(count)} after position {audit.head(db)[0]}; "
             "`ledger audit seal` or the worker links them")


@audit_cli.command("seal")
def audit_seal(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help='machine output: {"sealed", "head"}')) -> None:
    """Link every event not yet in the hash chain."""
    from projections import audit

    session: Session = ctx.obj
    with session.opened() as app, session.views() as db:
        sealed = audit.seal(app, db)
        head = audit.digest(db)
    print(json.dumps({"sealed": sealed, "head": head}) if as_json else f"sealed {sealed} events; head {head}")


@audit_cli.command("digest")
def audit_digest(ctx: typer.Context,
                 as_json: bool = typer.Option(False, "--json", help='machine output: {"head", "position", "link"}')) -> None:
    """Print the chain's head (position:link) for an auditor to keep.  Reads only: events not
    sealed yet are said on standard error."""
    from projections import audit

    session: Session = ctx.obj
    with session.opened(read_only=True) as app, session.views(read_only=True) as db:
        head = audit.digest(db)
        position, _, link = head.partition(":")
        print(json.dumps({"head": head, "position": int(position), "link": link}) if as_json else head)
        say_unsealed(app, db)


@audit_cli.command("verify")
def audit_verify(
    ctx: typer.Context,
    digest: Optional[str] = typer.Option(None, "--digest", help="a head kept earlier: prove the log up to it unchanged"),
    as_json: bool = typer.Option(False, "--json", help="machine output (docs/spec.md §14)"),
) -> None:
    """Tamper, version, time (T1), replay, double-entry, read-model and interest checks; exit 1
    on any finding.  Reads only: nothing is sealed or projected first."""
    import re

    from entrypoints import machine
    from projections import audit

    session: Session = ctx.obj
    if digest is not None and not re.fullmatch(r"[0-9]+:[0-9a-f]{64}", digest):
        fail(f"--digest: {digest!r} is not POSITION:LINK as `ledger audit digest` prints it")

    with session.opened(read_only=True) as app, session.views(read_only=True) as db:
        result = with_progress("verifying", as_json, lambda progress: audit.verify(app, db, digest, progress))
    if as_json:
        emit(machine.verified(result))
    else:
        people.findings(session.out, result.findings, result.events_checked, result.ok)
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
    ctx: typer.Context,
    as_of: str = typer.Option(..., "--as-of", help="RFC 3339 instant"),
    as_json: bool = typer.Option(False, "--json", help="machine output"),
) -> None:
    """Every account's state at instant T, from the events alone."""
    from entrypoints import machine
    from ledger.read.render import rfc3339

    session: Session = ctx.obj
    at = parse_time(as_of, "--as-of")
    assert at is not None  # the option is required
    with session.opened(read_only=True) as app:
        views = machine.accounts_at(app, at)
    if not views:
        note(f"no account existed at {rfc3339(at)}: it is before the first account was opened")
    session.answer({"as_of": rfc3339(at), "accounts": views}, as_json, people.replay)


@audit_cli.command("export")
def audit_export(
    ctx: typer.Context,
    since: Optional[str] = typer.Option(None, "--since", help="events at or after this instant"),
    until: Optional[str] = typer.Option(None, "--until", help="events at or before this instant"),
    fmt_: str = typer.Option("jsonl", "--format", help="jsonl | csv"),
) -> None:
    """Events with their chain links, to verify a period offline (docs/audit.md)."""
    import csv

    from projections import audit

    session: Session = ctx.obj
    if fmt_ not in ("jsonl", "csv"):
        fail(f"unknown format {fmt_!r}: use jsonl or csv")
    start, end = parse_time(since, "--since"), parse_time(until, "--until")
    with session.opened(read_only=True) as app, session.views(read_only=True) as db:
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


@audit_cli.command("trial-balance")
def audit_trial_balance(
    ctx: typer.Context,
    as_of: Optional[str] = typer.Option(None, "--as-of", help="the books at this instant (default: now)"),
    as_json: bool = typer.Option(False, "--json", help='machine output: {"as_of", "books": [{"book", "currency", "balance"}]}'),
) -> None:
    """Every book's balance per currency (§10), from the events alone; per currency they sum to
    zero (exit 1 if not)."""
    from ledger.read.render import plain
    from ledger.domain.times import rfc3339
    from projections import audit

    session: Session = ctx.obj
    at = parse_time(as_of, "--as-of")
    with session.opened(read_only=True) as app:
        books = audit.trial_balance(app, at)
    off = audit.out_of_balance(books)
    shown = {"as_of": rfc3339(at or session.clock()), "books": plain(books)}
    if not books:
        note(f"no event moved any value {'by ' + shown['as_of'] if at else 'yet'}: every book is zero")
    session.answer(shown, as_json, people.trial_balance)
    for currency, total in sorted(off.items()):
        note(f"the {currency} books sum to {total}, not 0 (D1)")
    raise typer.Exit(1 if off else 0)
