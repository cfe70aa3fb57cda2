"""`ledger consume` (SPEC §18): commands from NATS JetStream, applied in batches, acked after commit.

A durable pull consumer on the stream: each message's body is one §12 command.  A batch is
what has arrived, up to ``batch`` messages: the first is waited for (at most ``POLL`` at a
time, so a stop or ``until_idle`` is seen), the rest are taken if they are there already
(waiting at most ``GATHER`` for them).  The batch goes through ``apply`` -- the same
``LedgerApp.apply`` that `ledger apply` and `ledger serve` call, one transaction -- and only
once it has committed is each result published (to the subject in the message's ``Reply-To``
header when it has one, else to the results subject) and the message acked.  One batch is in
flight per consumer; several processes on one durable share its messages (JetStream hands each
to one of them) and the store decides between them.

Exactly once, from the store: a message without a ``command_id`` gets ``nats:<stream>:<stream
sequence>``, so a message redelivered after a crash (killed between the commit and the acks)
is answered with its recorded result (T2) and applies nothing twice.  A poison message (not
JSON, not a command) is a ``validation_error`` result like any other and is acked: it is never
redelivered.  Every network wait has a bound (``bus.connect`` and the constants below).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import orjson

from bus.connect import BusError, close, connect, ensure_stream, jetstream, no_jetstream, shown, why
from ledger.adapters.retry import StoreUnavailable
from ledger.domain.errors import LedgerError
from ledger.service import jsonlines

STREAM = "LEDGER_COMMANDS"
SUBJECT = "ledger.commands.>"
DURABLE = "ledger"
RESULTS = "ledger.results"
BATCH = 1000  # messages per batch (one transaction)
ACK_WAIT = 30.0  # float-ok: seconds JetStream waits for an ack before it redelivers
POLL = 0.5  # float-ok: seconds one wait for the first message of a batch lasts
GATHER = 0.002  # float-ok: seconds to wait for more once a batch has its first message
FLUSH_TIMEOUT = 5.0  # float-ok: seconds for the results and acks of a batch to reach the server
REPLY_TO = "Reply-To"  # the header that names where a command's result goes

Apply = Callable[[list[Any]], list[dict[str, Any]]]


@dataclass(frozen=True)
class Options:
    url: str
    stream: str = STREAM
    subject: str = SUBJECT
    durable: str = DURABLE
    results_subject: str = RESULTS
    until_idle: Optional[float] = None  # float-ok: seconds
    batch: int = BATCH
    ack_wait: float = ACK_WAIT  # float-ok: seconds


@dataclass
class Consumed:
    """What one run did."""

    messages: int = 0
    batches: int = 0
    rejected: int = 0  # results that were not ok (poison messages among them)
    redelivered: int = 0  # messages JetStream had delivered before (a crash, an ack lost)
    stopped: str = ""  # "idle" or "signal"

    def as_dict(self) -> dict[str, Any]:
        return {"messages": self.messages, "batches": self.batches, "rejected": self.rejected,
                "redelivered": self.redelivered, "stopped": self.stopped}


def own_id(stream: str, sequence: int) -> str:
    """The command_id of a message that carries none: its place in the stream."""
    return f"nats:{stream}:{sequence}"


def command_of(data: bytes, command_id: str) -> Any:
    """A message's decoded command (``command_id`` given when it has none), or the
    ``validation_error`` it earns (``ledger.service.jsonlines``, as `ledger apply`'s lines)."""
    try:
        obj = jsonlines.decode(data)
    except LedgerError as error:
        return error
    if isinstance(obj, dict) and obj.get("command_id") is None:
        obj["command_id"] = command_id
    return obj


def timed_out(error: BaseException) -> bool:
    import nats.errors

    return isinstance(error, (asyncio.TimeoutError, nats.errors.TimeoutError))


class Consumer:
    def __init__(self, apply: Apply, options: Options, stop: Callable[[], bool]) -> None:
        self.apply, self.options, self.stop = apply, options, stop
        self.done = Consumed()
        # The application is used from one thread only, whichever runs the event loop.
        self.worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ledger-consume")

    async def run(self) -> Consumed:
        o = self.options
        nc = await connect(o.url, name=f"ledger consume {o.durable}")
        try:
            js = jetstream(nc)
            missing = await no_jetstream(js, o.url)
            if missing:
                raise BusError(missing)
            from nats.js.api import RetentionPolicy

            await ensure_stream(js, o.url, o.stream, [o.subject], retention=RetentionPolicy.WORK_QUEUE)
            sub = await self.subscribe(js)
            await self.loop(nc, sub)
        finally:
            self.worker.shutdown(wait=True)
            await close(nc)
        return self.done

    async def subscribe(self, js: Any) -> Any:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        o = self.options
        config = ConsumerConfig(durable_name=o.durable, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                                ack_wait=o.ack_wait, max_ack_pending=-1, filter_subject=o.subject)
        try:
            return await js.pull_subscribe(o.subject, durable=o.durable, stream=o.stream, config=config)
        except Exception as error:  # noqa: BLE001 - a durable of another subject, no permission, a timeout
            raise BusError(f"cannot consume {o.subject} from {o.stream} as {o.durable} at {shown(o.url)}: "
                           f"{why(error)}") from None

    async def loop(self, nc: Any, sub: Any) -> None:
        o = self.options
        last = time.monotonic()
        while True:
            if self.stop():
                self.done.stopped = "signal"
                return
            window = POLL
            if o.until_idle is not None:
                left = o.until_idle - (time.monotonic() - last)
                if left <= 0:
                    self.done.stopped = "idle"
                    return
                window = min(POLL, left)
            msgs = await self.fetch(sub, 1, window)
            if not msgs:
                continue
            if o.batch > 1:
                msgs += await self.fetch(sub, o.batch - 1, GATHER)
            await self.handle(nc, msgs)
            last = time.monotonic()

    async def fetch(self, sub: Any, count: int, timeout: float) -> list[Any]:  # float-ok: seconds
        try:
            return list(await sub.fetch(count, timeout=max(timeout, 0.001)))  # float-ok
        except Exception as error:  # noqa: BLE001
            if timed_out(error):
                return []
            raise BusError(f"lost NATS at {shown(self.options.url)}: {why(error)}") from None

    async def handle(self, nc: Any, msgs: list[Any]) -> None:
        """Apply one batch (one transaction), then publish its results, then ack it."""
        o = self.options
        ids, objs = [], []
        for msg in msgs:
            meta = msg.metadata
            ids.append(own_id(o.stream, meta.sequence.stream))
            objs.append(command_of(msg.data, ids[-1]))
            if meta.num_delivered > 1:
                self.done.redelivered += 1
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self.worker, self.apply, objs)
        except StoreUnavailable as error:
            done = list(error.done)  # committed: answered and acked; the rest are redelivered
            await self.answer(nc, msgs[:len(done)], ids, done)
            raise BusError(f"{error}; {len(msgs) - len(done)} messages not acknowledged: JetStream redelivers them "
                           "(a redelivered command is applied once)") from None
        await self.answer(nc, msgs, ids, results)

    async def answer(self, nc: Any, msgs: list[Any], ids: list[str], results: list[dict[str, Any]]) -> None:
        o = self.options
        try:
            for msg, command_id, result in zip(msgs, ids, results):
                result.setdefault("command_id", command_id)  # a poison message is answered by its place
                reply = (msg.headers or {}).get(REPLY_TO) or o.results_subject
                await nc.publish(reply, orjson.dumps(result))
            for msg in msgs[:len(results)]:
                await msg.ack()
            await nc.flush(timeout=FLUSH_TIMEOUT)
        except Exception as error:  # noqa: BLE001 - a lost connection: the batch is committed, its acks may not be
            raise BusError(f"lost NATS at {shown(o.url)} acknowledging a committed batch: {why(error)} "
                           "(its messages are redelivered and answered with their recorded results)") from None
        self.done.batches += 1
        self.done.messages += len(results)
        self.done.rejected += sum(1 for r in results if not r.get("ok"))


def consume(apply: Apply, options: Options, stop: Callable[[], bool]) -> Consumed:
    """Run a ``Consumer`` on its own event loop until ``stop()`` or ``until_idle``; a bus that
    cannot be used raises ``BusError``."""
    return asyncio.run(Consumer(apply, options, stop).run())
