"""One line of JSON Lines input → one decoded value, or the reason it is not a command (§12).

``decode(raw)`` takes the line's bytes and returns what ``json.loads`` would, with amounts
kept exact (``Decimal``), or raises ``LedgerError("validation_error", <sentence>)`` for a line
that no command can be: longer than ``MAX_LINE_BYTES``; not UTF-8; not JSON (``NaN`` and
``Infinity`` are not JSON); nested deeper than ``MAX_DEPTH`` (checked on the text, without
recursion, before the parser sees it); an object with a key given twice; a NUL character
anywhere, raw or escaped (``\\u0000``); a lone surrogate (``\\ud800``), which is no
character at all.  Whether the value is an object and a command is ``parse_command``'s
question.  Each line stands alone: a bad one costs only its own result.  See docs/rules.md.
"""
from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from ledger.domain.errors import LedgerError

MAX_LINE_BYTES = 64 * 1024  # the largest command (20 collateral tiers) is about 2 KiB
MAX_DEPTH = 8  # arrays and objects inside each other; a command needs 3 (tiers: [{...}])
MAX_DIGITS = 64  # of a bare JSON number (amounts are strings; this bounds what int() parses)
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')  # strings (skipped whole) and brackets


def invalid(message: str) -> LedgerError:
    return LedgerError("validation_error", message)


class _Refused(ValueError):
    """Raised from inside the parser's hooks: the line is refused with this message."""


def decode(raw: bytes, limit: int = MAX_LINE_BYTES) -> Any:
    """The JSON value of one line (its line ending may be there), or ``validation_error``.
    ``limit``: the longest line taken (`ledger serve` decodes a whole body, bounded by its own
    limit, the same way)."""
    raw = raw.rstrip(b"\r\n")
    if len(raw) > limit:
        raise invalid(f"the line is longer than {limit} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise invalid(f"the line is not UTF-8 text (byte 0x{raw[error.start]:02x} at position {error.start})") from None
    if "\x00" in text:
        raise invalid("the line contains a NUL character")
    too_deep(text)
    try:
        value = json.loads(text, object_pairs_hook=_object, parse_float=Decimal,
                           parse_int=_integer, parse_constant=_constant)
    except _Refused as error:
        raise invalid(str(error)) from None
    except json.JSONDecodeError as error:
        raise invalid(f"the line is not JSON: {error.msg} at character {error.pos + 1}") from None
    except (ValueError, RecursionError) as error:  # a defence: the checks above should come first
        raise invalid(f"the line is not JSON: {type(error).__name__}") from None
    if "\\u" in text or "\\U" in text:  # only an escape can make a NUL or a lone surrogate
        _check_strings(value)
    return value


def too_deep(text: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH, counting brackets outside strings (a loop, not
    a recursion).  Most lines have too few brackets to need the count."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    depth = 0
    for token in _TOKENS.finditer(text):
        bracket = token.group()
        if bracket in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise invalid(f"the line nests arrays and objects deeper than {MAX_DEPTH} levels")
        elif bracket in "]}":
            depth -= 1


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"the key {_shown(key)} is given twice in one object")
            seen.add(key)
    return obj


def _integer(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_DIGITS:
        raise _Refused(f"a number has more than {MAX_DIGITS} digits")
    return int(digits)


def _constant(name: str) -> Any:
    raise _Refused(f"the line is not JSON: {name} is not a JSON value (write amounts as decimal strings)")


def _check_strings(value: Any) -> None:
    """Every key and string, without recursion: no NUL, nothing that is not a character."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                raise invalid("a string contains a NUL character (\\u0000)")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise invalid("a string contains a lone surrogate (such as \\ud800), which is not a character") from None


def _shown(text: str, limit: int = 40) -> str:
    return json.dumps(text if len(text) <= limit else text[:limit] + "…")
