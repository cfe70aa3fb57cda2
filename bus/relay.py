"""`ledger publish` (SPEC §18): the outbox relay from the notification log to NATS JetStream.

Every stored event goes, in notification order, to ``<prefix>.<EventType>`` with the header
``Nats-Msg-Id: <notification id>`` and its §14 machine form as the body.  The relay pulls the
notification log (SQLite recorders cannot subscribe; one poll loop serves both stores), a
batch at a time, publishes the batch pipelined, waits for JetStream's acks (with a timeout)
and only then moves its position, one row of ``publish_tracking`` per stream, in the ledger's
database.  Exactly once (docs/events-bus.md):

- Each message also carries ``Nats-Expected-Last-Msg-Id: <the previous notification id>``:
  JetStream stores a message only right after its predecessor, so the stream is in
  notification order with no gap even though a batch is pipelined; a message whose
  predecessor was lost is refused, and the batch is sent again from the last acked one.
- The crash window: a relay killed after JetStream acked part of a batch and before the
  position moved re-publishes that part on restart.  JetStream drops those by their
  ``Nats-Msg-Id`` (de-duplication comes before the expected-last check) within the stream's
  duplicate window (set explicitly, ``DUPLICATE_WINDOW``), and a restart first reads the id of
  the stream's last message and starts after it, so a restart later than the window
  publishes nothing twice either.
- The position moves only forward and only from the value read (``UPDATE ... WHERE position
  = ?``): two relays on one stream publish the same messages, JetStream keeps one of each.

Every wait has a bound: the connection (``CONNECT_TIMEOUT``), each batch's acks
(``ACK_TIMEOUT``), the store's own bounds.  Stops between batches on ``stop``: the batch in
flight is acked and recorded first.
"""
from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import orjson

from bus.connect import BusError, connect, ensure_stream, jetstream
from ledger.read.render import event_dict
from ledger.domain.times import rfc3339
from ledger.service.app import LedgerApp
from projections.sql import ViewDatabase

PREFIX = "ledger.events"
STREAM = "LEDGER_EVENTS"
BATCH = 1000  # notifications per batch: one pipelined publish, one position move
POLL_SECONDS = 0.2  # float-ok: how often an idle relay asks the log for more
CONNECT_TIMEOUT = 3.0  # float-ok: seconds to reach the server
ACK_TIMEOUT = 10.0  # float-ok: seconds for a whole batch's acks
DUPLICATE_WINDOW = 120.0  # float-ok: seconds JetStream remembers a Nats-Msg-Id
RETRIES = 5  # a batch refused or unacked is sent again this many times, then the relay gives up
MSG_ID = "Nats-Msg-Id"
EXPECTED_LAST = "Nats-Expected-Last-Msg-Id"
WRONG_LAST_MSG_ID = 10070  # JetStream's err_code: the stream's last message is not the one expected

TABLE = ("CREATE TABLE IF NOT EXISTS publish_tracking "
         "(stream TEXT PRIMARY KEY, position BIGINT NOT NULL)")


@dataclass
class Relayed:
    """What one run of the relay did."""

    stream: str
    position: int = 0  # the last notification id JetStream acked and the store recorded
    published: int = 0  # messages JetStream stored
    duplicates: int = 0  # messages JetStream dropped as already stored (the crash window)
    batches: int = 0
    skipped_to: Optional[int] = None  # the stream already held the log up to here at start
    log: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"stream": self.stream, "position": self.position, "published": self.published,
                "duplicates": self.duplicates, "batches": self.batches, "skipped_to": self.skipped_to}


# --- the position ---------------------------------------------------------------------------
def position(db: ViewDatabase, stream: str) -> int:
    """The last notification id recorded as published to ``stream`` (0: none)."""
    rows = db.rows("SELECT position FROM publish_tracking WHERE stream = ?", [stream])
    return int(rows[0][0]) if rows else 0


def create(db: ViewDatabase, stream: str) -> None:
    with db.transaction():
        if db.postgres:  # two relays starting at once: CREATE TABLE IF NOT EXISTS is no lock there
            db.rows("SELECT pg_advisory_xact_lock(hashtext('publish_tracking'))")
        db.execute(TABLE)
        db.execute("INSERT INTO publish_tracking (stream, position) VALUES (?, 0) ON CONFLICT (stream) DO NOTHING",
                   [stream])


def move(db: ViewDatabase, stream: str, start: int, to: int) -> bool:
    """Record ``to`` as published, if the position is still ``start`` (else another relay
    moved it: False)."""
    with db.transaction():
        return db.execute("UPDATE publish_tracking SET position = ? WHERE stream = ? AND position = ?",
                          [to, stream, start]) == 1


# --- the bus --------------------------------------------------------------------------------
async def stream_last(js: Any, stream: str) -> int:
    """The notification id of the stream's last message (0: the stream is empty)."""
    info = await js.stream_info(stream)
    if not info.state.last_seq or not info.state.messages:
        return 0
    msg = await js.get_msg(stream, seq=info.state.last_seq)
    text = (msg.headers or {}).get(MSG_ID, "")
    if not text.isdigit():
        raise BusError(f"stream {stream}'s last message (sequence {info.state.last_seq}) has no notification id: "
                       "something other than the relay publishes to its subjects")
    return int(text)


def machine_event(notification: Any, event: Any) -> dict[str, Any]:
    """The §14 event (as ``history --json`` shows it, with its account or aggregate).
    The index aggregates' upkeep events that carry no instant have ``"at": null``."""
    row = event_dict(notification.originator_id, event)
    at = getattr(event, "at", None)
    return {"type": row.pop("type"), "at": rfc3339(at) if at is not None else None, "seq": event.originator_version,
            **{k: v for k, v in row.items() if k != "at"}}


class Relay:
    """One relay from ``app``'s log to ``stream``, its position in ``db``."""

    def __init__(self, app: LedgerApp, db: ViewDatabase, *, url: str, stream: str = STREAM, prefix: str = PREFIX,
                 batch: int = BATCH, poll: float = POLL_SECONDS, ack_timeout: float = ACK_TIMEOUT) -> None:  # float-ok
        self.app, self.db, self.url, self.stream, self.prefix = app, db, url, stream, prefix
        self.batch, self.poll, self.ack_timeout = batch, poll, ack_timeout
        self.done = Relayed(stream)

    async def run(self, stop: Callable[[], bool], until_idle: Optional[float] = None) -> Relayed:  # float-ok
        """Relay until ``stop()`` or, with ``until_idle``, until caught up and idle that long."""
        retry = self.app.retry
        nc = await connect(self.url, "ledger publish", timeout=CONNECT_TIMEOUT)
        try:
            js = jetstream(nc, self.ack_timeout, publish_async_max_pending=max(self.batch, 1))
            await ensure_stream(js, self.url, self.stream, [f"{self.prefix}.>"], duplicate_window=DUPLICATE_WINDOW)
            retry.run(lambda: create(self.db, self.stream), "creating the relay's position")
            await self.reconcile(js)
            idle_since = time.monotonic()
            while not stop():
                start = self.done.position
                notifications = retry.run(lambda: self.app.recorder.select_notifications(start=start + 1, limit=self.batch),
                                          "reading the notification log")
                if notifications:
                    await self.send(js, notifications)
                    idle_since = time.monotonic()
                    continue
                if until_idle is not None and time.monotonic() - idle_since >= until_idle:
                    break
                await asyncio.sleep(self.poll)
        finally:
            try:
                await asyncio.wait_for(nc.close(), CONNECT_TIMEOUT)
            except Exception:  # noqa: BLE001 - closing a connection already gone
                pass
        return self.done

    async def reconcile(self, js: Any) -> None:
        """Start after what the stream already holds: the store's position, or the stream's last
        notification id when the relay died after the acks and before recording them."""
        recorded = self.app.retry.run(lambda: position(self.db, self.stream))
        last = await stream_last(js, self.stream)
        if last > recorded:
            head = self.app.recorder.max_notification_id() or 0
            if last > head:
                raise BusError(f"stream {self.stream} holds notification {last}, past this store's last ({head}): "
                               "it relays another ledger")
            self.done.position = recorded
            self.record(last)
            self.done.skipped_to = recorded = self.done.position
        elif last < recorded:
            raise BusError(f"stream {self.stream} ends at notification {last} but the relay recorded {recorded} as "
                           "published: the stream was purged or recreated (publish to a new --stream)")
        self.done.position = recorded

    async def send(self, js: Any, notifications: list[Any]) -> None:
        """Publish one batch, pipelined; record the acked prefix; send the rest again."""
        pending = list(notifications)
        for attempt in range(RETRIES + 1):
            acked, failure = await self.publish(js, pending)
            if acked:
                self.record(pending[acked - 1].id)
                pending = pending[acked:]
            if failure is None:
                self.done.batches += 1
                return
            if getattr(failure, "err_code", None) == WRONG_LAST_MSG_ID and not acked:
                await self.reconcile(js)  # the stream moved on (another relay): start after its end
                pending = [n for n in pending if n.id > self.done.position]
                if not pending:
                    return
            await asyncio.sleep(min(0.1 * 2 ** attempt, 2.0))  # float-ok: back-off seconds
        raise BusError(f"JetStream did not take notification {pending[0].id} in stream {self.stream}: "
                       f"{str(failure) or type(failure).__name__}")

    async def publish(self, js: Any, notifications: list[Any]) -> tuple[int, Optional[BaseException]]:
        """How many of ``notifications``, from the first, JetStream acked; the first failure."""
        previous = self.done.position
        messages = []
        for n in notifications:  # first, outside the bus's failures: an event that cannot be shown is no retry
            headers = {MSG_ID: str(n.id)}
            if previous:
                headers[EXPECTED_LAST] = str(previous)
            shown = machine_event(n, self.app.mapper.to_domain_event(n))
            messages.append((f"{self.prefix}.{shown['type']}", orjson.dumps(shown), headers))
            previous = n.id
        futures = []
        try:
            for subject, payload, headers in messages:
                # wait_stall None: asyncio.wait_for would yield to the loop (and nats-py's flusher would
                # send) once per message.  Never a wait here: at most ``batch`` acks are pending, the limit.
                futures.append(await js.publish_async(subject, payload, wait_stall=None, headers=headers))
            acks = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), self.ack_timeout)
        except Exception as error:  # noqa: BLE001 - a stalled or lost connection, a timeout
            for f in futures:
                f.cancel()
            acks = [f.result() if f.done() and not f.cancelled() and f.exception() is None else error for f in futures]
            acks += [error] * (len(notifications) - len(acks))
        acked = 0
        for ack in acks:
            if isinstance(ack, BaseException):
                return acked, ack
            if ack.duplicate:
                self.done.duplicates += 1
            else:
                self.done.published += 1
            acked += 1
        return acked, None

    def record(self, to: int) -> None:
        start = self.done.position
        if not self.app.retry.run(lambda: move(self.db, self.stream, start, to), "recording the relay's position"):
            to = max(to, self.app.retry.run(lambda: position(self.db, self.stream)))  # another relay moved it
        self.done.position = to


def relay(app: LedgerApp, db: ViewDatabase, stop: Callable[[], bool] | threading.Event, *,
          until_idle: Optional[float] = None, **options: Any) -> Relayed:  # float-ok
    """Run a ``Relay`` to the end on its own event loop (``options``: Relay's keywords)."""
    from nats.errors import Error as NatsError

    stopped = stop.is_set if isinstance(stop, threading.Event) else stop
    one = Relay(app, db, **options)
    try:
        return asyncio.run(one.run(stopped, until_idle))
    except NatsError as error:  # the connection lost, a JetStream request timed out: one line
        raise BusError(f"NATS at {one.url} failed: {str(error) or type(error).__name__} "
                       f"(position {one.done.position} recorded)") from None
