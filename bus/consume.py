"""`ledger consume` (SPEC §18): commands from NATS JetStream, applied in batches, acked after commit.

A durable pull consumer on the stream: each message's body is one §12 command.  A batch is
what has arrived, up to ``batch`` messages: the first is waited for (at most ``POLL`` at a
time, so a stop or ``until_idle`` is seen), the rest are taken if they are there already
(JetStream's no-wait pull: no waiting for more).  The batch goes through ``apply`` -- the same
``LedgerApp.apply`` that `ledger apply` and `ledger serve` call, one transaction -- and only
once it has committed is each result published (to the subject in the message's ``Reply-To``
header when it has one, else to the results subject) and the message acked.  One batch is in
flight per consumer (uncommitted): while it applies, the previous batch's results and acks go
out, so the bus's work overlaps the store's.  Several processes on one durable share its
messages (JetStream hands each to one of them) and the store decides between them.

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
ANSWER_TIMEOUT = 5.0  # float-ok: seconds past a pull request's expiry for JetStream's answer
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


class Pull:
    """Pull requests on the durable, answered into an inbox of this process's own.  JetStream
    ends each request with its last message or a status (404: none there, 408: expired), so
    what comes is always the answer to the request just made; a request unanswered within
    its expiry plus ANSWER_TIMEOUT means the server is gone (``BusError``).

    The inbox's messages are gathered by a callback and the request is awaited once:
    nats-py's ``next_msg`` makes a task and a timer per message, which cost as much as the
    rest of the consumer's own work per message."""

    def __init__(self, nc: Any, options: Options) -> None:
        self.nc, self.options = nc, options
        self.subject = f"$JS.API.CONSUMER.MSG.NEXT.{options.stream}.{options.durable}"
        self.msgs: list[Any] = []
        self.wanted = 0
        self.answered: Optional[asyncio.Future[Optional[str]]] = None  # the request's end: None, or a refusal

    async def open(self) -> "Pull":
        self.inbox = self.nc.new_inbox()
        self.sub = await self.nc.subscribe(self.inbox, cb=self.arrived)
        return self

    async def arrived(self, msg: Any) -> None:
        status = (msg.headers or {}).get("Status")
        if status is None:
            self.msgs.append(msg)
            if len(self.msgs) < self.wanted:
                return
            ended = None
        elif status in ("404", "408"):  # no more now / the request expired
            ended = None
        elif status == "409":  # the durable was deleted, too many waiting requests ...
            ended = (msg.headers or {}).get("Description", status)
        else:
            return
        if self.answered is not None and not self.answered.done():
            self.answered.set_result(ended)

    async def take(self, count: int, expires: Optional[float] = None) -> list[Any]:  # float-ok: seconds
        """Up to ``count`` messages: waiting up to ``expires`` for the first, or, without it,
        only those there now."""
        request: dict[str, Any] = {"batch": count}
        if expires is None:
            request["no_wait"] = True
        else:
            request["expires"] = int(max(expires, 0.001) * 1e9)  # float-ok: nanoseconds, as JetStream counts
        self.msgs, self.wanted = [], count
        self.answered = asyncio.get_running_loop().create_future()
        try:
            await self.nc.publish(self.subject, orjson.dumps(request), reply=self.inbox)
            refused = await asyncio.wait_for(self.answered, (expires or 0) + ANSWER_TIMEOUT)
        except Exception as error:  # noqa: BLE001 - a lost connection, a server that does not answer
            raise BusError(f"lost NATS at {shown(self.options.url)}: {why(error)}") from None
        finally:
            self.answered = None
        if refused is not None:
            raise BusError(f"JetStream refused to deliver from {self.options.durable}: {refused}")
        msgs, self.msgs = self.msgs, []
        return msgs


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
            await self.loop(nc, await self.subscribe(nc, js))
        finally:
            self.worker.shutdown(wait=True)
            await close(nc)
        return self.done

    async def subscribe(self, nc: Any, js: Any) -> "Pull":
        """The durable (made when missing, as every process on it makes it) and a pull on it."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        o = self.options
        config = ConsumerConfig(durable_name=o.durable, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                                ack_wait=o.ack_wait, max_ack_pending=-1, filter_subject=o.subject)
        try:
            try:
                info = await js.consumer_info(o.stream, o.durable)
            except NotFoundError:
                try:
                    info = await js.add_consumer(o.stream, config)
                except Exception:  # noqa: BLE001 - another process made it first: use that one
                    info = await js.consumer_info(o.stream, o.durable)
        except Exception as error:  # noqa: BLE001 - no permission, a timeout
            raise BusError(f"cannot consume {o.subject} from {o.stream} as {o.durable} at {shown(o.url)}: "
                           f"{why(error)}") from None
        if info.config.filter_subject != o.subject:
            raise BusError(f"the durable {o.durable} of {o.stream} consumes {info.config.filter_subject}, "
                           f"not {o.subject}: name another --durable")
        return await Pull(nc, o).open()

    async def loop(self, nc: Any, pull: "Pull") -> None:
        o = self.options
        last = time.monotonic()
        answering: Optional[asyncio.Future[None]] = None  # the last committed batch's results and acks
        try:
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
                msgs = await pull.take(1, window)  # waits for the first
                if not msgs:
                    continue
                if o.batch > 1:
                    msgs += await pull.take(o.batch - 1)  # and takes what else is there now
                answering = await self.handle(nc, msgs, answering)
                last = time.monotonic()
        finally:
            if answering is not None:
                await answering

    async def handle(self, nc: Any, msgs: list[Any], answering: Optional[asyncio.Future[None]]) -> asyncio.Future[None]:
        """Apply one batch (one transaction); meanwhile the previous batch, committed, gets its
        results and acks (``answering``); then this batch's are begun, and returned to be
        awaited while the next one applies.  One batch at a time is uncommitted."""
        o = self.options
        ids, objs = [], []
        for msg in msgs:
            meta = msg.metadata
            ids.append(own_id(o.stream, meta.sequence.stream))
            objs.append(command_of(msg.data, ids[-1]))
            if meta.num_delivered > 1:
                self.done.redelivered += 1
        applying = asyncio.get_running_loop().run_in_executor(self.worker, self.apply, objs)
        try:
            if answering is not None:
                await answering
        except BaseException:
            await asyncio.wait([applying])  # this batch commits (redelivered, answered from its records)
            raise
        try:
            results = await applying
        except StoreUnavailable as error:
            done = list(error.done)  # committed: answered and acked; the rest are redelivered
            await self.answer(nc, msgs[:len(done)], ids, done)
            raise BusError(f"{error}; {len(msgs) - len(done)} messages not acknowledged: JetStream redelivers them "
                           "(a redelivered command is applied once)") from None
        return asyncio.ensure_future(self.answer(nc, msgs, ids, results))

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
