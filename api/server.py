"""Running the service: uvicorn on one process, until SIGTERM or SIGINT.

On a signal uvicorn stops accepting connections, lets the requests in flight finish (at most
GRACE seconds), then runs the application's shutdown, where the writer answers what it holds
and every connection closes; the process then exits 0.  uvicorn raises the signal again once
it is done: a handler installed here first takes it, so the exit stays 0.
"""
from __future__ import annotations

import signal
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

    service = Service(root, clock or utcnow)
    try:
        app = create_app(service)
    except BaseException:
        service.close()
        raise
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=GRACE, server_header=False)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)  # uvicorn's own handlers replace these while it runs
    uvicorn.Server(config).run()
