"""`ledger consume` (docs/spec.md §18): commands from NATS JetStream into the ledger.

Thin: the options, the store from the session, then ``bus.consume`` with the same
``LedgerApp.apply`` as `ledger apply`.  SIGTERM or SIGINT stop it once the batch in flight is
committed, answered and acked; an unreachable server is one line and exit 2."""
from __future__ import annotations

import json
import signal
import threading
from typing import Optional

import typer

from entrypoints.session import Session, commands, fail
from workers.gc_tuning import fewer_collections

top = commands()  # consume: merged into the root


@top.command()
def consume(ctx: typer.Context,
            stream: str = typer.Option("LEDGER_COMMANDS", "--stream", help="the JetStream stream (made when missing)"),
            subject: str = typer.Option("ledger.commands.>", "--subject", help="the subjects consumed (a shard: ledger.commands.<shard>)"),
            durable: str = typer.Option("ledger", "--durable", help="the durable consumer; processes on one durable share its messages"),
            results_subject: str = typer.Option("ledger.results", "--results-subject",
                                                help="where a result goes when its message has no Reply-To header"),
            until_idle: Optional[float] = typer.Option(None, "--until-idle", min=0,
                                                       help="exit 0 once no message has come for this many seconds"),
            batch: int = typer.Option(1000, "--batch", min=1, max=10_000, help="messages per batch (one transaction)"),
            ack_wait: float = typer.Option(30.0, "--ack-wait", min=1, max=3600,
                                           help="seconds before JetStream redelivers a message not acked (a crashed consumer's)"),
            nats_url: Optional[str] = typer.Option(None, "--nats", help="the NATS server (default LEDGER_NATS_URL, "
                                                                        "else nats://127.0.0.1:4222)"),
            as_json: bool = typer.Option(False, "--json", help="the summary at exit as JSON")) -> None:
    """Apply §12 commands from a JetStream stream in batches; publish each result, ack after commit.

    A message without command_id is applied once under nats:<stream>:<sequence>; a poison
    message gets its validation_error result and is acked.  Runs until SIGTERM/SIGINT (the
    batch in flight finishes) or --until-idle."""
    from bus.connect import BusError
    from bus.consume import Options, consume as run

    session: Session = ctx.obj
    options = Options(url=nats_url or session.root.settings.nats_url, stream=stream, subject=subject, durable=durable,
                      results_subject=results_subject, until_idle=until_idle, batch=batch, ack_wait=ack_wait)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stopping.set())
    latest = session.latest_clock()
    with session.opened() as app, fewer_collections():  # as `ledger apply`
        try:
            done = run(lambda objs: app.apply(objs, session.clock, latest), options, stopping.is_set)
        except BusError as error:
            fail(str(error))
    if as_json:
        print(json.dumps(done.as_dict()))
    else:
        print(f"consumed {done.messages} messages in {done.batches} batches ({done.rejected} rejected, "
              f"{done.redelivered} redelivered); stopped: {done.stopped}")
