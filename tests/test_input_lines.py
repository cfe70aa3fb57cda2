"""§12 as amended: every input line gets its own result, and a bad line costs only its own.

Lines that no command can be (not UTF-8, not JSON, a key given twice, a NUL, nesting deeper
than any command needs, longer than the line limit, lone surrogates) are ``validation_error``
before anything touches the store; the valid lines around them are applied as usual."""
from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entrypoints.lines import Splitter, batches
from entrypoints.cli import cli
from ledger.domain.errors import LedgerError
from ledger.service.jsonlines import MAX_DEPTH, MAX_LINE_BYTES, decode
from tests.helpers import ledger_cli as run

CORPUS = Path(__file__).parent / "fuzz" / "bad-lines.jsonl"  # a copy of the shared fuzz corpus
OPEN = b'{"type": "open_account", "account": "fz", "at": "2026-02-01T09:00:00Z"}'


def deposit(amount: str = "1", minute: int = 1, account: str = "fz") -> bytes:
    return json.dumps({"type": "deposit", "account": account, "currency": "USDT", "amount": amount,
                       "at": f"2026-02-01T10:{minute:02d}:00Z"}).encode()


def refused(raw: bytes) -> str:
    with pytest.raises(LedgerError) as caught:
        decode(raw)
    assert caught.value.code == "validation_error"
    return caught.value.message


def answers(result: Any) -> list[dict[str, Any]]:
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


# --- the decoder, rule by rule -------------------------------------------------------------------
def test_a_good_line_decodes_with_exact_numbers() -> None:
    assert decode(b'{"type": "set_price", "price": "1.5", "n": 2, "x": 0.1}\r\n') == {
        "type": "set_price", "price": "1.5", "n": 2, "x": Decimal("0.1")}


@pytest.mark.parametrize("raw, says", [
    (b'{"type":"deposit","amount":"1","amount":"1000000"}', 'the key "amount" is given twice'),
    (b'{"a": {"k": 1, "k": 2}}', 'the key "k" is given twice'),
    (b"\xff\xfe{}", "not UTF-8 text (byte 0xff at position 0)"),
    (b'{"account": "al\xc3"}', "not UTF-8"),
    (b"{not json", "not JSON: Expecting property name"),
    (b'{"amount": NaN}', "NaN is not a JSON value"),
    (b'{"amount": -Infinity}', "-Infinity is not a JSON value"),
    (b'{"account": "fz\\u0000"}', "NUL character"),
    (b'{"fz\\u0000": 1}', "NUL character"),
    (b'{"account": "fz\x00"}', "NUL character"),
    (b'{"account": "\\ud800"}', "lone surrogate"),
    (b'{"n": ' + b"9" * 65 + b"}", "more than 64 digits"),
    (b"[" * 10_000 + b"]" * 10_000, f"deeper than {MAX_DEPTH} levels"),
    (b'{"a": ' * 9 + b"1" + b"}" * 9, f"deeper than {MAX_DEPTH} levels"),
])
def test_lines_that_no_command_can_be(raw: bytes, says: str) -> None:
    assert says in refused(raw)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = json.dumps({"type": "x", "note": "[[[[[[[[[[{{{{{{{{{{{ \\\" ]]]"})
    assert decode(text.encode())["note"].startswith("[[[[")
    nested = b'{"a": ' * MAX_DEPTH + b"1" + b"}" * MAX_DEPTH
    assert decode(nested)  # exactly the limit is allowed


def test_escapes_that_are_characters_are_kept() -> None:
    assert decode(b'{"a": "zo\\u00eb \\ud83d\\ude00 \\\\u0000"}') == {"a": "zo\u00eb \U0001F600 \\u0000"}


def test_the_line_limit() -> None:
    at_limit = b'{"a": "' + b"x" * (MAX_LINE_BYTES - 9) + b'"}'
    assert len(at_limit) == MAX_LINE_BYTES and decode(at_limit + b"\n")
    assert f"longer than {MAX_LINE_BYTES} bytes" in refused(at_limit + b" ")


def test_an_overlong_line_is_cut_and_the_rest_of_it_dropped() -> None:
    import io

    stream = io.BytesIO(b"a\n" + b"x" * (5 * MAX_LINE_BYTES) + b"\nb\n" + b"y" * (MAX_LINE_BYTES + 1))
    lines = [line for batch in batches(stream, 2) for _, line in batch]
    assert [len(line) for line in lines] == [1, MAX_LINE_BYTES + 1, 1, MAX_LINE_BYTES + 1]
    assert lines[2] == b"b"


def readline_lines(data: bytes, limit: int) -> list[bytes]:
    """What reading a line at a time with ``readline(limit + 1)`` gives, without the line
    endings: the splitter must give the same lines however its input is cut into reads."""
    import io

    stream, out = io.BytesIO(data), []
    while line := stream.readline(limit + 1):
        if len(line) > limit and not line.endswith(b"\n"):
            while (rest := stream.readline(limit)) and not rest.endswith(b"\n"):
                pass
        out.append(line.removesuffix(b"\n"))
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"\n", b"\r", b"x", b"yy", b"zzzz", b"\n\n"]), max_size=60),
       st.lists(st.integers(1, 9), min_size=1, max_size=20), st.integers(1, 6))
def test_the_splitter_cuts_lines_as_readline_did_whatever_the_reads(pieces: list[bytes], reads: list[int], limit: int) -> None:
    data = b"".join(pieces)
    splitter, got, at, n = Splitter(limit), [], 0, 0
    while at < len(data):
        size = reads[n % len(reads)]
        got += splitter.feed(data[at:at + size])
        at, n = at + size, n + 1
    got += splitter.end()
    assert got == readline_lines(data, limit)
    assert all(len(line) <= limit + 1 for line in got)


# --- through the command line, on both stores ----------------------------------------------------------
def test_the_fuzz_corpus_gets_one_result_per_line(db_url: str) -> None:
    """The shared corpus: 36 lines, the first two and the 35th valid, the last not UTF-8."""
    lines = CORPUS.read_bytes().splitlines()
    assert len(lines) == 36
    result = run(db_url, "apply", str(CORPUS))
    got = answers(result)
    assert result.exit_code == 1 and len(got) == 36
    assert [n for n, a in enumerate(got, 1) if a["ok"]] == [1, 2, 35]
    assert {a["error"]["code"] for a in got if not a["ok"]} == {"validation_error"}
    assert all(a["error"]["message"] and "None" not in a["error"]["message"] for a in got if not a["ok"])
    shown = json.loads(run(db_url, "account", "show", "fz", "--json").stdout)
    assert shown["wallets"]["spot"] == {"USDT": "2"}


def test_bad_bytes_on_standard_input_cost_only_their_own_line(db_url: str) -> None:
    """Issue 12: invalid UTF-8, a NUL in an id (PostgreSQL refuses it as text), a key given twice
    (issue 13: it deposited 1,000,000) and deep nesting, among valid lines in one batch."""
    bad = [b'{"type": "deposit", "account": "fz\xff\xfe", "currency": "USDT", "amount": "1"}',
           b'{"type": "deposit", "account": "fz\\u0000", "currency": "USDT", "amount": "1"}',
           b'{"type":"deposit","account":"fz","currency":"USDT","amount":"1","amount":"1000000","at":"2026-02-01T10:03:00Z"}',
           b"{" * 10_000,
           b'{"type": "complete_risk_assessment", "account": "fz", "score": 1, "agreements_version": "v\\u0000"}',
           b"[" + b"x" * (2 * MAX_LINE_BYTES) + b"]"]
    lines = [OPEN, deposit("1", 1), *bad, b"", b"   ", deposit("2", 5)]
    result = run(db_url, "apply", "-", input=b"\n".join(lines) + b"\n")  # type: ignore[arg-type]
    got = answers(result)
    assert result.exit_code == 1
    assert [a["ok"] for a in got] == [True, True] + [False] * len(bad) + [True]  # blank lines: no result
    assert all(a["error"]["code"] == "validation_error" for a in got[2:-1])
    shown = json.loads(run(db_url, "account", "show", "fz", "--json").stdout)
    assert shown["wallets"]["spot"] == {"USDT": "3"}


def test_a_line_that_is_not_json_says_so() -> None:
    """Issue 17: it was reported as "unknown command type None"."""
    from typer.testing import CliRunner

    result = CliRunner().invoke(cli, ["--db", "sqlite:///:memory:", "apply", "-"], input="{oops\n")
    [answer] = answers(result)
    assert answer["error"]["message"].startswith("the line is not JSON")


# --- properties ------------------------------------------------------------------------------------------
COMMANDS = st.fixed_dictionaries({
    "type": st.sampled_from(["deposit", "withdraw", "open_account", "teleport"]),
    "account": st.sampled_from(["fz", "zz", "", "f\u0000z", "f\ud800"]),
    "currency": st.sampled_from(["USDT", "BTC"]),
    "amount": st.one_of(st.sampled_from(["1", "0", "-1", "1e9"]), st.integers(), st.floats(allow_nan=True)),
})


def as_line(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8", "surrogatepass")


LINES = st.lists(st.one_of(st.binary(max_size=80), COMMANDS.map(as_line),
                           st.recursive(st.none() | st.booleans() | st.text(max_size=5),
                                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                                        max_leaves=12).map(as_line)),
                 max_size=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=LINES)
def test_arbitrary_bytes_never_make_a_traceback(lines: list[bytes], tmp_path: Path) -> None:
    """Any bytes at all: one result per non-blank line, in order, and no traceback."""
    from typer.testing import CliRunner

    data = b"\n".join(line.replace(b"\n", b" ") for line in lines)
    expected = sum(1 for line in data.split(b"\n") if line.strip())
    result = CliRunner().invoke(cli, ["--db", f"sqlite:///{tmp_path / 'p.db'}", "apply", "-"], input=data)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 1), result.stderr
    got = answers(result)
    assert len(got) == expected
    assert all(a["ok"] or a["error"]["code"] != "conflict" for a in got)


def test_only_valid_commands_ids_are_read_from_the_store(ledger: Any) -> None:
    """The batch's preload names the aggregates of valid commands only: a raw id that is not
    text the store can take (a NUL, a lone surrogate) never reaches it."""
    ledger.open("fz")
    asked: list[str] = []
    load = ledger.app.cache.load
    ledger.app.cache.load = lambda keys: asked.extend(keys) or load(keys)
    cmds = [{"type": "deposit", "account": bad, "currency": "USDT", "amount": "1", "command_id": f"c{n}"}
            for n, bad in enumerate(["f\u0000z", "f\ud800", "../x"])]
    good = {"type": "deposit", "account": "fz", "currency": "USDT", "amount": "4"}
    results = ledger.app.apply([*cmds, good], ledger.now, ledger.latest)
    assert [r["ok"] for r in results] == [False, False, False, True]
    assert [key for key in asked if key.startswith(("account/", "command/"))] == ["account/fz"]
