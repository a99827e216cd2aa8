"""Unit tests of api_poller.partner.records: records and values found in a response body."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from api_poller.core.errors import FatalError, ResponseShapeError
from api_poller.partner.records import RecordsPath, ValuePath, read_total

ITEMS = [{"id": 1}, {"id": 2}]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("items", {"items": ITEMS}),
        ("data.items", {"data": {"items": ITEMS}, "meta": {"total": 2}}),
        ("$.data.items", {"data": {"items": ITEMS}}),
        ("$.items[*]", {"items": ITEMS}),
        ("items[*]", {"items": ITEMS}),
        ("$['odd key'].items", {"odd key": {"items": ITEMS}}),
        ("$.pages[0].items", {"pages": [{"items": ITEMS}]}),
        ("$", ITEMS),
        ("$[*]", ITEMS),
    ],
)
def test_records_are_extracted(path: str, body: Any) -> None:
    assert RecordsPath.parse(path).extract(body) == ITEMS


def test_null_records_are_an_empty_page() -> None:
    assert RecordsPath.parse("items").extract({"items": None}) == []


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("data.items", {"data": {"records": []}}, "$.data has no key 'items' (its keys: records)"),
        ("data.items", {"items": []}, "$ has no key 'data'"),
        ("data.items", [{"id": 1}], "$ is a list, not an object"),
        ("$.pages[3]", {"pages": []}, "$.pages has 0 elements, no [3]"),
        ("items", {"items": {"id": 1}}, "is an object, not a list"),
        ("items", {"items": "none"}, "is a string, not a list"),
        ("$", {"items": ITEMS}, "is an object, not a list"),
        ("items", {"items": [{"id": 1}, 2]}, "record 1 is a number, not an object"),
    ],
)
def test_records_path_that_matches_nothing_or_no_list_is_a_clear_error(
    path: str, body: Any, words: str
) -> None:
    with pytest.raises(ResponseShapeError) as caught:
        RecordsPath.parse(path).extract(body)

    assert f"records path {path!r}" in str(caught.value)
    assert words in str(caught.value)
    assert isinstance(caught.value, FatalError)


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("", "non-empty"),
        ("data..items", "expected a key name"),
        ("$.items[*].id", "only allowed at the end"),
        ("$.items[x]", "unexpected '['"),
        (" items", "spaces"),
    ],
)
def test_malformed_paths_are_refused_when_compiled(path: str, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("[", r"\[")):
        RecordsPath.parse(path)


@pytest.mark.parametrize("path", ["$", "$[*]", "meta.items[*]"])
def test_value_path_names_one_value(path: str) -> None:
    with pytest.raises(ValueError):
        ValuePath.parse(path)


def test_value_path_finds_values_and_tells_absent_from_null() -> None:
    body = {"meta": {"total": 42, "cursor": None}, "links": {"next": "/items?page=2"}}

    assert ValuePath.parse("meta.total").find(body) == 42
    assert ValuePath.parse("$.links.next").find(body) == "/items?page=2"
    assert ValuePath.parse("meta.missing").find(body) is None
    assert ValuePath.parse("meta.cursor").locate(body) == (True, None)
    assert ValuePath.parse("meta.missing").locate(body) == (False, None)
    assert "has no key 'missing'" in ValuePath.parse("meta.missing").explain_missing(body)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(42, 42), (0, 0), (42.0, 42), ("42", 42), (None, None)],
)
def test_total_is_a_whole_number(value: Any, expected: int | None) -> None:
    assert read_total(ValuePath.parse("meta.total"), {"meta": {"total": value}}) == expected


def test_absent_total_is_unknown() -> None:
    assert read_total(ValuePath.parse("meta.total"), {"meta": {}}) is None


@pytest.mark.parametrize("value", ["lots", "12abc", 4.5, -1, True, [3], {"n": 3}])
def test_total_that_is_not_a_number_is_a_clear_error(value: Any) -> None:
    with pytest.raises(
        ResponseShapeError, match=r"total at 'meta.total' is .*not a whole non-negative number"
    ):
        read_total(ValuePath.parse("meta.total"), {"meta": {"total": value}})


def test_compiled_paths_travel_through_pickle_and_print_as_written() -> None:
    path = RecordsPath.parse("$.data.items[*]")

    assert pickle.loads(pickle.dumps(path)) == path
    assert str(path) == "$.data.items[*]"


def test_absent_total_is_an_error_where_it_is_required() -> None:
    with pytest.raises(
        ResponseShapeError, match=r"total path 'meta.totl' matches nothing .*\(its keys: total\)"
    ):
        read_total(ValuePath.parse("meta.totl"), {"meta": {"total": 3}}, required=True)
    assert read_total(ValuePath.parse("meta.total"), {"meta": {"total": None}}, required=True) is None
