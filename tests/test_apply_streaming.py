"""§12 *Streaming* and *Result*: `ledger apply -` as a long-lived pipe (a real process), on both
stores.  A producer that writes one line and waits gets its result without closing the pipe;
every result echoes the command's `command_id`; results stay in order, one per line."""
from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
WAIT = 10.0  # float-ok: seconds a result may take before the test fails (it should take ~0.1)


class Pipe:
    """`ledger apply -` in its own process, fed and read line by line."""

    def __init__(self, db_url: str) -> None:
        # preexec_fn: SIGINT as a terminal's foreground process has it, even when the tests run
        # as a background job (which ignores SIGINT, and its children inherit that)
        self.proc = subprocess.Popen([sys.executable, "-m", "entrypoints", "--db", db_url, "apply", "-"], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.proc.stdout, selectors.EVENT_READ)
        self.pending = b""

    def send(self, *cmds: Any) -> None:
        for cmd in cmds:
            self.proc.stdin.write((cmd if isinstance(cmd, bytes) else json.dumps(cmd).encode()) + b"\n")
        self.proc.stdin.flush()

    def results(self, count: int) -> list[dict[str, Any]]:
        """The next ``count`` result lines, read while the pipe stays open (fails after WAIT)."""
        deadline = time.monotonic() + WAIT
        while self.pending.count(b"\n") < count:
            left = deadline - time.monotonic()
            assert left > 0 and self.selector.select(left), f"no result within {WAIT} s, the pipe still open"
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            assert chunk, f"apply ended early: {self.proc.stderr.read().decode()}"
            self.pending += chunk
        *lines, self.pending = self.pending.split(b"\n", count)
        return [json.loads(line) for line in lines]

    def close(self) -> tuple[int, str]:
        self.proc.stdin.close()
        rest = self.proc.stdout.read()
        err = self.proc.stderr.read().decode()
        code = self.proc.wait(timeout=60)
        assert rest == self.pending == b"", "no result after the input ended"
        assert "Traceback" not in err, err
        return code, err


@pytest.fixture
def pipe(db_url: str):  # type: ignore[no-untyped-def]
    p = Pipe(db_url)
    yield p
    if p.proc.poll() is None:
        p.proc.kill()
        p.proc.wait()


def opened(name: str, **more: Any) -> dict[str, Any]:
    return {"type": "open_account", "account": name, **more}


def test_one_line_is_answered_before_the_pipe_closes(pipe: Pipe) -> None:
    pipe.send(opened("kim", command_id="o-kim"))
    [result] = pipe.results(1)
    assert result["ok"] and result["command_id"] == "o-kim"
    assert result["events"][0]["account"] == "kim"
    pipe.send({"type": "deposit", "account": "kim", "currency": "USDT", "amount": "5"})
    [again] = pipe.results(1)
    assert again["ok"] and "command_id" not in again
    assert pipe.close() == (0, "")


def test_lines_in_a_row_and_command_ids_of_every_kind(pipe: Pipe) -> None:
    dep = {"type": "deposit", "account": "ann", "currency": "USDT", "amount": "10", "command_id": "d-1"}
    pipe.send(opened("ann", command_id="o-ann"), dep, b"", dep,
              {"type": "withdraw", "account": "ann", "currency": "USDT", "amount": "99", "command_id": "w-1"},
              {"type": "deposit", "account": "ann", "currency": "USDT", "amount": "-1", "command_id": "bad-amount"},
              {"type": "deposit", "account": "ann", "command_id": 7}, b"{not json", b"   ")
    got = pipe.results(7)
    assert [r["ok"] for r in got] == [True, True, True, False, False, False, False]
    assert [r.get("command_id") for r in got] == ["o-ann", "d-1", "d-1", "w-1", "bad-amount", None, None]
    assert got[2]["duplicate"] is True and got[2]["events"] == got[1]["events"]
    assert [r["error"]["code"] for r in got[3:]] == ["insufficient_balance", "validation_error",
                                                   "validation_error", "validation_error"]
    for n in range(20):  # one at a time, each answered before the next is sent
        pipe.send(opened(f"s{n}", command_id=f"s-{n}"))
        [result] = pipe.results(1)
        assert result["command_id"] == f"s-{n}" and result["events"][0]["account"] == f"s{n}"
    code, err = pipe.close()
    assert code == 1 and err == ""


def test_a_flowing_pipe_is_answered_in_order(pipe: Pipe) -> None:
    pipe.send(*[opened(f"f{n}", command_id=f"f-{n}") for n in range(300)])
    got = pipe.results(300)
    assert [r["command_id"] for r in got] == [f"f-{n}" for n in range(300)] and all(r["ok"] for r in got)
    assert pipe.close() == (0, "")


def test_ctrl_c_and_a_closed_output_are_no_traceback(pipe: Pipe, db_url: str) -> None:
    pipe.send(opened("int"))
    pipe.results(1)
    pipe.proc.send_signal(signal.SIGINT)
    assert pipe.proc.wait(timeout=30) == 130
    assert "Traceback" not in pipe.proc.stderr.read().decode()
    reader = Pipe(db_url)
    reader.send(opened("gone"))
    reader.results(1)
    reader.proc.stdout.close()  # nobody reads the results any more
    try:
        reader.send(opened("gone2"))
        reader.proc.stdin.close()
    except BrokenPipeError:  # it went first
        pass
    assert reader.proc.wait(timeout=30) == 1
    assert "Traceback" not in reader.proc.stderr.read().decode()


def test_a_trickle_that_never_pauses_is_answered_while_it_flows(pipe: Pipe) -> None:
    """A line every millisecond never leaves the input idle for 5 ms, yet the first lines are
    answered while the producer still writes: a batch goes out once its oldest line waited
    50 ms (MAX_WAIT), not only at 2,000 lines or at the end."""
    import threading

    done = threading.Event()
    pipe.send(opened("warm", command_id="warm"))
    assert pipe.results(1)[0]["command_id"] == "warm"  # the process is up: its start-up is not the trickle's

    def produce() -> None:
        for n in range(1500):  # 1.5 s of input at least, fewer lines than a full batch
            pipe.send(opened(f"t{n}", command_id=f"t-{n}"))
            until = time.perf_counter() + 0.001  # float-ok: seconds; a busy wait, as sleep() may oversleep 5 ms
            while time.perf_counter() < until:
                pass
        done.set()

    writer = threading.Thread(target=produce, daemon=True)
    writer.start()
    [first] = pipe.results(1)
    assert first["command_id"] == "t-0" and not done.is_set(), "no answer until the trickle ended"
    got = pipe.results(1499)  # read while the writer writes: a full output pipe would stop apply reading
    writer.join(timeout=60)
    assert [r["command_id"] for r in got] == [f"t-{n}" for n in range(1, 1500)]
    assert pipe.close() == (0, "")
