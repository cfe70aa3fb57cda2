"""Reading never needs the right to write (SPEC §13, issue 13), and a read of a SQLite file
that does not exist creates nothing (issue 17).

R1  A real read-only PostgreSQL role (LOGIN; CONNECT, USAGE and SELECT only) runs every read
    command — `account show`, `account list`, `history`, `report` (every kind), `audit
    verify|replay|digest|export`, `status`, `projections status` — with exit 0 and the same
    output as the ledger's own credentials; the role itself cannot write.
R2  Reads write nothing, with any credentials: on SQLite the tables, rows and the file's
    bytes are unchanged by every read command.
R3  A read of a SQLite path with no file is one line ("no ledger at PATH"), exit 2, and no file
    is created; commands that write create it.  A store without the ledger's tables is one line.
R4  A report from lagging views says how far behind they are (standard error), and does not
    catch them up.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest

from projections.reports import REPORTS
from tests import pg
from tests.helpers import ledger_cli
from tests.test_projections import cli_world, cmd

READS = [
    ("account", "show", "alice", "--json"),
    ("account", "show", "alice", "--as-of", "2026-03-01T01:30:00Z", "--json"),
    ("account", "list", "--json"),
    ("history", "bob", "--json"),
    *[("report", kind, "--format", "json") for kind in REPORTS],
    ("report", "interest", "--format", "csv"),
    ("audit", "verify", "--json"),
    ("audit", "replay", "--as-of", "2026-03-01T01:30:00Z", "--json"),
    ("audit", "digest"),
    ("audit", "export"),
    ("status", "--json"),
    ("projections", "status", "--json"),
    ("risk", "stress", "--shock", "BTC=-30%", "--as-of", "2026-03-01T01:30:00Z", "--json"),
]


def build(db_url: str) -> None:
    """A ledger with interest, a sweep, views built and the chain sealed (the writer side)."""
    cli_world(db_url)
    for writer in (("projections", "run"), ("audit", "seal")):
        assert ledger_cli(db_url, *writer).exit_code == 0


def outputs(db_url: str) -> dict[tuple[str, ...], str]:
    found = {}
    for args in READS:
        result = ledger_cli(db_url, *args)
        assert result.exit_code == 0, (args, result.output)
        found[args] = result.stdout
    return found


def stable(args: tuple[str, ...], text: str) -> Any:
    """The output without what depends on the moment it was printed (status's `now`)."""
    if args[0] == "status":
        return {k: v for k, v in json.loads(text).items() if k != "now"}
    return text


# --- R1: a read-only PostgreSQL role -----------------------------------------------------------------
@pytest.fixture
def read_only_url() -> Iterator[tuple[str, str]]:
    """(the ledger's URL, the same database as a role that may only read it)."""
    import psycopg

    url = pg.new_database()
    build(url)
    role, dbname = f"reader_{uuid.uuid4().hex[:8]}", urlsplit(url).path.lstrip("/")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'reader'")
        conn.execute(f'GRANT CONNECT ON DATABASE "{dbname}" TO {role}')
        conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    parts = urlsplit(url)
    try:
        yield url, f"postgresql://{role}:reader@{parts.hostname}:{parts.port}/{dbname}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f'REVOKE CONNECT ON DATABASE "{dbname}" FROM {role}')
            conn.execute(f"DROP ROLE {role}")


@pytest.mark.postgres
def test_a_read_only_role_runs_every_read_command(read_only_url: tuple[str, str]) -> None:
    import psycopg

    owner, reader = read_only_url
    with psycopg.connect(reader, autocommit=True) as conn:  # the role really cannot write
        for statement in ("DELETE FROM view_balances", "CREATE TABLE intruder (x int)",
                          "INSERT INTO audit_chain VALUES (999999, 'x')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    expected, seen = outputs(owner), outputs(reader)
    for args in READS:
        assert stable(args, seen[args]) == stable(args, expected[args]), args
    verified = json.loads(seen[("audit", "verify", "--json")])
    assert verified["ok"] and verified["unsealed"] == 0 and verified["views"]["lag"] == 0, verified
    assert json.loads(seen[("account", "show", "alice", "--json")])["account"] == "alice"
    assert json.loads(seen[("report", "interest", "--format", "json")]), "the report has rows"
    assert seen[("audit", "digest")].strip().split(":")[0] == str(verified["events_checked"])


@pytest.mark.postgres
def test_a_read_only_role_is_told_of_a_database_without_a_ledger() -> None:
    url = pg.new_database()  # nothing written: no tables
    result = ledger_cli(url, "account", "list")
    assert result.exit_code == 2 and "no ledger at" in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    import psycopg

    with psycopg.connect(url) as conn:  # and the read created none
        assert conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
                            ).fetchone() == (0,)


# --- R2: reads write nothing -------------------------------------------------------------------------
def snapshot(path: Path) -> tuple[Any, ...]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = sorted(r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
        counts = {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
        tracking = con.execute("SELECT * FROM view_tracking ORDER BY view").fetchall()
    finally:
        con.close()
    return tables, counts, tracking


def test_reads_write_nothing_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    url = f"sqlite:///{path}"
    build(url)
    ledger_cli(url, "apply", "-", input=json.dumps(cmd("deposit", 130, account="carol", currency="USDT",
                                                       amount="1")) + "\n")  # views and chain now lag
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    before, digest = snapshot(path), hashlib.sha256(path.read_bytes()).hexdigest()
    outputs(url)
    assert snapshot(path) == before
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0, "a read wrote to the write-ahead log"


# --- R3: a missing SQLite file -----------------------------------------------------------------------
@pytest.mark.parametrize("args", READS, ids=[" ".join(a) for a in READS])
def test_a_read_of_a_missing_sqlite_file_says_so_and_creates_nothing(tmp_path: Path, args: tuple[str, ...]) -> None:
    path = tmp_path / "typo.db"
    result = ledger_cli(f"sqlite:///{path}", *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == f"ledger: no ledger at {path} (only a command that writes creates one)"
    assert list(tmp_path.iterdir()) == []


def test_a_sqlite_file_without_the_ledgers_tables_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    sqlite3.connect(path).execute("CREATE TABLE something_else (x)").connection.close()
    result = ledger_cli(f"sqlite:///{path}", "history", "alice")
    assert result.exit_code == 2, result.output
    assert result.stderr == f"ledger: no ledger at {path}: the file holds no ledger tables\n"
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    result = ledger_cli(f"sqlite:///{tmp_path / 'junk.db'}", "account", "list")
    assert result.exit_code == 2 and result.stderr.startswith(f"ledger: no ledger at {tmp_path / 'junk.db'}: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_commands_that_write_create_the_file(tmp_path: Path) -> None:
    for name, args in (("apply.db", ("apply", "-")), ("seal.db", ("audit", "seal")),
                       ("projections.db", ("projections", "run")), ("interest.db", ("interest", "run", "--json"))):
        result = ledger_cli(f"sqlite:///{tmp_path / name}", *args, input="")
        assert result.exit_code == 0, (args, result.output)
        assert (tmp_path / name).exists(), args
    assert ledger_cli(f"sqlite:///{tmp_path / 'apply.db'}", "account", "list", "--json").stdout.strip() == "[]"


# --- R4: a lagging report says so ----------------------------------------------------------------------
def test_a_report_from_lagging_views_says_how_far_behind_and_does_not_catch_up(db_url: str) -> None:
    cli_world(db_url)
    never = ledger_cli(db_url, "report", "repayments", "--format", "json")
    assert never.exit_code == 2 and "have not been built" in never.stderr, never.output
    assert ledger_cli(db_url, "projections", "run").exit_code == 0
    current = ledger_cli(db_url, "report", "repayments", "--format", "json")
    assert current.exit_code == 0 and current.stderr == "", current.output
    for minutes in (130, 131):
        ledger_cli(db_url, "apply", "-", input=json.dumps(cmd("deposit", minutes, account="alice", currency="USDT",
                                                              amount="1")) + "\n")
    lagging = ledger_cli(db_url, "report", "repayments", "--format", "json")
    assert lagging.exit_code == 0 and json.loads(lagging.stdout) == json.loads(current.stdout)
    [line] = lagging.stderr.strip().splitlines()
    status = json.loads(ledger_cli(db_url, "projections", "status", "--json").stdout)
    lag = status[0]["lag"]
    assert lag >= 2 and f"are {lag} events behind the log" in line, (line, status)
    assert {s["lag"] for s in status} == {lag}, "the report did not catch the views up"
