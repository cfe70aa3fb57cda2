"""The bus's connection (SPEC §18): NATS with JetStream, every wait bounded.

``connect`` reaches the server within ``CONNECT_TIMEOUT`` per try and at most
``CONNECT_TRIES`` tries, then, once connected, rides out an outage of the server by at most
``RECONNECTS`` reconnections ``RECONNECT_WAIT`` apart; past that the connection is closed and
the next wait on it fails.  ``jetstream`` is the JetStream context whose every API call times
out after ``API_TIMEOUT``; ``ensure_stream`` creates a stream when missing and widens an
existing one to a subject it does not yet take.  What cannot be had is a ``BusError``: one
line, for the command line to print (exit 2).
"""
from __future__ import annotations

import asyncio
from typing import Any, Optional, Sequence
from urllib.parse import urlsplit

CONNECT_TIMEOUT = 2.0  # float-ok: seconds for one try to reach the server
CONNECT_TRIES = 2  # tries at start-up before giving up
RECONNECTS = 10  # reconnections after a lost connection before giving up
RECONNECT_WAIT = 1.0  # float-ok: seconds between reconnections
API_TIMEOUT = 5.0  # float-ok: seconds for one JetStream API call (stream info, consumer create ...)
CLOSE_TIMEOUT = 3.0  # float-ok: seconds to drain and close


class BusError(Exception):
    """The bus cannot be used (unreachable, no JetStream, refusing): one line."""


def shown(url: str) -> str:
    """``url`` without its password, for a message."""
    parts = urlsplit(url)
    return url.replace(f":{parts.password}@", ":***@", 1) if parts.password else url


def why(error: BaseException) -> str:
    if isinstance(error, asyncio.TimeoutError):
        return "no answer in time"
    return str(error) or type(error).__name__


async def connect(url: str, name: str, *, timeout: float = CONNECT_TIMEOUT, tries: int = CONNECT_TRIES,  # float-ok
                  reconnects: int = RECONNECTS, reconnect_wait: float = RECONNECT_WAIT) -> Any:  # float-ok
    """A connection to the NATS server at ``url``, or ``BusError`` (within about
    ``tries × (timeout + reconnect_wait)`` seconds)."""
    import nats

    seen: list[BaseException] = []

    async def quiet(error: Exception) -> None:  # nats-py would log each failed try with a traceback
        seen[:] = [error]

    try:
        nc = await asyncio.wait_for(
            nats.connect(url, name=name, connect_timeout=timeout, allow_reconnect=True,
                         max_reconnect_attempts=max(tries - 1, 1),  # 0 would be: for ever
                         reconnect_time_wait=reconnect_wait,
                         error_cb=quiet, ping_interval=10, max_outstanding_pings=3),
            tries * (timeout + reconnect_wait) + timeout)
    except Exception as error:  # noqa: BLE001 - refused, timed out, a bad URL: one line
        last = seen[0] if seen and type(error).__name__ == "NoServersError" else error  # the last try's reason
        raise BusError(f"cannot reach NATS at {shown(url)}: {why(last)}") from None
    # The tries at start-up and the reconnections after a loss are one setting in nats-py: the
    # start-up is bounded above, the running connection gets its own bound now.
    nc.options["max_reconnect_attempts"] = reconnects
    return nc


def jetstream(nc: Any, timeout: float = API_TIMEOUT, **options: Any) -> Any:  # float-ok
    """The connection's JetStream context (API calls bounded by ``timeout``)."""
    return nc.jetstream(timeout=timeout, **options)


async def close(nc: Any) -> None:
    """Flush what is buffered and close, within CLOSE_TIMEOUT; a connection already gone is no
    error.  (Not a drain: a pull subscription's drain waits for messages nobody will take.)"""
    try:
        await asyncio.wait_for(nc.close(), CLOSE_TIMEOUT)
    except Exception:  # noqa: BLE001 - closing what is already lost
        pass


def covers(pattern: str, subject: str) -> bool:
    """Whether the subject pattern ``pattern`` (``*``: one token, ``>``: the rest) takes every
    subject ``subject`` (itself a pattern) matches."""
    mine, theirs = pattern.split("."), subject.split(".")
    for at, token in enumerate(mine):
        if token == ">":
            return len(theirs) > at
        if at >= len(theirs) or (token != "*" and token != theirs[at]) or (token == "*" and theirs[at] == ">"):
            return False
    return len(mine) == len(theirs)


async def ensure_stream(js: Any, url: str, stream: str, subjects: Sequence[str], **config: Any) -> Any:
    """The stream's info: created when missing (with ``subjects`` and ``config``, fields of
    nats-py's ``StreamConfig``), an existing one given any of ``subjects`` it does not take (a
    subject it takes already, or one it covers, is left as it is)."""
    from nats.js.api import StreamConfig
    from nats.js.errors import NotFoundError

    try:
        try:
            info = await js.stream_info(stream)
        except NotFoundError:
            try:
                return await js.add_stream(StreamConfig(name=stream, subjects=list(subjects), **config))
            except Exception:  # noqa: BLE001 - another process made it first: use that one
                info = await js.stream_info(stream)
        have = list(info.config.subjects or [])
        missing = [s for s in subjects if not any(covers(h, s) for h in have)]
        if not missing:
            return info
        wider = [h for h in have if not any(covers(s, h) for s in missing)] + missing
        info.config.subjects = wider
        return await js.update_stream(info.config)
    except BusError:
        raise
    except Exception as error:  # noqa: BLE001 - JetStream off, no permission, a timeout: one line
        raise BusError(f"cannot use the stream {stream} at {shown(url)}: {why(error)}") from None


async def no_jetstream(js: Any, url: str) -> Optional[str]:
    """None when the server has JetStream for this account, else why not."""
    try:
        await js.account_info()
    except Exception as error:  # noqa: BLE001
        return f"NATS at {shown(url)} offers no JetStream ({why(error)}); start it with -js"
    return None
