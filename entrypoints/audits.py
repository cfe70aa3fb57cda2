"""The audit (docs/audit.md): `audit seal|digest|verify|replay|export|trial-balance|keygen|liabilities|liabilities-verify`."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from entrypoints import people
from entrypoints.session import Session, commands, emit, events, fail, note, parse_time, with_progress

audit_cli = commands("Audit: seal, digest, verify, replay, export, trial-balance, keygen, liabilities, liabilities-verify.")


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
                 as_json: bool = typer.Option(False, "--json", help='machine output: {"head", "position", "link"}'),
                 sign: Optional[Path] = typer.Option(None, "--sign", help="an Ed25519 private key (PEM, `audit keygen`): "
                                                     "print the signed digest (JSON) to keep")) -> None:
    """Print the chain's head (position:link) for an auditor to keep; with --sign, the head
    and the instant signed with an Ed25519 key.  Reads only: events not sealed yet are said
    on standard error."""
    from ledger.domain.times import rfc3339
    from projections import audit, signing

    session: Session = ctx.obj
    key = read_file(sign, "--sign") if sign else None
    with session.opened(read_only=True) as app, session.views(read_only=True) as db:
        head = audit.digest(db)
        position, _, link = head.partition(":")
        if key is not None:
            try:
                emit(signing.sign(head, rfc3339(session.clock()), key))
            except signing.SigningError as error:
                fail(f"--sign: {error}")
        else:
            print(json.dumps({"head": head, "position": int(position), "link": link}) if as_json else head)
        say_unsealed(app, db)


def read_file(path: Path, option: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        fail(f"{option}: cannot read {path}: {error.strerror or error}")


@audit_cli.command("keygen")
def audit_keygen(
    private: Path = typer.Option(Path("ledger-audit.key"), "--private-key", help="where the private key goes (PEM)"),
    public: Path = typer.Option(Path("ledger-audit.pub"), "--public-key", help="where the public key goes (PEM)"),
) -> None:
    """A new Ed25519 key pair for signing digests: the private key (readable by its owner
    only) stays with whoever signs, the public key goes to the auditors.  Never overwrites."""
    import os

    from projections import signing

    for path in (private, public):
        if path.exists():
            fail(f"{path} exists: keygen never overwrites a key")
    private_pem, public_pem = signing.keygen()
    try:
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(private_pem)
        public.write_bytes(public_pem)
    except OSError as error:
        fail(f"cannot write the keys: {error.strerror or error}")
    print(f"private key {private} (keep it secret), public key {public} (give it to the auditors)")


@audit_cli.command("verify")
def audit_verify(
    ctx: typer.Context,
    digest: Optional[str] = typer.Option(None, "--digest", help="a head kept earlier: prove the log up to it unchanged"),
    digest_file: Optional[Path] = typer.Option(None, "--digest-file", help="a signed digest (`audit digest --sign`)"),
    public_key: Optional[Path] = typer.Option(None, "--public-key", help="the Ed25519 public key the digest file was signed with"),
    as_json: bool = typer.Option(False, "--json", help="machine output (docs/spec.md §14)"),
) -> None:
    """Tamper, version, time (T1), replay, double-entry, read-model and interest checks; exit 1
    on any finding.  Reads only: nothing is sealed or projected first."""
    import re

    from entrypoints import machine
    from projections import audit

    session: Session = ctx.obj
    if (digest_file is None) != (public_key is None):
        fail("--digest-file and --public-key go together: a signed digest is checked with its public key")
    if digest_file is not None and public_key is not None:
        from projections import signing

        if digest is not None:
            fail("give --digest or --digest-file, not both")
        try:
            digest = str(signing.verified(digest_file, public_key)["digest"])
        except signing.SigningError as error:
            fail(f"bad_signature: {error}", code=1)
        note(f"the signed digest {digest} verifies with {public_key}")
    if digest is not None and not re.fullmatch(r"[0-9]+:[0-9a-f]{64}", digest):
        fail(f"--digest: {digest!r} is not POSITION:LINK as `ledger audit digest` prints it")

    with session.opened(read_only=True) as app, session.views(read_only=True) as db:
        settings = session.root.settings
        result = with_progress("verifying", as_json, lambda progress: audit.verify(
            app, db, digest, progress, settings.verify_processes, settings.verify_parallel_from))
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
        say_unsealed(app, db)
        rows = audit.export(app, db, start, end)  # written as read
        if fmt_ == "jsonl":
            sys.stdout.writelines(json.dumps(row) + "\n" for row in rows)
            return
        writer = csv.DictWriter(sys.stdout, fieldnames=["position", "aggregate", "version", "topic", "state", "previous_link",
                                                        "link"], lineterminator="\n")
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


def operator_secret(session: Session, secret_file: Optional[Path]) -> bytes:
    """The proof of liabilities' secret: --secret-file, else LEDGER_LIABILITIES_SECRET_FILE,
    else LEDGER_LIABILITIES_SECRET (a file's one trailing line break is not part of it)."""
    settings = session.root.settings
    path = secret_file or (Path(settings.liabilities_secret_file) if settings.liabilities_secret_file else None)
    if path is not None:
        data = read_file(path, "--secret-file" if secret_file else "LEDGER_LIABILITIES_SECRET_FILE")
        return data[:-2] if data.endswith(b"\r\n") else data[:-1] if data.endswith(b"\n") else data
    if settings.liabilities_secret is not None:
        return settings.liabilities_secret.get_secret_value().encode("utf-8")
    fail("no_secret: give --secret-file, or set LEDGER_LIABILITIES_SECRET_FILE or LEDGER_LIABILITIES_SECRET: "
         "the per-account salts derive from the operator's secret")


def amounts_lines(sums: dict[str, Any]) -> list[str]:
    return [f"{c}: cash {v['cash']}, liability {v['liability']}" for c, v in sums.items()] or ["nothing held or owed"]


@audit_cli.command("liabilities")
def audit_liabilities(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="a new (or empty) directory: root.json and proofs/<account>.json"),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="the books at this instant (default: now)"),
    secret_file: Optional[Path] = typer.Option(None, "--secret-file", help="the operator's secret (16 bytes or more; "
                                               "default LEDGER_LIABILITIES_SECRET_FILE, LEDGER_LIABILITIES_SECRET)"),
    as_json: bool = typer.Option(False, "--json", help='machine output: root.json, {"as_of", "leaves", "root", "totals"}'),
) -> None:
    """Proof of liabilities (§17): a Merkle sum tree over every account's cash and liability
    per currency at T; the root and totals (the trial balance's user books) in root.json, one
    proof per account.  Reads only; the secret is never written."""
    from ledger.domain.errors import LedgerError
    from projections import liabilities

    session: Session = ctx.obj
    at = session.run_time(as_of, "--as-of")
    secret = operator_secret(session, secret_file)
    with session.opened(read_only=True) as app:
        try:
            published = with_progress("writing proofs", as_json,
                                      lambda progress: liabilities.liabilities(app, at, secret, out, progress))
        except LedgerError as error:
            fail(f"{error.code}: {error.message}")
    if as_json:
        emit(published)
        return
    print(f"{published['leaves']} proofs in {out / 'proofs'}; root {published['root']} at {published['as_of']} "
          f"({out / 'root.json'})")
    for line in amounts_lines(published["totals"]):
        print(f"  total {line}")


@audit_cli.command("liabilities-verify")
def audit_liabilities_verify(
    proof: Path = typer.Argument(..., help="an account's proof (proofs/<account>.json)"),
    root: Path = typer.Option(..., "--root", help="the published root.json"),
    as_json: bool = typer.Option(False, "--json", help='machine output: {"ok", "account", "as_of", "amounts", "failed"}'),
) -> None:
    """Check one proof of liabilities offline: its leaf, every sibling's hash and sums on the
    way up (never negative), the root and the totals.  Exit 0: ok; 1: a check failed."""
    from ledger.domain.errors import LedgerError
    from projections import liabilities

    try:
        failed, shown, _ = liabilities.verify(proof, root)
    except LedgerError as error:
        fail(f"{error.code}: {error.message}")
    if as_json:
        emit({"ok": failed is None, "account": shown["account"], "as_of": shown["as_of"], "amounts": shown["amounts"],
              "failed": failed})
    elif failed is None:
        print(f"ok: {shown['account']} is in the tree of {shown['as_of']}")
        for line in amounts_lines(shown["amounts"]):
            print(f"  {line}")
    else:
        print(f"failed: {failed}")
    raise typer.Exit(0 if failed is None else 1)
