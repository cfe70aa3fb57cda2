"""`ledger serve` and `ledger token create|list|revoke` (docs/spec.md §15)."""
from __future__ import annotations

import json
import os
from typing import Optional

import typer

from entrypoints.session import Session, commands, emit, fail

top = commands()  # serve: merged into the root
token_cli = commands("Tokens of `ledger serve`: create, list, revoke.")


@top.command()
def serve(ctx: typer.Context,
          host: Optional[str] = typer.Option(None, "--host", help="address to listen on (default LEDGER_SERVE_HOST, else 127.0.0.1)"),
          port: Optional[int] = typer.Option(None, "--port", min=1, max=65535,
                                             help="TCP port (default LEDGER_SERVE_PORT, else 8080)"),
          processes: Optional[int] = typer.Option(None, "--processes", min=1, max=64,
                                                  help="server processes sharing the port (default "
                                                       "LEDGER_SERVE_PROCESSES, else 1)")) -> None:
    """The network service (HTTP/1.1, JSON): commands with group commit, reads, reports, audit.
    Every request but /healthz needs a token (`ledger token create`).  Stops cleanly on SIGTERM."""
    from api import server
    from ledger.adapters.settings import PREFIX
    from ledger.adapters.store import StoreError, describe_store_error, redact

    session: Session = ctx.obj
    settings = session.root.settings
    processes = processes or settings.serve_processes
    if processes > 1:  # the server processes build their settings from the environment: `--db` too
        os.environ[f"{PREFIX}DATABASE_URL"] = settings.database_url
    try:
        server.run(session.root, host or settings.serve_host, port or settings.serve_port, session.clock,
                   processes)
    except StoreError as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot serve: {error}")
    except Exception as error:  # noqa: BLE001 - the store cannot be opened: one line
        fail(f"cannot open the store {redact(session.db_url)}: {describe_store_error(error) or type(error).__name__}")


@token_cli.command("create")
def token_create(ctx: typer.Context,
                 name: str = typer.Option(..., "--name", help="the token's name (for `token revoke`)"),
                 scope: list[str] = typer.Option(..., "--scope", help="ingest | read | report | audit | admin; repeatable"),
                 as_json: bool = typer.Option(False, "--json", help='machine output: {"name", "scopes", "secret"}')) -> None:
    """Make a token and print its secret, once: only its hash is stored."""
    from api.tokens import Tokens
    from ledger.domain.errors import LedgerError

    session: Session = ctx.obj
    with session.views() as db:
        try:
            secret = Tokens(db).create(name, scope, session.clock())
        except LedgerError as error:
            fail(error.message, 1)
    scopes = list(dict.fromkeys(scope))
    if as_json:
        print(json.dumps({"name": name, "scopes": scopes, "secret": secret}))
    else:
        print(f"token {name} ({', '.join(scopes)}): {secret}\n(shown once: only its hash is kept)")


@token_cli.command("list")
def token_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="machine output")) -> None:
    """Every token's name, scopes, when made and when revoked (never a secret)."""
    from api.tokens import Tokens

    session: Session = ctx.obj
    with session.views() as db:
        rows = [t.as_dict() for t in Tokens(db).list()]
    if as_json:
        emit(rows)
        return
    for row in rows:
        state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "in use"
        print(f"{row['name']}\t{' '.join(row['scopes'])}\tcreated {row['created_at']}\t{state}")


@token_cli.command("revoke")
def token_revoke(ctx: typer.Context, name: str) -> None:
    """Revoke a token: every `ledger serve` on this store refuses it (within LEDGER_SERVE_TOKEN_CACHE_SECONDS)."""
    from api.tokens import Tokens
    from ledger.domain.errors import LedgerError

    session: Session = ctx.obj
    with session.views() as db:
        try:
            Tokens(db).revoke(name, session.clock())
        except LedgerError as error:
            fail(error.message, 1)
    print(f"revoked {name}")
