"""The machine's NATS server (JetStream) for the bus tests (SPEC §18): never a mock.

Locally, without a server, NATS tests skip with the reason.  With ``LEDGER_REQUIRE_NATS=1``
(set by ``.ci/run``) a missing server fails them instead.  Each test takes its own stream
and subject prefix (``names``), and deletes the stream when done.
"""
from __future__ import annotations

import asyncio
import os
import socket
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest

URL = os.environ.get("LEDGER_TEST_NATS_URL", "nats://127.0.0.1:4222")
REQUIRED = os.environ.get("LEDGER_REQUIRE_NATS") == "1"


def require_server() -> None:
    """Skip (locally) or fail (CI) when no NATS server answers at URL."""
    parts = urlsplit(URL)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222), timeout=2) as sock:
            sock.settimeout(2)
            greeting = sock.recv(4096)
    except OSError as error:
        greeting, why = b"", str(error)
    else:
        why = "it did not greet as NATS"
    if not greeting.startswith(b"INFO"):
        reason = f"NATS at {URL} is not available ({why})"
        if REQUIRED:
            pytest.fail(reason + "; LEDGER_REQUIRE_NATS=1 requires it", pytrace=False)
        pytest.skip(reason)


def names(kind: str = "T") -> tuple[str, str]:
    """A stream name and a subject prefix no other test uses."""
    tag = uuid.uuid4().hex[:10]
    return f"TEST_{kind}_{tag}", f"test.{kind.lower()}.{tag}"


async def _with_js(work: Any) -> Any:
    import nats

    nc = await nats.connect(URL, connect_timeout=3, allow_reconnect=False)
    try:
        return await work(nc.jetstream(timeout=10))
    finally:
        await nc.close()


def run_js(work: Any) -> Any:
    """``await work(js)`` on a fresh connection (tests are synchronous)."""
    return asyncio.run(_with_js(work))


def stream_messages(stream: str) -> list[Any]:
    """Every message the stream holds, in stream order (RawStreamMsg: subject, headers, data)."""
    async def read(js: Any) -> list[Any]:
        info = await js.stream_info(stream)
        return [await js.get_msg(stream, seq=seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)
                if info.state.messages]

    return run_js(read)


def delete_stream(stream: str) -> None:
    async def delete(js: Any) -> None:
        try:
            await js.delete_stream(stream)
        except Exception:  # noqa: BLE001 - never made
            pass

    run_js(delete)
