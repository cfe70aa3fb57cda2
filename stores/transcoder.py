"""eventsourcing's JSON stored format, written and read with orjson.

The bytes keep the library's shape: Decimal, datetime and UUID values as
``{"_type_": name, "_data_": ...}`` (the registered transcodings), everything else plain
JSON, so events stored by either transcoder load with the other.  One difference: orjson
writes a UUID as a plain string (it cannot hand UUIDs to ``default``); the ledger's ids are
text and it stores no UUIDs.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from eventsourcing.persistence import JSONTranscoder, TranscodingNotRegisteredError

OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


class OrjsonTranscoder(JSONTranscoder):
    def encode(self, obj: Any) -> bytes:
        try:
            return orjson.dumps(obj, default=self._default, option=OPTIONS)
        except orjson.JSONEncodeError as error:  # orjson wraps what ``default`` raised
            if isinstance(error.__cause__, TranscodingNotRegisteredError):
                raise error.__cause__ from None
            raise

    def _default(self, obj: Any) -> Any:
        """The two types the ledger stores most, without the registry's lookups; the
        envelopes are exactly those of DecimalAsStr and DatetimeAsISO."""
        kind = type(obj)
        if kind is Decimal:
            return {"_type_": "decimal_str", "_data_": str(obj)}
        if kind is datetime:
            return {"_type_": "datetime_iso", "_data_": obj.isoformat()}
        return self._encode_obj(obj)

    def decode(self, data: bytes) -> Any:
        return self._revive(orjson.loads(data))

    def _revive(self, obj: Any) -> Any:
        """What json's ``object_hook`` does, bottom-up: each envelope becomes its value."""
        if type(obj) is dict:
            if len(obj) == 2 and "_type_" in obj and "_data_" in obj:
                try:
                    transcoding = self.names[obj["_type_"]]
                except KeyError:
                    raise TranscodingNotRegisteredError(f"no transcoding named {obj['_type_']!r}") from None
                return transcoding.decode(self._revive(obj["_data_"]))
            for key, value in obj.items():
                if type(value) is dict or type(value) is list:
                    obj[key] = self._revive(value)
        elif type(obj) is list:
            for i, value in enumerate(obj):
                if type(value) is dict or type(value) is list:
                    obj[i] = self._revive(value)
        return obj
