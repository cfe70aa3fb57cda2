"""`ledger serve` (§15) through a real server process and httpx, on both stores: tokens and
scopes, every endpoint, the refusals (401/403/404/400/413), revoked tokens, history pages."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Iterator

import pytest

from tests import pg
from tests.helpers import at, ledger_cli
from tests.serving import MAX_BODY, Server, error_of, token


@dataclass
class Served:
    server: Server
    url: str
    admin: str
    tokens: dict[str, str]  # scope -> a token with only that scope


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp(f"serve-{request.param}")
    url = f"sqlite:///{folder / 'serve.db'}" if request.param == "sqlite" else pg.new_database()
    admin = token(url, "root", "admin")
    scoped = {s: token(url, f"only-{s}", s) for s in ("ingest", "read", "report", "audit")}
    server = Server(url, folder / "serve.log")
    yield Served(server, url, admin, scoped)
    assert server.stop() == 0, (folder / "serve.log").read_text()


def post(s: Served, body: Any, secret: str | None = None) -> Any:
    with s.server.client(secret or s.admin) as c:
        response = c.post("/v1/commands", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def head(s: Served) -> int:
    with s.server.client(s.admin) as c:
        return int(c.get("/readyz").json()["head"])


def cli_json(s: Served, *args: str) -> Any:
    result = ledger_cli(s.url, *args)
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def test_no_token_an_unknown_one_or_a_missing_scope_is_refused(served: Served) -> None:
    s = served
    with s.server.client() as c:
        assert c.get("/healthz").json() == {"ok": True}  # the one path without a token
        error_of(c.get("/v1/accounts/x"), 401, "unauthorized")
        error_of(c.post("/v1/commands", json={}), 401, "unauthorized")
        error_of(c.get("/readyz"), 401, "unauthorized")
        error_of(c.get("/v1/accounts/x", headers={"Authorization": "Bearer lt_nottoken"}), 401, "unauthorized")
        error_of(c.get("/v1/accounts/x", headers={"Authorization": f"Basic {s.admin}"}), 401, "unauthorized")
    before = head(s)
    with s.server.client(s.tokens["read"]) as c:
        error_of(c.post("/v1/commands", json={"type": "open_account", "account": "nope"}), 403, "forbidden")
        error_of(c.get("/v1/reports/interest"), 403, "forbidden")
    with s.server.client(s.tokens["ingest"]) as c:
        error_of(c.get("/v1/accounts/nope"), 403, "forbidden")
        error_of(c.get("/v1/audit/digest"), 403, "forbidden")
    with s.server.client(s.tokens["report"]) as c:
        error_of(c.post("/v1/audit/verify"), 403, "forbidden")
    assert head(s) == before  # nothing recorded


def test_commands_one_or_many_results_in_order(served: Served) -> None:
    s = served
    one = post(s, {"type": "open_account", "account": "carol", "at": at(0)}, s.tokens["ingest"])
    assert one["ok"] and one["events"][0]["type"] == "AccountOpened"
    many = post(s, [{"type": "deposit", "account": "carol", "currency": "USDT", "amount": "100", "at": at(1)},
                    {"type": "withdraw", "account": "carol", "currency": "USDT", "amount": "1000", "at": at(2)},
                    {"type": "no_such_command"},
                    "not an object",
                    {"type": "deposit", "account": "carol", "currency": "USDT", "amount": "5", "at": at(3),
                     "command_id": "carol-5"}])
    assert [r["ok"] for r in many] == [True, False, False, False, True]
    assert [r["error"]["code"] for r in many if not r["ok"]] == ["insufficient_balance", "validation_error",
                                                                 "validation_error"]
    again = post(s, {"type": "deposit", "account": "carol", "currency": "USDT", "amount": "5", "at": at(3),
                     "command_id": "carol-5"})
    assert again["ok"] and again.get("duplicate") is True  # T2 through the service too
    assert again["command_id"] == many[4]["command_id"] == "carol-5"  # §12: echoed
    assert post(s, []) == []
    with s.server.client(s.admin) as c:  # without a Content-Length: the framework's route, the same answers
        chunked = c.post("/v1/commands", content=iter([b'[{"type": "deposit", "account": "carol", ',
                                                       b'"currency": "USDT", "amount": "1", "at": "' + at(4).encode() + b'"}]']))
        error_of(c.post("/v1/commands", content=iter([b"{oops"])), 400, "validation_error")
        error_of(c.post("/v1/commands", content=iter([b"{}"]), headers={"Authorization": "Bearer no"}), 401, "unauthorized")
    assert chunked.status_code == 200 and chunked.json()[0]["events"][0]["amount"] == "1"


def test_bad_json_too_large_and_unknown_paths_are_json_errors_recording_nothing(served: Served) -> None:
    s = served
    before = head(s)
    with s.server.client(s.admin) as c:
        for body in (b"{not json", b'{"type": "open_account", "type": "x"}', b"\xff\xfe", b"42", b"[" * 20 + b"]" * 20):
            error_of(c.post("/v1/commands", content=body), 400, "validation_error")
        big = [{"type": "open_account", "account": f"big{n}"} for n in range(MAX_BODY // 40)]
        error_of(c.post("/v1/commands", json=big), 413, "payload_too_large")
    with s.server.client(s.admin) as c:
        def chunks() -> Iterator[bytes]:  # no Content-Length: refused while it is read
            yield b"["
            for n in range(MAX_BODY // 40):
                yield json.dumps({"type": "open_account", "account": f"chunk{n}"}).encode() + b","
            yield b"{}]"

        error_of(c.post("/v1/commands", content=chunks()), 413, "payload_too_large")
    with s.server.client(s.admin) as c:
        error_of(c.get("/v1/no/such/path"), 404, "not_found")
        error_of(c.get("/v1/commands"), 405, "method_not_allowed")
        error_of(c.get("/v1/accounts/carol/history", params={"limit": 1001}), 400, "validation_error")
        error_of(c.get("/v1/accounts/carol", params={"as_of": "yesterday"}), 400, "validation_error")
        error_of(c.get("/v1/accounts/carol/history", params={"cursor": "abc"}), 400, "validation_error")
        error_of(c.get("/v1/reports/no-such-report"), 404, "unknown_report")
        error_of(c.post("/v1/audit/verify", json={"digest": "12:zz"}), 400, "validation_error")
    assert head(s) == before


def test_account_view_now_and_as_of_is_account_show(served: Served) -> None:
    s = served
    post(s, [{"type": "open_account", "account": "dave", "at": at(0)},
             {"type": "deposit", "account": "dave", "currency": "USDT", "amount": "70", "at": at(1)},
             {"type": "deposit", "account": "dave", "currency": "USDT", "amount": "30", "at": at(5)}])
    with s.server.client(s.tokens["read"]) as c:
        now = c.get("/v1/accounts/dave")
        then = c.get("/v1/accounts/dave", params={"as_of": at(2)})
        error_of(c.get("/v1/accounts/nobody"), 404, "unknown_account")
        error_of(c.get("/v1/accounts/dave", params={"as_of": "2020-01-01T00:00:00Z"}), 404, "unknown_account")
    assert now.json() == cli_json(s, "account", "show", "dave", "--json")
    assert then.json() == cli_json(s, "account", "show", "dave", "--as-of", at(2), "--json")
    assert then.json()["balances"]["USDT"]["cash"] == "70"


def test_history_pages_add_up_to_the_whole_history(served: Served) -> None:
    s = served
    post(s, [{"type": "open_account", "account": "erin", "at": at(0)}] +
         [{"type": "deposit", "account": "erin", "currency": "USDT", "amount": str(n), "at": at(n)} for n in range(1, 24)])
    whole = cli_json(s, "history", "erin", "--json")
    pages, cursor = [], None
    with s.server.client(s.tokens["read"]) as c:
        while True:
            page = c.get("/v1/accounts/erin/history", params={"limit": 5, **({"cursor": cursor} if cursor else {})}).json()
            pages.append(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        filtered = c.get("/v1/accounts/erin/history",
                         params={"type": "Deposited", "since": at(10), "until": at(12), "limit": 1000}).json()
        error_of(c.get("/v1/accounts/nobody/history"), 404, "unknown_account")
    assert [len(p) for p in pages] == [5, 5, 5, 5, 4]
    assert [item for p in pages for item in p] == whole
    assert [i["amount"] for i in filtered["items"]] == ["10", "11", "12"] and filtered["next_cursor"] is None


def test_reports_a_page_or_csv_and_the_audit(served: Served) -> None:
    s = served
    post(s, [{"type": "open_account", "account": "fay", "at": at(0)}])
    with s.server.client(s.tokens["report"]) as c:
        error_of(c.get("/v1/reports/mode-switches"), 503, "views_not_built")
    post(s, [{"type": "set_platform_flags", "whitelist_required": False, "at": at(0)}] +
         [{"type": "open_account", "account": f"ms{n}", "at": at(1)} for n in range(3)] +
         [{"type": "complete_risk_assessment", "account": f"ms{n}", "score": 50, "agreements_version": "v1",
           "at": at(2)} for n in range(3)] +
         [{"type": "switch_mode", "account": f"ms{n}", "mode": "unified", "at": at(3 + n)} for n in range(3)])
    assert ledger_cli(s.url, "projections", "run", "--json").exit_code == 0
    expected = cli_json(s, "report", "mode-switches", "--format", "json")
    with s.server.client(s.tokens["report"]) as c:
        first = c.get("/v1/reports/mode-switches", params={"limit": 2}).json()
        second = c.get("/v1/reports/mode-switches", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        csv_text = c.get("/v1/reports/mode-switches", headers={"Accept": "text/csv"})
    assert first["items"] + second["items"] == expected and second["next_cursor"] is None
    assert csv_text.headers["content-type"].startswith("text/csv")
    lines = csv_text.text.splitlines()
    assert lines[0] == "account,from_mode,to_mode,at"
    assert len(lines) == 1 + len(expected) and lines[1].startswith(expected[0]["account"] + ",")
    assert ledger_cli(s.url, "audit", "seal").exit_code == 0
    with s.server.client(s.tokens["audit"]) as c:
        digest = c.get("/v1/audit/digest").json()
        verified = c.post("/v1/audit/verify", json={"digest": digest["head"]}).json()
        plain = c.post("/v1/audit/verify").json()
    assert digest["head"] == cli_json(s, "audit", "digest", "--json")["head"]
    assert verified["ok"] and verified == cli_json(s, "audit", "verify", "--digest", digest["head"], "--json")
    assert plain["ok"] and plain["events_checked"] == verified["events_checked"]


def test_readiness_and_metrics(served: Served) -> None:
    s = served
    post(s, {"type": "open_account", "account": "gus"})
    with s.server.client(s.tokens["read"]) as c:
        ready = c.get("/readyz").json()
        text = c.get("/metrics").text
    assert ready["ok"] and ready["head"] >= 1 and ready["writer"]
    for name in ('ledger_http_requests_total{route="/v1/commands",status="200"}', "ledger_http_request_seconds_bucket",
                 "ledger_group_commit_commands_count", "ledger_interest_last_hour_seconds",
                 "ledger_sweep_last_mark_seconds"):
        assert name in text, name
    with s.server.client() as c:
        assert "/v1/commands" in c.get("/openapi.json").json()["paths"]


def test_a_revoked_token_is_refused(served: Served) -> None:
    s = served
    secret = token(s.url, "short-lived", "read")
    with s.server.client(secret) as c:
        assert c.get("/readyz").status_code == 200
        assert ledger_cli(s.url, "token", "revoke", "short-lived").exit_code == 0
        deadline = time.monotonic() + 5  # a check is reused for LEDGER_SERVE_TOKEN_CACHE_SECONDS (1 s)
        while c.get("/readyz").status_code == 200:
            assert time.monotonic() < deadline, "the revoked token is still accepted"
            time.sleep(0.2)
        error_of(c.get("/v1/accounts/gus"), 401, "unauthorized")
    listed = {t["name"]: t for t in cli_json(s, "token", "list", "--json")}
    assert listed["short-lived"]["revoked_at"] and listed["root"]["revoked_at"] is None
    assert all("secret" not in t for t in listed.values())
    assert ledger_cli(s.url, "token", "revoke", "short-lived").exit_code == 1


def test_a_port_in_use_is_one_line_and_exit_2(served: Served) -> None:
    """The address is tried before the store is opened: one line, exit 2, no traceback."""
    import subprocess
    import sys

    taken = served.server.port  # the module's server holds it
    done = subprocess.run([sys.executable, "-m", "entrypoints", "--db", served.url, "serve", "--port", str(taken)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stderr.startswith("ledger: cannot serve:") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
