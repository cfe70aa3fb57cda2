"""`ledger serve` under load, on both stores: 32 concurrent clients on two server processes
sharing one store lose nothing (group commit, the store deciding between the processes);
the results are those of `ledger apply` on the same commands; SIGTERM answers what is in
flight and exits 0."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import pg
from tests.helpers import at, ledger_cli
from tests.serving import Server, free_port, token

CLIENTS, EACH = 32, 12


def fresh_url(store: str, folder: Path, name: str) -> str:
    return f"sqlite:///{folder / name}" if store == "sqlite" else pg.new_database()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_32_concurrent_clients_on_two_processes_lose_nothing(store: str, tmp_path: Path) -> None:
    url = fresh_url(store, tmp_path, "load.db")
    secret = token(url, "load", "ingest", "read")
    servers = [Server(url, tmp_path / f"serve{n}.log") for n in range(2)]
    lose_nothing(url, secret, servers)


def test_processes_2_shares_one_port_and_loses_nothing(store: str, tmp_path: Path) -> None:
    url = fresh_url(store, tmp_path, "load.db")
    secret = token(url, "load", "ingest", "read")
    server = Server(url, tmp_path / "serve.log", "--processes", "2")
    children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
    serving = [pid for pid in children if b"multiprocessing" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(serving) >= 2, children  # (the resource tracker is a child too)
    lose_nothing(url, secret, [server, server])


def lose_nothing(url: str, secret: str, servers: list[Server]) -> None:
    """32 clients, dealt to ``servers`` in turn, each depositing to its own account and to a
    shared one at once: every answer ok, every balance exact, the history whole, every server
    exits 0 on SIGTERM, and the store verifies."""
    try:
        with servers[0].client(secret) as c:
            assert c.post("/v1/commands", json={"type": "open_account", "account": "shared", "at": at(0)}).json()["ok"]

        def client(n: int) -> list[dict[str, Any]]:
            mine = f"c{n:02d}"
            cmds = [{"type": "open_account", "account": mine, "at": at(1)}]
            for k in range(EACH):  # the shared account is changed by every client at once
                cmds.append({"type": "deposit", "account": mine, "currency": "USDT", "amount": "1",
                             "command_id": f"{mine}-{k}", "at": at(2 + k)})
                cmds.append({"type": "deposit", "account": "shared", "currency": "USDT", "amount": "1"})
            with servers[n % 2].client(secret) as c:
                return [c.post("/v1/commands", json=cmd).json() for cmd in cmds]

        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = list(pool.map(client, range(CLIENTS)))
        assert all(len(a) == 1 + 2 * EACH for a in answers)
        refused = [r for a in answers for r in a if not r["ok"]]
        assert refused == []
        with servers[1].client(secret) as c:
            views = {name: c.get(f"/v1/accounts/{name}").json() for name in ["shared"] + [f"c{n:02d}" for n in range(CLIENTS)]}
            history = c.get("/v1/accounts/shared/history", params={"limit": 1000}).json()["items"]
        assert Decimal(views["shared"]["balances"]["USDT"]["cash"]) == CLIENTS * EACH
        assert all(Decimal(views[f"c{n:02d}"]["balances"]["USDT"]["cash"]) == EACH for n in range(CLIENTS))
        assert len(history) == 1 + CLIENTS * EACH
        metrics = httpx.get(servers[0].base + "/metrics", headers={"Authorization": f"Bearer {secret}"}).text
        assert "ledger_group_commit_commands_sum" in metrics
    finally:
        codes = [s.stop() for s in dict.fromkeys(servers)]
    assert set(codes) == {0}
    verify = ledger_cli(url, "audit", "verify", "--json")
    assert verify.exit_code == 0 and json.loads(verify.stdout)["ok"], verify.output


COMMANDS = [
    {"type": "set_platform_flags", "whitelist_required": False, "at": at(0)},
    {"type": "set_price", "currency": "BTC", "price": "50000", "at": at(0)},
    {"type": "open_account", "account": "ann", "at": at(1)},
    {"type": "open_account", "account": "ann", "at": at(2)},
    {"type": "complete_risk_assessment", "account": "ann", "score": 60, "agreements_version": "v1", "at": at(2)},
    {"type": "switch_mode", "account": "ann", "mode": "unified", "at": at(3)},
    {"type": "deposit", "account": "ann", "currency": "BTC", "amount": "1", "at": at(4), "command_id": "d1"},
    {"type": "deposit", "account": "ann", "currency": "BTC", "amount": "1", "at": at(4), "command_id": "d1"},
    {"type": "deposit", "account": "ann", "currency": "BTC", "amount": "2", "at": at(4), "command_id": "d1"},
    {"type": "borrow", "account": "ann", "currency": "USDT", "amount": "1000", "at": at(5)},
    {"type": "withdraw", "account": "ann", "currency": "USDT", "amount": "999999", "at": at(6)},
    {"type": "deposit", "account": "ann", "currency": "USDT", "amount": "-5", "at": at(6)},
    {"type": "deposit", "account": "ann", "currency": "USDT", "amount": "5", "at": at(1)},
    {"type": "repay", "account": "ann", "currency": "USDT", "amount": "400", "at": at(7)},
    {"type": "open_account", "account": "bo", "parent": "ann", "at": at(8)},
    {"type": "transfer", "from_account": "ann", "to_account": "bo", "currency": "BTC", "amount": "0.5", "at": at(9)},
]


def test_the_same_results_as_ledger_apply(store: str, tmp_path: Path) -> None:
    served, applied = fresh_url(store, tmp_path, "served.db"), fresh_url(store, tmp_path, "applied.db")
    secret = token(served, "same", "ingest")
    lines = "".join(json.dumps(c) + "\n" for c in COMMANDS)
    result = ledger_cli(applied, "apply", "-", input=lines)
    expected = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(expected) == len(COMMANDS) and not all(r["ok"] for r in expected)
    server = Server(served, tmp_path / "serve.log")
    try:
        with server.client(secret) as c:
            one_by_one = [c.post("/v1/commands", json=cmd).json() for cmd in COMMANDS[:8]]
            as_array = c.post("/v1/commands", json=COMMANDS[8:]).json()
    finally:
        assert server.stop() == 0
    assert one_by_one + as_array == expected


def test_sigterm_answers_what_is_in_flight_and_exits_0(store: str, tmp_path: Path) -> None:
    url = fresh_url(store, tmp_path, "term.db")
    secret = token(url, "term", "ingest", "read")
    server = Server(url, tmp_path / "serve.log")
    answered: list[Any] = []
    refused: list[Exception] = []
    started = threading.Event()

    def send(n: int) -> None:
        with server.client(secret) as c:
            for k in range(200):
                started.set()
                try:
                    answered.append(c.post("/v1/commands", json={"type": "open_account", "account": f"t{n}-{k}"}).json())
                except httpx.TransportError as error:  # after the signal: no new connection is taken
                    refused.append(error)
                    return

    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    started.wait(10)
    time.sleep(0.3)
    server.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(30)
    assert server.stop() == 0
    assert answered and all(r["ok"] for r in answered)
    opened = ledger_cli(url, "account", "list", "--json")
    assert len(json.loads(opened.stdout)) == len(answered)  # every answer was committed, nothing unanswered was


def test_processes_on_a_store_that_cannot_be_opened_is_one_line_and_exit_2(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing' / 'x.db'}"
    done = subprocess.run([sys.executable, "-m", "entrypoints", "--db", url, "serve", "--port", str(free_port()),
                           "--processes", "2"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr + done.stdout
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.postgres
def test_readyz_is_503_when_the_store_does_not_answer(tmp_path: Path) -> None:
    url = pg.new_database()
    secret = token(url, "ready", "read")
    server = Server(url, tmp_path / "serve.log")
    try:
        with server.client(secret) as c:
            assert c.get("/readyz").status_code == 200
            with pg._connect("postgres") as conn:  # the database goes away under the server
                conn.execute(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
            deadline = time.monotonic() + 30
            while (answer := c.get("/readyz")).status_code == 200:
                assert time.monotonic() < deadline, "the store is gone but /readyz says ready"
                time.sleep(0.5)
            assert answer.status_code == 503 and answer.json()["error"]["code"] == "unavailable", answer.text
            assert c.get("/healthz").status_code == 200  # the process itself is up
    finally:
        assert server.stop() == 0
