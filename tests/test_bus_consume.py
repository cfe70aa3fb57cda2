"""`ledger consume` (SPEC §18) against the machine's real NATS server, on both stores:
a crash mid-batch and a restart, poison messages, several consumers on one durable, where
results go, --until-idle and SIGTERM, shards (docs/scaling.md), and the worker's consumer."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Iterator

import pytest

from tests import natsutil
from tests.bus_helpers import ROOT, Bus, consume_args, finished, run_consume, start
from tests.helpers import ledger_cli

D = Decimal


@pytest.fixture
def bus() -> Iterator[Bus]:
    b = Bus()
    yield b
    b.close()


def open_accounts(db_url: str, names: list[str], parents: dict[str, str] | None = None) -> None:
    parents = parents or {}
    lines = "".join(json.dumps({"type": "open_account", "account": n, **({"parent": parents[n]} if n in parents else {})})
                    + "\n" for n in names)
    done = ledger_cli(db_url, "apply", "-", input=lines)
    assert done.exit_code == 0, done.output


def cash(db_url: str, account: str, currency: str = "USDT") -> Decimal:
    shown = ledger_cli(db_url, "account", "show", account, "--json")
    assert shown.exit_code == 0, shown.output
    return D(json.loads(shown.output)["wallets"]["spot"].get(currency, "0"))


def deposits(accounts: list[str], count: int, with_ids_every: int = 3) -> tuple[list[dict[str, Any]], dict[str, Decimal]]:
    """``count`` deposits spread over ``accounts`` (every third with a command_id of its own,
    the rest identified by their stream sequence) and what each account ends with."""
    bodies, totals = [], {a: D(0) for a in accounts}
    for i in range(count):
        account, amount = accounts[i % len(accounts)], D(i % 7 + 1) / 4
        body = {"type": "deposit", "account": account, "currency": "USDT", "amount": str(amount)}
        if i % with_ids_every == 0:
            body["command_id"] = f"dep-{i}"
        bodies.append(body)
        totals[account] += amount
    return bodies, totals


def drained(bus: Bus, stream: str, durable: str) -> None:
    """Every message delivered and acked: none waiting, none in flight."""
    info = bus.consumer_info(stream, durable)
    assert (info.num_pending, info.num_ack_pending) == (0, 0), info


# --- a crash mid-batch ----------------------------------------------------------------------------
def test_sigkill_mid_batch_then_restart_loses_nothing_and_doubles_nothing(bus: Bus, db_url: str) -> None:
    stream, prefix = bus.stream("KILL")
    accounts = [f"k{i}" for i in range(20)]
    open_accounts(db_url, accounts)
    bus.listen(f"{prefix}.results")
    bodies, totals = deposits(accounts, 3000)
    bus.publish(f"{prefix}.commands.all", bodies)
    proc = start(consume_args(db_url, stream, prefix, "--batch", "250", "--ack-wait", "2"))
    try:
        bus.wait_results(f"{prefix}.results", 300, timeout=90)  # well into its batches
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    before = len(bus.results(f"{prefix}.results"))
    assert before < len(bodies), "killed after the end: nothing was in flight"
    code, summary, err = run_consume(consume_args(db_url, stream, prefix, "--batch", "250", "--until-idle", "4"))
    assert code == 0, err
    assert summary["stopped"] == "idle" and summary["rejected"] == 0, summary
    assert summary["messages"] >= len(bodies) - before, summary
    assert summary["redelivered"] > 0, summary  # the batch in flight when it was killed came again
    for account, total in totals.items():
        assert cash(db_url, account) == total, account  # nothing lost, nothing applied twice
    results = bus.results(f"{prefix}.results")
    answered = {r["command_id"] for r in results}
    assert answered == {b["command_id"] for b in bodies if "command_id" in b} | \
        {f"nats:{stream}:{seq}" for seq, b in enumerate(bodies, 1) if "command_id" not in b}
    assert all(r["ok"] for r in results)
    drained(bus, stream, "ledger")


# --- poison --------------------------------------------------------------------------------------
def test_poison_messages_get_their_validation_error_and_are_acked(bus: Bus, db_url: str) -> None:
    stream, prefix = bus.stream("POISON")
    open_accounts(db_url, ["p1"])
    bus.listen(f"{prefix}.results")
    poison: list[Any] = [b"not json", b"\xff\xfe not utf-8", b'{"type": "deposit", "type": "x"}', b"[1, 2]",
                         {"type": "levitate", "account": "p1"},
                         {"type": "deposit", "account": "p1", "currency": "USDT", "amount": "-5"},
                         {"type": "deposit", "account": "p1", "currency": "USDT", "amount": "5", "command_id": "bad id!"}]
    good = {"type": "deposit", "account": "p1", "currency": "USDT", "amount": "7.5"}
    bus.publish(f"{prefix}.commands.p", [*poison, good])
    code, summary, err = run_consume(consume_args(db_url, stream, prefix, "--until-idle", "2"))
    assert code == 0, err
    assert summary["messages"] == 8 and summary["rejected"] == 7, summary
    results = sorted(bus.wait_results(f"{prefix}.results", 8), key=lambda r: r["command_id"])
    by_id = {r["command_id"]: r for r in results}
    for seq in range(1, 7):
        assert by_id[f"nats:{stream}:{seq}"]["error"]["code"] == "validation_error", by_id
    assert by_id["bad id!"]["error"]["code"] == "validation_error"
    assert by_id[f"nats:{stream}:8"]["ok"] is True
    assert cash(db_url, "p1") == D("7.5")
    drained(bus, stream, "ledger")
    info = bus.consumer_info(stream, "ledger")
    assert info.num_redelivered == 0
    code, again, err = run_consume(consume_args(db_url, stream, prefix, "--until-idle", "1"))
    assert (code, again["messages"]) == (0, 0), (again, err)  # never redelivered


# --- several consumers on one durable -----------------------------------------------------------
def test_two_consumers_on_one_durable_share_the_work(bus: Bus, db_url: str) -> None:
    stream, prefix = bus.stream("SHARE")
    accounts = [f"s{i}" for i in range(10)]
    open_accounts(db_url, accounts)
    bus.listen(f"{prefix}.results")
    # the durable exists before either starts (both would make the same one: the second finds it)
    first = run_consume(consume_args(db_url, stream, prefix, "--until-idle", "0.5", "--batch", "50"))
    assert first[0] == 0, first[2]
    bodies, totals = deposits(accounts, 2000)
    procs = [start(consume_args(db_url, stream, prefix, "--until-idle", "3", "--batch", "50")) for _ in range(2)]
    time.sleep(1)
    bus.publish(f"{prefix}.commands.x", bodies)
    done = [finished(p) for p in procs]
    assert [code for code, _, _ in done] == [0, 0], [err for _, _, err in done]
    counts = [summary["messages"] for _, summary, _ in done]
    assert all(c > 0 for c in counts) and sum(counts) == len(bodies), counts
    for account, total in totals.items():
        assert cash(db_url, account) == total
    assert len(bus.wait_results(f"{prefix}.results", len(bodies))) == len(bodies)
    drained(bus, stream, "ledger")


# --- where results go ------------------------------------------------------------------------------
def test_results_go_to_the_reply_subject_else_the_results_subject(bus: Bus, db_url: str) -> None:
    stream, prefix = bus.stream("REPLY")
    open_accounts(db_url, ["r1"])
    bus.listen(f"{prefix}.results")
    bus.listen(f"{prefix}.inbox.r1")
    bus.publish(f"{prefix}.commands.r", [{"type": "deposit", "account": "r1", "currency": "USDT", "amount": "2",
                                          "command_id": "with-reply"}], headers={"Reply-To": f"{prefix}.inbox.r1"})
    bus.publish(f"{prefix}.commands.r", [{"type": "withdraw", "account": "r1", "currency": "USDT", "amount": "50"},
                                         {"type": "deposit", "account": "r1", "currency": "USDT", "amount": "1",
                                          "command_id": "plain"}])
    code, summary, err = run_consume(consume_args(db_url, stream, prefix, "--until-idle", "2"))
    assert code == 0, err
    [replied] = bus.wait_results(f"{prefix}.inbox.r1", 1)
    assert replied["command_id"] == "with-reply" and replied["ok"] is True
    assert replied["events"][0]["type"] == "Deposited" and D(replied["events"][0]["amount"]) == 2
    others = bus.wait_results(f"{prefix}.results", 2)
    assert [r["command_id"] for r in others] == [f"nats:{stream}:2", "plain"]
    assert others[0]["ok"] is False and others[0]["error"]["code"] == "insufficient_balance", others[0]
    assert summary["rejected"] == 1
    assert cash(db_url, "r1") == D(3)


# --- until idle, SIGTERM ---------------------------------------------------------------------------
def test_until_idle_exits_zero_after_that_long_without_messages(bus: Bus, db_url: str) -> None:
    stream, prefix = bus.stream("IDLE", create=False)
    open_accounts(db_url, ["i1"])
    started = time.monotonic()
    code, summary, err = run_consume(consume_args(db_url, stream, prefix, "--until-idle", "1.5"))
    assert code == 0, err
    assert summary == {"messages": 0, "batches": 0, "rejected": 0, "redelivered": 0, "stopped": "idle"}
    assert 1.5 <= time.monotonic() - started < 30
    # messages keep it going: idle counts from the last one
    proc = start(consume_args(db_url, stream, prefix, "--until-idle", "2"))
    bus.wait_stream(stream)
    for _ in range(3):
        time.sleep(1)
        bus.publish(f"{prefix}.commands.i", [{"type": "deposit", "account": "i1", "currency": "USDT", "amount": "1"}])
    code, summary, err = finished(proc)
    assert code == 0 and summary["messages"] == 3, (summary, err)


def test_sigterm_finishes_the_batch_and_exits_zero(bus: Bus, db_url: str) -> None:
    from nats.js.api import RetentionPolicy

    stream, prefix = bus.stream("TERM", create=False)
    open_accounts(db_url, ["t1"])
    bus.listen(f"{prefix}.results")
    proc = start(consume_args(db_url, stream, prefix))
    made = bus.wait_stream(stream)  # the stream is made when missing
    assert made.config.retention == RetentionPolicy.WORK_QUEUE and made.config.subjects == [f"{prefix}.commands.>"]
    bus.publish(f"{prefix}.commands.t", [{"type": "deposit", "account": "t1", "currency": "USDT", "amount": "1"}] * 50)
    bus.wait_results(f"{prefix}.results", 50)
    proc.send_signal(signal.SIGTERM)
    code, summary, err = finished(proc, timeout=30)
    assert code == 0 and summary["stopped"] == "signal" and summary["messages"] == 50, (summary, err)
    assert err == ""
    assert cash(db_url, "t1") == D(50)
    drained(bus, stream, "ledger")


# --- shards (docs/scaling.md) ---------------------------------------------------------------------
def test_two_shards_each_apply_their_own_commands(bus: Bus, db_url: str) -> None:
    """One durable per shard subject: each consumer applies its shard's commands and only them;
    a master and its sub are in one shard, so their transfer is applied where both live."""
    stream, prefix = bus.stream("SHARD")
    shards = {"0": ["m0", "m0-sub", "x0"], "1": ["m1", "m1-sub", "x1"]}
    open_accounts(db_url, ["m0", "m1", "x0", "x1"])
    open_accounts(db_url, ["m0-sub", "m1-sub"], parents={"m0-sub": "m0", "m1-sub": "m1"})
    sent: dict[str, set[str]] = {}
    for shard, (master, sub, other) in shards.items():
        bus.listen(f"{prefix}.results.{shard}")
        bodies = [{"type": "deposit", "account": a, "currency": "USDT", "amount": "10", "command_id": f"{shard}-dep-{a}"}
                  for a in (master, other)]
        bodies.append({"type": "transfer", "from_account": master, "to_account": sub, "currency": "USDT",
                       "amount": "4", "command_id": f"{shard}-move"})
        bus.publish(f"{prefix}.commands.{shard}", bodies)
        sent[shard] = {b["command_id"] for b in bodies}
    procs = {shard: start([sys.executable, "-m", "entrypoints", "--db", db_url, "consume", "--stream", stream,
                           "--subject", f"{prefix}.commands.{shard}", "--durable", f"shard-{shard}",
                           "--results-subject", f"{prefix}.results.{shard}", "--until-idle", "2", "--json"])
             for shard in shards}
    for shard, proc in procs.items():
        code, summary, err = finished(proc)
        assert code == 0 and summary["messages"] == 3 and summary["rejected"] == 0, (shard, summary, err)
        results = bus.wait_results(f"{prefix}.results.{shard}", 3)
        assert {r["command_id"] for r in results} == sent[shard]
    for master, sub, other in shards.values():
        assert (cash(db_url, master), cash(db_url, sub), cash(db_url, other)) == (D(6), D(4), D(10))
    for shard in shards:
        drained(bus, stream, f"shard-{shard}")


# --- the worker's consumer -------------------------------------------------------------------------
def test_the_worker_loop_consumes_through_the_composition_root(bus: Bus, db_url: str) -> None:
    from entrypoints.compose import Root

    stream, prefix = bus.stream("WORKER")
    open_accounts(db_url, ["w1"])
    bus.publish(f"{prefix}.commands.w", [{"type": "deposit", "account": "w1", "currency": "USDT", "amount": "3"}])
    root = Root.load(database_url=db_url, nats_url=natsutil.URL)
    loop = root.consumer(lambda: datetime.now(timezone.utc), stream=stream, subject=f"{prefix}.commands.>",
                         results_subject=f"{prefix}.results", until_idle=1.5)
    assert loop(lambda: False)["messages"] == 1
    assert cash(db_url, "w1") == D(3)


def test_the_worker_restarts_a_loop_that_failed() -> None:
    from workers.scheduler import keep_running

    stopping, calls = threading.Event(), []

    def loop(stop: Any) -> dict[str, Any]:
        calls.append(stop())
        if len(calls) == 1:
            raise RuntimeError("the bus went away")
        return {"messages": 0}

    import workers.scheduler as scheduler

    scheduler.RESTART_AFTER, saved = 0, scheduler.RESTART_AFTER
    try:
        keep_running("consume", loop, stopping)
    finally:
        scheduler.RESTART_AFTER = saved
    assert calls == [False, False]


# --- no server ---------------------------------------------------------------------------------------
def test_no_server_is_one_line_and_exit_2(tmp_path: Any) -> None:
    done = subprocess.run([sys.executable, "-m", "entrypoints", "--db", f"sqlite:///{tmp_path / 'x.db'}", "consume",
                           "--nats", "nats://127.0.0.1:1", "--until-idle", "1"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("ledger: cannot reach NATS at nats://127.0.0.1:1:"), done.stderr
