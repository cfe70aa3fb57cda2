"""`ledger publish` (SPEC §18) against the machine's NATS server, on SQLite and PostgreSQL.

P1  Every stored event is in the stream once, in notification order: subject
    ``<prefix>.<EventType>``, header ``Nats-Msg-Id`` = notification id, body the §14 event
    (as ``history --json`` shows it, with its account).
P2  A second run publishes only what is new; the position survives in the store.
P3  The crash window: a relay that dies after JetStream acked a batch and before recording
    it publishes nothing twice on restart (it starts after the stream's last id); a relay
    whose position lags the stream (JetStream de-duplication) neither.
P4  SIGKILL mid-run, then a restart: each notification id once, no gap; SIGTERM stops cleanly.
P5  Two relays at once on one stream: each id once.
P6  No NATS: one line, exit 2, no traceback.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from bus import relay as bus
from entrypoints.compose import Root
from tests import natsutil
from tests.helpers import ledger_cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def names() -> Iterator[tuple[str, str]]:
    natsutil.require_server()
    stream, prefix = natsutil.names("PUB")
    yield stream, prefix
    natsutil.delete_stream(stream)


def deposits(url: str, count: int, start: int = 0) -> None:
    lines = [{"type": "open_account", "account": "alice", "at": "2026-03-01T00:00:00Z"}] if not start else []
    lines += [{"type": "deposit", "account": "alice", "currency": "USDT", "amount": f"{i + 1}.5",
               "at": f"2026-03-01T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z", "command_id": f"d{i}"}
              for i in range(start, start + count)]
    result = ledger_cli(url, "apply", "-", input="".join(json.dumps(line) + "\n" for line in lines))
    assert result.exit_code == 0, result.output


def publish(url: str, stream: str, prefix: str, *more: str) -> dict[str, Any]:
    result = ledger_cli(url, "publish", "--stream", stream, "--events-prefix", prefix, "--until-idle", "0.3",
                        "--nats", natsutil.URL, "--json", *more)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def opened(url: str) -> tuple[Any, Any]:
    root = Root.load(database_url=url)
    return root.open_app(), root.open_views()


def head(url: str) -> int:
    app, db = opened(url)
    try:
        return app.recorder.max_notification_id() or 0
    finally:
        db.close()
        app.close()


def recorded(url: str, stream: str) -> int:
    app, db = opened(url)
    try:
        return bus.position(db, stream)
    finally:
        db.close()
        app.close()


def ids_in(stream: str) -> list[int]:
    return [int(m.headers[bus.MSG_ID]) for m in natsutil.stream_messages(stream)]


def assert_exactly_the_log(url: str, stream: str) -> None:
    """The stream holds notification 1 .. head, each once, in order (no gap)."""
    ids = ids_in(stream)
    assert ids == list(range(1, head(url) + 1)), (len(ids), ids[:5], ids[-5:])


def test_every_event_is_published_once_in_order_with_subject_header_and_body(db_url: str, names: tuple[str, str]) -> None:
    stream, prefix = names
    deposits(db_url, 25)
    assert ledger_cli(db_url, "repayment", "run").exit_code == 0  # the job logs' events too (no account, no at)
    done = publish(db_url, stream, prefix)
    app, db = opened(db_url)
    try:
        notes = app.recorder.select_notifications(start=1, limit=10_000)
    finally:
        db.close()
        app.close()
    messages = natsutil.stream_messages(stream)
    assert done["published"] == len(notes) == len(messages) == done["position"] == notes[-1].id
    history = json.loads(ledger_cli(db_url, "history", "alice", "--json").output)
    alice = []
    for note, msg in zip(notes, messages):
        shown = json.loads(msg.data)
        assert msg.headers[bus.MSG_ID] == str(note.id)
        assert msg.subject == f"{prefix}.{shown['type']}"
        if note.originator_id == "account/alice":
            alice.append(shown)
    assert [{k: v for k, v in e.items() if k != "account"} for e in alice] == history  # §14, as history shows it
    assert all(e["account"] == "alice" for e in alice)
    assert {"RunLogOpened", "SweepCompleted"} <= {json.loads(m.data)["type"] for m in messages}
    assert [e["amount"] for e in alice if e["type"] == "Deposited"] == [f"{i + 1}.5" for i in range(25)]


def test_a_second_run_publishes_only_what_is_new_and_the_position_survives(db_url: str, names: tuple[str, str]) -> None:
    stream, prefix = names
    deposits(db_url, 10)
    first = publish(db_url, stream, prefix)
    assert recorded(db_url, stream) == first["position"] == head(db_url)
    assert publish(db_url, stream, prefix)["published"] == 0
    deposits(db_url, 7, start=10)
    second = publish(db_url, stream, prefix, "--batch", "3")
    assert second["published"] == head(db_url) - first["position"] and second["duplicates"] == 0
    assert recorded(db_url, stream) == head(db_url)
    assert_exactly_the_log(db_url, stream)


class Crash(Exception):
    pass


class DiesAfterAcks(bus.Relay):
    """Dies after JetStream acked its ``after``-th batch, before recording it: the crash window."""

    def __init__(self, *args: Any, after: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.after = after

    def record(self, to: int) -> None:
        if self.done.batches + 1 == self.after:
            raise Crash(to)
        super().record(to)


def run_relay(url: str, stream: str, prefix: str, relay_class: type = bus.Relay, **kwargs: Any) -> bus.Relayed:
    import asyncio

    app, db = opened(url)
    try:
        one = relay_class(app, db, url=natsutil.URL, stream=stream, prefix=prefix, **kwargs)
        return asyncio.run(one.run(lambda: False, until_idle=0.2))
    finally:
        db.close()
        app.close()


def test_the_crash_window_publishes_nothing_twice(db_url: str, names: tuple[str, str]) -> None:
    stream, prefix = names
    deposits(db_url, 30)
    with pytest.raises(Crash):
        run_relay(db_url, stream, prefix, DiesAfterAcks, batch=10, after=2)
    assert recorded(db_url, stream) == 10  # the second batch is in the stream, not in the position
    assert len(ids_in(stream)) == 20
    again = run_relay(db_url, stream, prefix, batch=10)
    assert again.skipped_to == 20 and again.published == head(db_url) - 20 and again.duplicates == 0
    assert_exactly_the_log(db_url, stream)
    assert recorded(db_url, stream) == head(db_url)


def test_a_lagging_position_is_dropped_by_jetstream_deduplication(db_url: str, names: tuple[str, str]) -> None:
    """The relay's reconcile is skipped: only JetStream's duplicate window stands between a
    re-publish and a second copy."""
    stream, prefix = names
    deposits(db_url, 12)
    run_relay(db_url, stream, prefix, batch=5)

    class Forgetful(bus.Relay):
        async def reconcile(self, js: Any) -> None:  # the position set back to 0, the stream not asked
            bus.move(self.db, self.stream, bus.position(self.db, self.stream), 0)
            self.done.position = 0

    again = run_relay(db_url, stream, prefix, Forgetful, batch=5)
    assert again.published == 0 and again.duplicates == head(db_url)
    assert_exactly_the_log(db_url, stream)


def test_two_relays_at_once_publish_each_event_once(db_url: str, names: tuple[str, str]) -> None:
    stream, prefix = names
    deposits(db_url, 300)
    results: list[bus.Relayed] = []
    threads = [threading.Thread(target=lambda: results.append(run_relay(db_url, stream, prefix, batch=7)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 2
    assert sum(r.published for r in results) == head(db_url)
    assert_exactly_the_log(db_url, stream)
    assert recorded(db_url, stream) == head(db_url)


def spawn(url: str, stream: str, prefix: str, *more: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "entrypoints", "--db", url, "publish", "--stream", stream,
                             "--events-prefix", prefix, "--nats", natsutil.URL, "--json", *more],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ))


def stream_count(stream: str) -> int:
    async def count(js: Any) -> int:
        try:
            return int((await js.stream_info(stream)).state.messages)
        except Exception:  # noqa: BLE001 - not made yet
            return 0

    return natsutil.run_js(count)


def wait_for(condition: Any, seconds: float = 60) -> None:  # float-ok
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_sigkill_mid_run_then_restart_leaves_each_id_once_and_no_gap(db_url: str, names: tuple[str, str]) -> None:
    stream, prefix = names
    deposits(db_url, 3000)
    total = head(db_url)
    proc = spawn(db_url, stream, prefix, "--batch", "5")
    try:
        wait_for(lambda: stream_count(stream) >= 100 or proc.poll() is not None)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    held = stream_count(stream)
    assert 0 < held < total, f"the relay was not killed mid-run ({held} of {total})"
    assert recorded(db_url, stream) <= held
    done = publish(db_url, stream, prefix)
    assert done["position"] == total and done["published"] == total - held
    assert_exactly_the_log(db_url, stream)


def test_sigterm_stops_cleanly_after_the_batch_in_flight(db_url: str, names: tuple[str, str]) -> None:
    stream, prefix = names
    deposits(db_url, 20)
    proc = spawn(db_url, stream, prefix)
    try:
        wait_for(lambda: recorded_or_zero(db_url, stream) == head(db_url))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert json.loads(out)["position"] == head(db_url) == recorded(db_url, stream)
    assert_exactly_the_log(db_url, stream)


def recorded_or_zero(url: str, stream: str) -> int:
    try:
        return recorded(url, stream)
    except Exception:  # noqa: BLE001 - the table is not made yet
        return 0


def test_no_nats_is_one_line_and_exit_2(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    result = subprocess.run([sys.executable, "-m", "entrypoints", "--db", url, "publish", "--nats",
                             "nats://127.0.0.1:1", "--until-idle", "0"],
                            cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.startswith("ledger: cannot reach NATS at nats://127.0.0.1:1") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr + result.stdout


def test_a_stream_that_lost_what_the_relay_recorded_is_refused(db_url: str, names: tuple[str, str]) -> None:
    stream, prefix = names
    deposits(db_url, 3)
    publish(db_url, stream, prefix)
    natsutil.delete_stream(stream)  # recreated empty by the next run: the position is past it
    result = ledger_cli(db_url, "publish", "--stream", stream, "--events-prefix", prefix, "--until-idle", "0",
                        "--nats", natsutil.URL)
    assert result.exit_code == 2 and "purged or recreated" in result.output


def worker(url: str, stream: str, prefix: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "entrypoints", "--db", url, "worker", "--publish", "--publish-stream",
                             stream, "--events-prefix", prefix, "--json"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **env})


def test_the_worker_publishes_as_events_are_recorded_and_stops_cleanly(db_url: str, names: tuple[str, str]) -> None:
    stream, prefix = names
    deposits(db_url, 5)
    proc = worker(db_url, stream, prefix, LEDGER_NATS_URL=natsutil.URL)
    try:
        wait_for(lambda: stream_count(stream) == head(db_url))
        deposits(db_url, 4, start=5)  # recorded while the worker runs
        wait_for(lambda: stream_count(stream) == head(db_url))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["publish"]["position"] == head(db_url) and not summary["failures"]
    assert_exactly_the_log(db_url, stream)


def test_the_worker_without_nats_says_so_and_exits_2(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    proc = worker(url, "UNUSED", "unused", LEDGER_NATS_URL="nats://127.0.0.1:1")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    lines = [json.loads(line) for line in err.decode().splitlines()]
    [failure] = [line for line in lines if line["level"] == "error"]
    assert failure["event"] == "publish job failed" and "cannot reach NATS at nats://127.0.0.1:1" in failure["error"]
    assert "Traceback" not in err.decode()
