"""A response body or a stored page, parsed as ``json.loads`` would, without its copies.

``json.loads(bytes)`` first decodes the whole body into a str (one more copy of the page in
memory); msgspec parses the bytes directly, to the same Python values. Whatever msgspec refuses
(NaN, numbers beyond a float, UTF-16, a byte-order mark...) is handed to ``json.loads``, so what
is accepted and the values it yields stay ``json.loads``'s.
"""

from __future__ import annotations

import codecs
import json
from typing import Any

import msgspec

# UTF-8 is checked this many bytes at a time (only a slice's text exists at once).
_UTF8_SLICE = 1 << 20


def parse_json(body: str | bytes | bytearray) -> tuple[Any, bool]:
    """The JSON value in ``body``, and whether it is standard JSON (msgspec parsed it: no NaN or
    Infinity anywhere, so ``append_json`` may write it the fast way); ValueError (as
    ``json.loads``) if it is not JSON."""
    try:
        return msgspec.json.decode(body), True
    except (msgspec.DecodeError, msgspec.ValidationError):
        return json.loads(body), False


def load_json(body: str | bytes | bytearray) -> Any:
    """The JSON value in ``body``; ValueError (as ``json.loads``) if it is not JSON."""
    return parse_json(body)[0]


def append_json(out: bytearray, value: Any, *, standard: bool) -> None:
    """Append ``value`` as compact JSON (UTF-8, non-ASCII unescaped): the text
    ``json.dumps(value, separators=(",", ":"), ensure_ascii=False)`` writes, up to the spelling of
    escapes and floats. msgspec writes it ten times faster, but writes NaN and Infinity as null:
    only a ``standard`` value (see ``parse_json``) goes that way."""
    if standard:
        out += msgspec.json.encode(value)
    else:
        out += json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def check_utf8(body: bytes | bytearray) -> None:
    """UnicodeDecodeError (a ValueError) unless ``body`` is valid UTF-8, checked slice by slice."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(body)
    for start in range(0, len(view), _UTF8_SLICE):
        decoder.decode(view[start : start + _UTF8_SLICE])
    decoder.decode(b"", final=True)
