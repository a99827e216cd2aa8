"""Unit tests of api_poller.sources.spec: source files read into typed specs, bad ones refused
with an error naming the file and the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from api_poller.core.errors import FatalError, SourceError
from api_poller.settings import PollerSettings, load_settings
from api_poller.sources import (
    AuthSpec,
    CursorPaginatorSpec,
    NextUrlPaginatorSpec,
    OffsetPaginatorSpec,
    PageNumberPaginatorSpec,
    load_source,
    load_sources,
    sources_folder,
)

MINIMAL: dict[str, Any] = {
    "name": "acme_orders",
    "connection_id": "acme_api",
    "path": "/v1/orders",
    "records": "data.items",
    "paginator": {"type": "offset"},
}


def write(folder: Path, document: Any, filename: str = "source.yaml") -> Path:
    path = folder / filename
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document), encoding="utf-8")
    return path


def with_changes(**changes: Any) -> dict[str, Any]:
    """MINIMAL with top-level fields replaced (None: removed)."""
    document = copy.deepcopy(MINIMAL)
    for key, value in changes.items():
        if value is None:
            document.pop(key, None)
        else:
            document[key] = value
    return document


# --- Valid sources ------------------------------------------------------------------------------


def test_minimal_source_gets_the_documented_defaults(tmp_path: Path) -> None:
    source = load_source(write(tmp_path, MINIMAL))

    assert source.name == "acme_orders"
    assert source.connection_id == "acme_api"
    assert source.path == "/v1/orders"
    assert source.records.steps == ("data", "items")
    assert source.paginator == OffsetPaginatorSpec()
    assert (source.paginator.offset_param, source.paginator.limit_param) == ("offset", "limit")
    assert source.paginator.page_size == 100
    assert source.auth == AuthSpec(type="none")
    assert source.max_pages == 100_000
    assert (source.concurrency, source.requests_per_second, source.schedule) == (None, None, None)
    assert (source.params, source.headers, source.overridable_params) == ({}, {}, ())
    assert source.primary_key is None and source.incremental is None
    assert source.file == str(tmp_path / "source.yaml")


def test_full_source_is_read_into_typed_fields(tmp_path: Path) -> None:
    text = """
name: acme_orders
description: Orders from ACME
connection_id: acme_api
path: /v1/orders
params: {status: all, limit_hint: 5, archived: false}
headers: {Accept: application/json}
records: $.data.items[*]
primary_key: id
paginator:
  type: page_number
  page_param: p
  size_param: null
  first_page: 0
  total_pages_path: meta.pages
max_pages: 500
concurrency: 4
requests_per_second: 2.5
auth: {type: api_key_header, header: X-Acme-Key}
schedule: "@daily"
overridable_params: [status]
incremental:
  cursor_field: updated_at
  param: filter
  filter_template: "updated_at>={value}"
  initial_value: "1970-01-01T00:00:00Z"
  lookback: 300
"""
    source = load_source(write(tmp_path, text))

    assert source.description == "Orders from ACME"
    # Query values are strings, as they go on the wire.
    assert source.params == {"status": "all", "limit_hint": "5", "archived": "false"}
    assert source.headers == {"Accept": "application/json"}
    assert source.records.steps == ("data", "items")
    assert source.primary_key == "id"
    assert source.paginator == PageNumberPaginatorSpec(
        page_param="p", size_param=None, first_page=0, total_pages_path=source.paginator.total_pages_path
    )
    assert str(source.paginator.total_pages_path) == "meta.pages"
    assert (source.max_pages, source.concurrency, source.requests_per_second) == (500, 4, 2.5)
    assert source.auth == AuthSpec(type="api_key_header", header="X-Acme-Key")
    assert source.schedule == "@daily"
    assert source.overridable_params == ("status",)
    assert source.incremental is not None
    assert source.incremental.filter_template == "updated_at>={value}"
    assert (source.incremental.initial_value, source.incremental.lookback) == ("1970-01-01T00:00:00Z", 300)


@pytest.mark.parametrize(
    ("paginator", "expected"),
    [
        (
            {"type": "offset", "offset_param": "start", "limit_param": "count", "page_size": 50},
            OffsetPaginatorSpec(offset_param="start", limit_param="count", page_size=50),
        ),
        ({"type": "page_number"}, PageNumberPaginatorSpec()),
        ({"type": "cursor", "cursor_path": "next_cursor"}, None),
        ({"type": "cursor", "has_more_path": "has_more", "cursor_key": "id", "cursor_param": "after"}, None),
        ({"type": "next_url", "link_header": True}, NextUrlPaginatorSpec(link_header=True)),
        ({"type": "next_url", "next_url_path": "links.next", "page_size": 20}, None),
    ],
    ids=["offset", "page_number", "cursor-path", "cursor-has-more", "link-header", "next-url-body"],
)
def test_each_paginator_kind_is_read(tmp_path: Path, paginator: dict[str, Any], expected: Any) -> None:
    source = load_source(write(tmp_path, with_changes(paginator=paginator)))

    assert source.paginator.kind == paginator["type"]
    if expected is not None:
        assert source.paginator == expected
    if isinstance(source.paginator, CursorPaginatorSpec) and "has_more_path" in paginator:
        assert (source.paginator.cursor_param, source.paginator.cursor_key) == ("after", "id")
        assert source.paginator.cursor_path is None


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        ({"type": "none"}, AuthSpec()),
        ({"type": "basic"}, AuthSpec(type="basic")),
        ({"type": "bearer"}, AuthSpec(type="bearer")),
        ({"type": "api_key_header"}, AuthSpec(type="api_key_header", header="X-API-Key")),
        ({"type": "api_key_query", "param": "key"}, AuthSpec(type="api_key_query", param="key")),
        (
            {
                "type": "oauth2_client_credentials",
                "token_url": "https://auth.acme.example/token",
                "scope": "r",
            },
            AuthSpec(
                type="oauth2_client_credentials", token_url="https://auth.acme.example/token", scope="r"
            ),
        ),
    ],
    ids=lambda value: value["type"] if isinstance(value, dict) else "",
)
def test_each_auth_kind_is_read(tmp_path: Path, auth: dict[str, Any], expected: AuthSpec) -> None:
    assert load_source(write(tmp_path, with_changes(auth=auth))).auth == expected


# --- Invalid sources: each error names the file and the field ---------------------------------

BAD_SOURCES: list[tuple[str, Any, str, str]] = [
    # (case, document, field, words in the message)
    ("bad yaml", "name: [acme\npath: /x\n", "", "is not valid YAML at line"),
    ("a list, not a mapping", "- name: acme\n", "", "must be a mapping"),
    ("empty file", "", "", "but it is empty"),
    ("key given twice", "name: a\nname: b\n", "", "'name' appears twice"),
    (
        "unknown paginator kind",
        with_changes(paginator={"type": "offest"}),
        "paginator.type",
        "did you mean 'offset'",
    ),
    ("paginator without type", with_changes(paginator={"page_size": 5}), "paginator.type", "is required"),
    ("unknown auth kind", with_changes(auth={"type": "digest"}), "auth.type", "unknown auth type 'digest'"),
    ("missing records path", with_changes(records=None), "records", "is required"),
    ("malformed records path", with_changes(records="$.items[*].id"), "records", "only allowed at the end"),
    ("missing connection", with_changes(connection_id=None), "connection_id", "is required"),
    ("unsafe name", with_changes(name="Acme-Orders"), "name", "is not a safe name"),
    ("name with a path", with_changes(name="../etc"), "name", "is not a safe name"),
    ("scheme and host in the path", with_changes(path="https://evil.example/v1"), "path", "names a host"),
    ("host in a scheme-relative path", with_changes(path="//evil.example/v1"), "path", "names a host"),
    ("query in the path", with_changes(path="/v1/orders?x=1"), "path", "put query parameters in params"),
    ("path without a slash", with_changes(path="v1/orders"), "path", "must start with '/'"),
    ("typo in a top-level key", {**MINIMAL, "paginatr": {"type": "offset"}}, "paginatr", "'paginator'"),
    (
        "typo in a paginator key",
        with_changes(paginator={"type": "offset", "page_sise": 5}),
        "paginator.page_sise",
        "did you mean 'page_size'",
    ),
    (
        "field of another paginator kind",
        with_changes(paginator={"type": "offset", "cursor_path": "next"}),
        "paginator.cursor_path",
        "unknown field of paginator offset",
    ),
    (
        "field of another auth kind",
        with_changes(auth={"type": "bearer", "header": "X-Key"}),
        "auth.header",
        "unknown field of auth type bearer",
    ),
    (
        "page size as a string",
        with_changes(paginator={"type": "offset", "page_size": "100"}),
        "paginator.page_size",
        "must be a whole number, got '100' (str)",
    ),
    ("params as a list", with_changes(params=["status=all"]), "params", "must be a mapping"),
    (
        "a nested param value",
        with_changes(params={"filter": {"a": 1}}),
        "params.filter",
        "string or a number",
    ),
    ("name as a number", with_changes(name=12), "name", "must be a string, got 12 (int)"),
    (
        "link_header not a boolean",
        with_changes(paginator={"type": "next_url", "link_header": "yes"}),
        "paginator.link_header",
        "true or false",
    ),
    (
        "page size 0",
        with_changes(paginator={"type": "offset", "page_size": 0}),
        "paginator.page_size",
        "between 1 and 100000, got 0",
    ),
    (
        "page size too large",
        with_changes(paginator={"type": "page_number", "page_size": 10**6}),
        "paginator.page_size",
        "between 1 and 100000",
    ),
    ("max_pages 0", with_changes(max_pages=0), "max_pages", "between 1 and"),
    ("concurrency 0", with_changes(concurrency=0), "concurrency", "between 1 and 512"),
    ("concurrency too high", with_changes(concurrency=10_000), "concurrency", "between 1 and 512"),
    ("requests_per_second 0", with_changes(requests_per_second=0), "requests_per_second", "above 0"),
    ("requests_per_second negative", with_changes(requests_per_second=-2), "requests_per_second", "above 0"),
    (
        "first page 2",
        with_changes(paginator={"type": "page_number", "first_page": 2}),
        "paginator.first_page",
        "between 0 and 1",
    ),
    (
        "cursor path and has_more path",
        with_changes(
            paginator={"type": "cursor", "cursor_path": "next", "has_more_path": "more", "cursor_key": "id"}
        ),
        "paginator.cursor_path",
        "exactly one of cursor_path and has_more_path (both set)",
    ),
    (
        "neither cursor path nor has_more path",
        with_changes(paginator={"type": "cursor"}),
        "paginator.cursor_path",
        "(neither set)",
    ),
    (
        "has_more without the record's key",
        with_changes(paginator={"type": "cursor", "has_more_path": "has_more"}),
        "paginator.cursor_key",
        "is required with has_more_path",
    ),
    (
        "next_url with neither a path nor the Link header",
        with_changes(paginator={"type": "next_url"}),
        "paginator.next_url_path",
        "(neither set)",
    ),
    (
        "two totals",
        with_changes(paginator={"type": "page_number", "total_records_path": "a", "total_pages_path": "b"}),
        "paginator.total_records_path",
        "at most one",
    ),
    (
        "incremental without cursor_field",
        with_changes(incremental={"param": "since"}),
        "incremental.cursor_field",
        "is required",
    ),
    (
        "incremental without param",
        with_changes(incremental={"cursor_field": "updated_at"}),
        "incremental.param",
        "is required",
    ),
    (
        "filter template without {value}",
        with_changes(incremental={"cursor_field": "u", "param": "q", "filter_template": "u>0"}),
        "incremental.filter_template",
        "must contain {value}",
    ),
    (
        "negative lookback",
        with_changes(incremental={"cursor_field": "u", "param": "q", "lookback": -1}),
        "incremental.lookback",
        ">= 0",
    ),
    (
        "oauth2 without token_url",
        with_changes(auth={"type": "oauth2_client_credentials"}),
        "auth.token_url",
        "is required",
    ),
    (
        "oauth2 with a relative token_url",
        with_changes(auth={"type": "oauth2_client_credentials", "token_url": "/oauth/token"}),
        "auth.token_url",
        "not an absolute http(s) URL",
    ),
    (
        "a credential in headers",
        with_changes(headers={"Authorization": "Bearer s3cr3t"}),
        "headers.Authorization",
        "credentials belong in the Connection",
    ),
    (
        "a fixed param the paginator sets",
        with_changes(params={"offset": 10}),
        "params.offset",
        "is set by paginator.offset_param",
    ),
    (
        "an overridable param the paginator sets",
        with_changes(paginator={"type": "page_number"}, overridable_params=["page"]),
        "overridable_params[0]",
        "cannot be overridden",
    ),
    (
        "the api key param also fixed",
        with_changes(auth={"type": "api_key_query", "param": "key"}, params={"key": "x"}),
        "params.key",
        "is set by auth.param",
    ),
    ("paginator not a mapping", with_changes(paginator="offset"), "paginator", "must be a mapping"),
]


@pytest.mark.parametrize(
    ("document", "field", "words"),
    [case[1:] for case in BAD_SOURCES],
    ids=[case[0] for case in BAD_SOURCES],
)
def test_bad_source_is_refused_naming_file_and_field(
    tmp_path: Path, document: Any, field: str, words: str
) -> None:
    path = write(tmp_path, document)

    with pytest.raises(SourceError) as caught:
        load_source(path)

    prefix = f"{path}: {field}: " if field else f"{path}: "
    assert str(caught.value).startswith(prefix), str(caught.value)
    assert words in str(caught.value)
    assert (caught.value.file, caught.value.field) == (str(path), field)
    assert isinstance(caught.value, FatalError)


def test_unreadable_file_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"missing\.yaml: cannot be read"):
        load_source(tmp_path / "missing.yaml")


# --- A folder of sources ----------------------------------------------------------------------


def test_folder_loads_good_sources_next_to_broken_ones(tmp_path: Path) -> None:
    write(tmp_path, with_changes(name="orders"), "orders.yaml")
    write(tmp_path, with_changes(name="customers"), "customers.yml")
    broken = write(tmp_path, with_changes(name="broken", paginator={"type": "nope"}), "broken.yaml")
    write(tmp_path, "not: a source", "notes.txt")
    write(tmp_path, with_changes(name="hidden"), ".hidden.yaml")

    sources, errors = load_sources(tmp_path)

    assert sorted(sources) == ["customers", "orders"]
    assert list(errors) == [str(broken)]
    assert str(errors[str(broken)]).startswith(f"{broken}: paginator.type: ")


def test_two_sources_with_one_name_are_both_refused_naming_each_other(tmp_path: Path) -> None:
    first = write(tmp_path, with_changes(name="orders"), "a_orders.yaml")
    second = write(tmp_path, with_changes(name="orders", path="/v2/orders"), "b_orders.yaml")
    write(tmp_path, with_changes(name="customers"), "customers.yaml")

    sources, errors = load_sources(tmp_path)

    assert list(sources) == ["customers"]
    assert str(errors[str(first)]) == f"{first}: name: 'orders' is also the name of {second}"
    assert str(errors[str(second)]) == f"{second}: name: 'orders' is also the name of {first}"


def test_missing_folder_has_no_sources(tmp_path: Path) -> None:
    assert load_sources(tmp_path / "nowhere") == ({}, {})


def test_sources_folder_defaults_to_dags_sources_and_follows_the_setting(tmp_path: Path) -> None:
    dags = tmp_path / "dags"

    assert sources_folder(PollerSettings(), dags) == dags / "sources"
    assert sources_folder(PollerSettings(sources_folder="partners"), dags) == dags / "partners"
    assert sources_folder(PollerSettings(sources_folder="/srv/sources"), dags) == Path("/srv/sources")


def test_sources_folder_setting_is_read_from_the_environment() -> None:
    assert load_settings({}).sources_folder == ""
    assert load_settings({"API_POLLER_SOURCES_FOLDER": "/srv/sources"}).sources_folder == "/srv/sources"
