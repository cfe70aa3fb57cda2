"""Running the service: uvicorn, on one process or several sharing the port, until SIGTERM or
SIGINT.

On a signal uvicorn stops accepting connections, lets the requests in flight finish (at most
GRACE seconds), then runs the application's shutdown, where the writer answers what it holds
and every connection closes; the process then exits 0.  uvicorn raises the signal again once
it is done: the handler installed here first takes it and exits 0 (as it does for a signal
that comes while the store is still being opened).

With ``processes`` > 1 (``--processes``, LEDGER_SERVE_PROCESSES) uvicorn's own supervisor
binds the port once and runs that many server processes on it, each built by ``child_app``
from the environment (the command line puts `--db` there) with its own writer: the kernel
spreads the connections, the store decides between the writers (as between several `serve`
on one database), and a process that dies is replaced.  The parent opens the store once
before it starts them, so a store that cannot be opened is still one line and exit 2.
"""
from __future__ import annotations

import gc
import signal
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:
    from entrypoints.compose import Root

GRACE = 30  # seconds the requests in flight get after a signal


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def run(root: "Root", host: str, port: int, clock: Optional[Callable[[], datetime]] = None,
        processes: int = 1) -> None:
    if processes > 1:
        run_processes(root, host, port, processes)
        return
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
    config = uvicorn.Config(app, host=host, port=port, **OPTIONS)
    gc.freeze()  # what start-up made lives as long as the process: never walked again
    with fewer_collections():  # as for `ledger apply`: a collection pause is a request's latency
        uvicorn.Server(config).run()


OPTIONS = dict(log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=GRACE,
               server_header=False)


def run_processes(root: "Root", host: str, port: int, processes: int) -> None:
    """``processes`` server processes on one port, under uvicorn's supervisor (module doc)."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stopped)  # the supervisor's handlers replace it once it runs
    bindable(host, port)
    root.open_app().close()  # the store opens (else one line, exit 2) before any process starts
    config = uvicorn.Config("api.server:child_app", factory=True, host=host, port=port, workers=processes, **OPTIONS)
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        raise OSError(f"a server process could not start (exit {STARTUP_FAILURE}); its error is above")


def child_app() -> Any:
    """One server process of ``run_processes``: its application, from the environment."""
    from api.app import create_app
    from api.service import Service
    from entrypoints.compose import Root
    from workers.gc_tuning import THRESHOLDS

    app = create_app(Service(Root.load(), utcnow))
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)  # as ``fewer_collections`` does, for the process's whole life
    return app


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
