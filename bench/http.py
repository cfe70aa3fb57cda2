"""The load generator of the serve figures: HTTP/1.1 keep-alive connections on asyncio (uvloop
when installed), written with raw streams because a full client (httpx) costs more CPU per
request than the server's own work, and the machine's two cores are shared by both.

``closed_loop``: each connection sends its own commands one request at a time, the next as
soon as the answer is in (throughput).  ``open_loop``: requests are due at a fixed rate,
whatever the answers do; each latency runs from the instant a request was due to its
answer, so a slow answer that delays the next request is counted (no coordinated omission).
"""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any


class Connection:
    def __init__(self, host: str, port: int, secret: str) -> None:
        self.host, self.port = host, port
        self.head = (f"POST /v1/commands HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {secret}\r\n"
                     "Content-Type: application/json\r\nContent-Length: ").encode()
        self.reader: Any = None
        self.writer: Any = None

    async def open(self) -> "Connection":
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def post(self, body: bytes) -> Any:
        self.writer.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line[:15].lower() == b"content-length:")
        answer = json.loads(await self.reader.readexactly(length))
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {answer}")
        return answer

    def close(self) -> None:
        self.writer.close()


def run(coroutine: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coroutine)
    except ImportError:
        return asyncio.run(coroutine)


def closed_loop(host: str, port: int, secret: str, streams: list[list[bytes]]) -> tuple[float, list[Any]]:  # float-ok: seconds
    """Each stream on its own connection, all at once: wall seconds and every answer."""
    async def main() -> tuple[float, list[Any]]:  # float-ok: seconds
        conns = [await Connection(host, port, secret).open() for _ in streams]

        async def one(conn: Connection, bodies: list[bytes]) -> list[Any]:
            return [await conn.post(body) for body in bodies]

        started = time.perf_counter()
        answers = await asyncio.gather(*(one(c, s) for c, s in zip(conns, streams)))
        seconds = time.perf_counter() - started
        for c in conns:
            c.close()
        return seconds, [a for stream in answers for a in stream]

    return run(main())  # type: ignore[no-any-return]


def open_loop(host: str, port: int, secret: str, bodies: list[bytes], rate: float,  # float-ok: requests/s
              connections: int) -> tuple[list[float], list[Any]]:  # float-ok: seconds
    """``bodies`` due at ``rate`` per second over up to ``connections`` connections: each
    request's latency in seconds from when it was due, and every answer."""
    async def main() -> tuple[list[float], list[Any]]:  # float-ok: seconds
        idle: asyncio.Queue[Connection] = asyncio.Queue()
        for _ in range(connections):
            idle.put_nowait(await Connection(host, port, secret).open())
        latencies: list[float] = []  # float-ok: seconds
        answers: list[Any] = []

        async def one(body: bytes, due: float) -> None:  # float-ok: seconds
            conn = await idle.get()
            try:
                answers.append(await conn.post(body))
            finally:
                idle.put_nowait(conn)
            latencies.append(time.perf_counter() - due)

        started, tasks = time.perf_counter(), []
        for n, body in enumerate(bodies):
            due = started + n / rate
            pause = due - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            tasks.append(asyncio.ensure_future(one(body, due)))
        await asyncio.gather(*tasks)
        while not idle.empty():
            idle.get_nowait().close()
        return latencies, answers

    return run(main())  # type: ignore[no-any-return]


def wait_healthy(base: str, proc: Any, seconds: float, log: str) -> None:  # float-ok: seconds
    """Until ``base``/healthz answers 200 (a real `ledger serve` process ``proc`` has started);
    ``RuntimeError`` when the process ends or ``seconds`` pass first."""
    import httpx

    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"ledger serve did not start (see {log})")
        time.sleep(0.1)
