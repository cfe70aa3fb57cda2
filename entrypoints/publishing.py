"""`ledger publish` (docs/spec.md §18): every stored event to NATS JetStream, exactly once.

Thin: the options, the store and the read models' connection from the session, then
``bus.relay`` (which docs/events-bus.md explains).  SIGTERM or SIGINT stop it after the batch
in flight is acked and recorded; an unreachable server is one line and exit 2."""
from __future__ import annotations

import json
import signal
import threading
from typing import Optional

import typer

from entrypoints.session import Session, commands, events, fail

top = commands()  # publish: merged into the root


@top.command()
def publish(ctx: typer.Context,
            prefix: str = typer.Option("ledger.events", "--events-prefix", help="subjects are <prefix>.<EventType>"),
            stream: str = typer.Option("LEDGER_EVENTS", "--stream", help="the JetStream stream (made when missing: <prefix>.>)"),
            until_idle: Optional[float] = typer.Option(None, "--until-idle", min=0,
                                                       help="exit 0 once caught up and nothing new for this many seconds"),
            nats_url: Optional[str] = typer.Option(None, "--nats", help="the NATS server (default LEDGER_NATS_URL, "
                                                                        "else nats://127.0.0.1:4222)"),
            batch: int = typer.Option(1000, "--batch", min=1, max=100_000, help="events per publish batch and position move"),
            as_json: bool = typer.Option(False, "--json", help="the summary at exit as JSON")) -> None:
    """Relay every stored event, in notification order, to <prefix>.<EventType>, Nats-Msg-Id =
    notification id.  Resumes after its recorded position; runs until SIGTERM or --until-idle."""
    from bus.connect import BusError
    from bus.relay import relay

    session: Session = ctx.obj
    url = nats_url or session.root.settings.nats_url
    stopping = threading.Event()
    before = {signum: signal.signal(signum, lambda _signum, _frame: stopping.set())
              for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        with session.opened() as app, session.views() as db:
            try:
                done = relay(app, db, stopping, until_idle=until_idle, url=url, stream=stream, prefix=prefix, batch=batch)
            except BusError as error:
                fail(str(error))
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
    if as_json:
        print(json.dumps(done.as_dict()))
    else:
        print(f"published {events(done.published)} to {stream} ({done.duplicates} already there), "
              f"position {done.position}")
