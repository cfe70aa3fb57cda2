"""Running the service: uvicorn on one process, until SIGTERM or SIGINT.

On a signal uvicorn stops accepting connections, lets the requests in flight finish (at most
GRACE seconds), then runs the application's shutdown, where the writer answers what it holds
and every connection closes; the process then exits 0.  uvicorn raises the signal again once
it is done: the handler installed here first takes it and exits 0 (as it does for a signal
that comes while the store is still being opened).
"""
from __future__ import annotations

import gc
import signal
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:
    from entrypoints.compose import Root

GRACE = 30  # seconds the requests in flight get after a signal


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def run(root: "Root", host: str, port: int, clock: Optional[Callable[[], datetime]] = None) -> None:
    import uvicorn

    from api.app import create_app
    from api.service import Service
    from workers.gc_tuning import fewer_collections

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stopped)  # uvicorn's own handlers replace it while it serves
    bindable(host, port)
    service = Service(root, clock or utcnow)
    try:
        app = create_app(service)
    except BaseException:
        service.close()
        raise
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=GRACE, server_header=False)
    gc.freeze()  # what start-up made lives as long as the process: never walked again
    with fewer_collections():  # as for `ledger apply`: a collection pause is a request's latency
        uvicorn.Server(config).run()


def bindable(host: str, port: int) -> None:
    """Raise ``OSError`` (one line at the edge, exit 2) when the address cannot be had, before
    the store is opened: uvicorn would only log it and exit 1 after start-up."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a TIME_WAIT port is free
        probe.bind((host, port))


def stopped(*_: object) -> None:
    sys.exit(0)
