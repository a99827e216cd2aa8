"""The seed page check counts records without building them, yet accepts and refuses exactly what
``json.loads`` + ``check_page_document`` did."""

from __future__ import annotations

import json

import pytest

from api_poller.core.errors import RetriableError
from api_poller.core.json_body import check_utf8, load_json
from api_poller.core.planning import PageTask
from api_poller.partner.client import count_page_records

PAGE = PageTask(page=0, start_at=0, count=2)
URL = "http://partner.test/payload?startAt=0&count=2"


@pytest.mark.parametrize(
    "body",
    [
        b'{"payload": [{"id": 0}, {"id": 1}], "totalRecords": 2}',
        b'{"payload": [NaN, {"id": 1e400}]}',  # json.loads accepts these; msgspec does not
        '\ufeff{"payload": [1, 2]}'.encode("utf-8"),  # a byte-order mark
        '{"payload": [1, 2]}'.encode("utf-16"),
        bytearray(b'{"payload": [{"id": "\xc3\xa9"}, {"id": 1}]}'),
    ],
)
def test_a_page_json_loads_accepts_is_counted(body: bytes) -> None:
    assert count_page_records(body, PAGE, URL) == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"payload": [{"id": "\xff"}, {"id": 1}]}', "is not JSON"),  # bad UTF-8 inside a record
        (b'{"payload": [1, 2', "is not JSON"),
        (b"<html>busy</html>", "is not JSON (starts with '<html>busy</html>')"),
        (b'{"items": [1, 2]}', "has no 'payload' list"),
        (b"[1, 2]", "has no 'payload' list"),
        (b'{"payload": [1]}', "returned 1 records, expected 2"),
    ],
)
def test_a_page_json_loads_refuses_or_cut_short_is_retried_with_the_reason(body: bytes, message: str) -> None:
    with pytest.raises(RetriableError, match=message.replace("(", r"\(").replace(")", r"\)")):
        count_page_records(body, PAGE, URL)


@pytest.mark.parametrize(
    "body", [b'{"a": [1, 2.5, "\\u00e9", null, true]}', b'{"big": 123456789012345678901234567890, "x": NaN}']
)
def test_load_json_gives_what_json_loads_gives(body: bytes) -> None:
    assert repr(load_json(body)) == repr(json.loads(body))


def test_utf8_is_checked_across_slice_boundaries() -> None:
    text = ("é" * (1 << 20)).encode()  # two-byte characters straddle every 1 MiB slice
    check_utf8(text)
    with pytest.raises(UnicodeDecodeError):
        check_utf8(text + b"\xff")
