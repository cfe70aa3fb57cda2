"""eventsourcing's JSON stored format, written and read with orjson where that gives the same
result as the library's ``JSONTranscoder``, and by the library itself everywhere else.

The bytes keep the library's shape: Decimal and datetime values as ``{"_type_": name,
"_data_": ...}`` (the registered transcodings), everything else plain JSON, so events stored
by either transcoder load with the other.  orjson alone would differ from the library on some
values, silently: it writes a UUID as a plain string and an Enum or a dataclass as its value
(the library uses the registered transcoding, or raises ``TranscodingNotRegisteredError``),
stringifies a datetime or UUID dict key (the library raises), writes NaN as null.  So an
object goes to orjson only when it is made of nothing but dicts with str keys, lists,
tuples, str, int, bool, None, finite floats and — when their usual transcodings are
registered — Decimal and datetime (what the ledger stores: the walk costs about 1 % of an
ingest); anything else is encoded by the library, with its results and its errors.  Reading,
orjson parses and the library's own ``_decode_obj`` revives each envelope; what orjson cannot
parse (NaN, a lone surrogate), and anything with a float in it (orjson reads an int beyond
64 bits as a float), is read by the library.
"""
from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, JSONTranscoder, Transcoding

OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME


class Inexact(Exception):
    """A float in orjson's result: it may have been an integer the library reads exactly."""


class OrjsonTranscoder(JSONTranscoder):
    def __init__(self) -> None:
        super().__init__()
        self.leaves: frozenset[type] = frozenset()
        self.register_leaves()

    def register(self, transcoding: Transcoding) -> None:
        super().register(transcoding)
        self.register_leaves()

    def register_leaves(self) -> None:
        """The types orjson writes as the library would: Decimal and datetime only while the
        registered transcodings are the library's usual ones (``_default`` writes their
        envelopes itself)."""
        leaves: set[type] = {str, int, bool, type(None)}
        if type(self.types.get(Decimal)) is DecimalAsStr:
            leaves.add(Decimal)
        if type(self.types.get(datetime)) is DatetimeAsISO:
            leaves.add(datetime)
        self.leaves = frozenset(leaves)

    def encode(self, obj: Any) -> bytes:
        if not self.plain(obj):
            return super().encode(obj)
        try:
            return orjson.dumps(obj, default=self._default, option=OPTIONS)
        except orjson.JSONEncodeError:  # e.g. an int beyond 64 bits: the library writes it
            return super().encode(obj)

    def plain(self, obj: Any) -> bool:
        """Whether ``obj`` holds nothing orjson would write differently from the library
        (a loop per container, leaves checked in place: the walk runs for every event)."""
        kind, leaves = type(obj), self.leaves
        if kind in leaves:
            return True
        if kind is dict:
            for key, value in obj.items():
                if type(key) is not str or (type(value) not in leaves and not self.plain(value)):
                    return False
            return True
        if kind is list or kind is tuple:
            for value in obj:
                if type(value) not in leaves and not self.plain(value):
                    return False
            return True
        return kind is float and math.isfinite(obj)

    @staticmethod
    def _default(obj: Any) -> Any:
        """The envelopes of DecimalAsStr and DatetimeAsISO (``plain`` let nothing else through)."""
        if type(obj) is Decimal:
            return {"_type_": "decimal_str", "_data_": str(obj)}
        return {"_type_": "datetime_iso", "_data_": obj.isoformat()}

    def decode(self, data: bytes) -> Any:
        try:
            return self._revive(orjson.loads(data))
        except (orjson.JSONDecodeError, Inexact):
            return super().decode(data)

    def _revive(self, obj: Any) -> Any:
        """What json's ``object_hook`` does, bottom-up: each envelope becomes its value (the
        library's ``_decode_obj`` says what an unknown name is)."""
        kind = type(obj)
        if kind is dict:
            if len(obj) == 2 and "_type_" in obj and "_data_" in obj:
                data = obj["_data_"]
                if type(data) is not str:  # a Decimal's or datetime's string needs no walk (half the calls)
                    data = obj["_data_"] = self._revive(data)
                transcoding = self.names.get(obj["_type_"])
                return transcoding.decode(data) if transcoding else self._decode_obj(obj)
            for key, value in obj.items():
                kind = type(value)
                if kind is dict or kind is list:
                    obj[key] = self._revive(value)
                elif kind is float:
                    raise Inexact
        elif kind is list:
            for i, value in enumerate(obj):
                kind = type(value)
                if kind is dict or kind is list:
                    obj[i] = self._revive(value)
                elif kind is float:
                    raise Inexact
        elif kind is float:
            raise Inexact
        return obj
