"""A real `ledger serve` process for the tests: a free port, tokens made with the command line,
an httpx client per test, the process ended with SIGTERM (and its exit code checked)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import httpx

from bench.http import wait_healthy
from tests.helpers import ledger_cli

ROOT = Path(__file__).resolve().parent.parent
MAX_BODY = 65536


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def token(url: str, name: str, *scopes: str) -> str:
    args = ["token", "create", "--name", name, *[w for s in scopes for w in ("--scope", s)], "--json"]
    result = ledger_cli(url, *args)
    assert result.exit_code == 0, result.output
    return str(json.loads(result.output)["secret"])


class Server:
    def __init__(self, url: str, log: Path, *args: str, **env: str) -> None:
        self.url, self.port = url, free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "entrypoints", "--db", url, "serve", "--port", str(self.port), *args],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
            env={**os.environ, "LEDGER_SERVE_MAX_BODY_BYTES": str(MAX_BODY), **env})
        try:
            wait_healthy(self.base, self.proc, 30, str(log))
        except RuntimeError as error:
            raise AssertionError(f"{error}: {log.read_text()}") from None

    def client(self, secret: Optional[str] = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=30, **kwargs)

    def stop(self) -> int:
        """SIGTERM; the exit code (the process must end within 20 s)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("ledger serve did not stop within 20 s of SIGTERM")
        finally:
            self.log.close()


def error_of(response: httpx.Response, status: int, code: str) -> str:
    """The response is ``status`` with the error object of ``code``; its message."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert body["error"]["message"]
    return str(body["error"]["message"])
