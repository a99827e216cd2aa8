"""A source, as declared in its YAML file: typed, frozen, validated when the file is read.

``load_source(path)`` reads one file into a ``SourceSpec``; ``load_sources(folder)`` reads every
``*.yaml``/``*.yml`` file of a folder and returns the sources by name next to the errors by file,
so one broken file never hides the others. Every error is a ``SourceError`` reading
``<file>: <field.path>: <message>``. Reading a source touches only its file: no network, no AWS,
no Airflow, so a DAG factory can parse many of them on every DAG-file parse.

The dataclasses below are the one place defaults are written: the reader passes on only the keys a
file sets. Paths in the body (records, totals, cursors, next links) are compiled here, so a
malformed path is a parse-time error too. See docs/sources.md for the file format.

What is checked here is what a file alone can tell. What needs the Connection (its host, its
credentials) is checked when credentials are built (``api_poller.partner.auth``); what needs a
response (a records path that matches nothing, a total that is not a number) is checked by the
paginators and ``api_poller.partner.records`` on the first page, before any page is saved.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import yaml

from api_poller.core.errors import SourceError
from api_poller.core.job_request import MAX_CONCURRENCY
from api_poller.partner.records import RecordsPath, ValuePath

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,62}")
CONNECTION_ID_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,249}")
# RFC 9110 token characters: what a header or query parameter name may be made of here.
PARAM_NAME_PATTERN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~\-\[\]]{1,128}")
HEADER_NAME_PATTERN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~\-]{1,128}")
# Credentials come from the Connection only: a source file is not a place for secrets.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})

MAX_PAGE_SIZE = 100_000
MAX_MAX_PAGES = 10_000_000
MAX_REQUESTS_PER_SECOND = 10_000.0
SOURCE_SUFFIXES = (".yaml", ".yml")


# --- The source, as typed data ----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class OffsetPaginatorSpec:
    """``?offset=N&limit=M``; with ``total_path`` the pages are planned from the first response."""

    kind: ClassVar[str] = "offset"
    offset_param: str = "offset"
    limit_param: str = "limit"
    page_size: int = 100
    total_path: ValuePath | None = None


@dataclass(frozen=True, kw_only=True)
class PageNumberPaginatorSpec:
    """``?page=N&per_page=M``; with a total (records or pages) the pages are planned.

    ``size_param: null`` sends no size: the API's own page size is then read from the first page.
    """

    kind: ClassVar[str] = "page_number"
    page_param: str = "page"
    size_param: str | None = "per_page"
    page_size: int = 100
    first_page: Literal[0, 1] = 1
    total_records_path: ValuePath | None = None
    total_pages_path: ValuePath | None = None


@dataclass(frozen=True, kw_only=True)
class CursorPaginatorSpec:
    """A cursor sent back in ``cursor_param``: read at ``cursor_path``, or, when the body only says
    ``has_more``, taken from the last record's ``cursor_key`` field. Exactly one of the two modes."""

    kind: ClassVar[str] = "cursor"
    cursor_param: str = "cursor"
    cursor_path: ValuePath | None = None
    has_more_path: ValuePath | None = None
    cursor_key: str | None = None
    limit_param: str = "limit"
    # None: no page size is sent; the API's default applies.
    page_size: int | None = None


@dataclass(frozen=True, kw_only=True)
class NextUrlPaginatorSpec:
    """Follow a next link: from the body at ``next_url_path``, or from the ``Link`` header."""

    kind: ClassVar[str] = "next_url"
    next_url_path: ValuePath | None = None
    link_header: bool = False
    # Sent on the first request only; next links carry their own query.
    limit_param: str = "limit"
    page_size: int | None = None


PaginatorSpec = OffsetPaginatorSpec | PageNumberPaginatorSpec | CursorPaginatorSpec | NextUrlPaginatorSpec
PAGINATOR_SPECS: dict[str, type[PaginatorSpec]] = {
    spec.kind: spec
    for spec in (OffsetPaginatorSpec, PageNumberPaginatorSpec, CursorPaginatorSpec, NextUrlPaginatorSpec)
}

AuthKind = Literal["none", "basic", "bearer", "api_key_header", "api_key_query", "oauth2_client_credentials"]
# The fields each auth kind may set (besides ``type``).
AUTH_FIELDS: dict[str, tuple[str, ...]] = {
    "none": (),
    "basic": (),
    "bearer": (),
    "api_key_header": ("header",),
    "api_key_query": ("param",),
    "oauth2_client_credentials": ("token_url", "scope", "client_auth"),
}


@dataclass(frozen=True, kw_only=True)
class AuthSpec:
    """How the Connection's credentials are sent. Secrets are never here: they stay in the
    Connection (login/password), and ``api_poller.partner.auth`` reads them when a job runs."""

    type: AuthKind = "none"
    # api_key_header: the header carrying the key (the Connection's password).
    header: str = "X-API-Key"
    # api_key_query: the query parameter carrying the key (the Connection's password).
    param: str = "api_key"
    # oauth2_client_credentials: client_id = Connection login, client_secret = Connection password.
    token_url: str = ""
    scope: str = ""
    # How the client authenticates to the token URL: HTTP Basic (RFC 6749 2.3.1) or in the body.
    client_auth: Literal["basic", "body"] = "basic"


@dataclass(frozen=True, kw_only=True)
class IncrementalSpec:
    """Fetch only what changed since the last complete job: the highest ``cursor_field`` value
    written (the watermark), minus ``lookback``, is sent in ``param`` (through ``filter_template``
    when set, e.g. ``updated_at>={value}``). Without a watermark, ``initial_value`` is sent, or
    nothing at all when it is None (a full first sync)."""

    cursor_field: str
    param: str
    filter_template: str | None = None
    initial_value: str | int | float | None = None
    # Seconds (timestamp watermarks) or units (numeric ones) subtracted from the watermark.
    lookback: float = 0


OutputFormat = Literal["ndjson", "ndjson.gz", "parquet"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("ndjson", "ndjson.gz", "parquet")
# Below 1 MB files are too small to be worth rolling up; S3 refuses single PUTs above 5 GB.
MIN_TARGET_FILE_SIZE_MB = 1
MAX_TARGET_FILE_SIZE_MB = 5120
MAX_KEEP_SNAPSHOTS = 100_000


@dataclass(frozen=True, kw_only=True)
class OutputSpec:
    """How a complete job's records are published as a snapshot (see docs/output.md): the file
    format, the size files are rolled up to, and how many snapshots the retention keeps."""

    format: OutputFormat = "ndjson"
    target_file_size_mb: int = 128
    # None: keep every snapshot (retention off).
    keep_snapshots: int | None = None

    @property
    def target_file_bytes(self) -> int:
        return self.target_file_size_mb * 1024 * 1024


# What a job can end as, besides complete; an alert names the ones it is sent for.
ALERT_OUTCOMES = ("failed", "incomplete")
SNS_ARN_PATTERN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_./-]{1,256}")
IMPORT_PATH_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")
KWARG_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


@dataclass(frozen=True, kw_only=True)
class SnsNotifierSpec:
    """The Amazon provider's ``SnsNotifier``: the alert is published to ``target_arn`` (a topic
    or an endpoint). ``aws_conn_id`` None: the deployment's AWS connection."""

    kind: ClassVar[str] = "sns"
    target_arn: str
    aws_conn_id: str | None = None
    region_name: str | None = None


@dataclass(frozen=True, kw_only=True)
class CustomNotifierSpec:
    """Any Airflow notifier (a ``BaseNotifier`` subclass), by import path: built with ``kwargs``
    plus the alert's text in ``message_field`` (and its subject line in ``subject_field``)."""

    kind: ClassVar[str] = "custom"
    class_path: str
    message_field: str = "message"
    subject_field: str | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)


NotifierSpec = SnsNotifierSpec | CustomNotifierSpec


@dataclass(frozen=True, kw_only=True)
class AlertsSpec:
    """Who hears about a job that did not end complete: ``notifier`` is sent one message per
    job whose outcome is in ``on`` (failed: the plan or a step failed; incomplete: pages failed
    or records are missing). Checked here as a file; whether the notifier can be built is checked
    with the DAG (``adapters.alerts.check_alerts``)."""

    notifier: NotifierSpec
    on: frozenset[str] = frozenset(ALERT_OUTCOMES)


@dataclass(frozen=True, kw_only=True)
class SourceSpec:
    """One source: which API to read, how to page through it, how to authenticate.

    ``params`` and ``headers`` are read-only mappings (do not mutate them). ``file`` is where the
    source was read from, for messages.
    """

    name: str
    connection_id: str
    path: str
    records: RecordsPath
    paginator: PaginatorSpec
    file: str = ""
    description: str = ""
    params: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    # The record field that identifies a record; None: reconciliation counts records only.
    primary_key: str | None = None
    # A guard against an API that never ends: the walk stops after this many pages.
    max_pages: int = 100_000
    # Requests in flight across a job's fetch tasks; None: the deployment's default.
    concurrency: int | None = None
    # A rate cap across all fetch tasks of a job; None: no cap.
    requests_per_second: float | None = None
    auth: AuthSpec = field(default_factory=AuthSpec)
    # A cron expression or preset (@daily); None: manual runs only.
    schedule: str | None = None
    # Query parameters a trigger's conf may override (never the host, path or credentials).
    overridable_params: tuple[str, ...] = ()
    incremental: IncrementalSpec | None = None
    output: OutputSpec = field(default_factory=OutputSpec)
    alerts: AlertsSpec | None = None


# --- Reading a file ---------------------------------------------------------------------------


# libyaml's parser when PyYAML was built with it: about 5x faster than the pure-Python one.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_SafeLoader):  # type: ignore[misc,valid-type]
    """safe_load, except that a key given twice in one mapping is an error (a silent last-wins
    would hide a typo such as two ``paginator:`` blocks)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, str | int | float | bool) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice", key_node.start_mark
            )
        seen.add(key)
    mapping: dict[Any, Any] = loader.construct_mapping(node)
    return mapping


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_unique_mapping,
)


@dataclass(frozen=True)
class _Section:
    """One mapping of a source file, with the dotted path of its fields for messages."""

    file: str
    where: str
    data: Mapping[Any, Any]

    def field_path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def error(self, key: str, message: str) -> SourceError:
        return SourceError(self.file, self.field_path(key), message)

    def reject_unknown(self, allowed: Collection[str], what: str) -> None:
        for key in self.data:
            if not isinstance(key, str):
                raise self.error(str(key), f"keys must be strings, got {key!r}")
            if key not in allowed:
                close = difflib.get_close_matches(key, list(allowed), n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known fields: {', '.join(allowed)}"
                raise self.error(key, f"unknown field of {what}; {hint}")

    def require(self, *keys: str) -> None:
        for key in keys:
            if key not in self.data:
                raise self.error(key, "is required")

    def collect(self, converters: Mapping[str, Converter]) -> dict[str, Any]:
        """Converted values of the keys present; absent keys keep the dataclass defaults."""
        return {
            key: convert(self, key, self.data[key]) for key, convert in converters.items() if key in self.data
        }


Converter = Callable[[_Section, str, Any], Any]


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    return f"{value!r} ({type(value).__name__})"


def _string(pattern: re.Pattern[str] | None = None, rule: str = "") -> Converter:
    def convert(section: _Section, key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise section.error(key, f"must be a string, got {_describe(value)}")
        if not value.strip():
            raise section.error(key, "must not be empty")
        if pattern is not None and not pattern.fullmatch(value):
            raise section.error(key, f"{value!r} is not {rule}")
        return value

    return convert


def _integer(low: int, high: int) -> Converter:
    def convert(section: _Section, key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise section.error(key, f"must be a whole number, got {_describe(value)}")
        if not low <= value <= high:
            raise section.error(key, f"must be between {low} and {high}, got {value}")
        return value

    return convert


def _positive_number(high: float) -> Converter:
    def convert(section: _Section, key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise section.error(key, f"must be a number, got {_describe(value)}")
        if not 0 < value <= high:
            raise section.error(key, f"must be above 0 and at most {high:g}, got {value}")
        return float(value)

    return convert


def _boolean(section: _Section, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise section.error(key, f"must be true or false, got {_describe(value)}")
    return value


def _optional(convert: Converter) -> Converter:
    """The same check, but an explicit null means 'not set'."""

    def convert_optional(section: _Section, key: str, value: Any) -> Any:
        return None if value is None else convert(section, key, value)

    return convert_optional


def _path_converter(compile_path: Callable[[str], Any]) -> Converter:
    def convert(section: _Section, key: str, value: Any) -> Any:
        text = _string()(section, key, value)
        try:
            return compile_path(text)
        except ValueError as error:
            raise section.error(key, str(error)) from None

    return convert


_records_path = _path_converter(RecordsPath.parse)
_value_path = _path_converter(ValuePath.parse)
_param_name = _string(PARAM_NAME_PATTERN, "a query parameter name (letters, digits, -_.[])")
_header_name = _string(HEADER_NAME_PATTERN, "an HTTP header name")


def _query_value(section: _Section, key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise section.error(key, f"must be a string or a number, got {_describe(value)}")


def _mapping_of(key_check: Converter, value_check: Converter) -> Converter:
    def convert(section: _Section, key: str, value: Any) -> dict[str, str]:
        if not isinstance(value, Mapping):
            raise section.error(key, f"must be a mapping, got {_describe(value)}")
        inner = _Section(section.file, section.field_path(key), value)
        result: dict[str, str] = {}
        for name, item in value.items():
            name_text = key_check(inner, str(name), name)
            result[name_text] = value_check(inner, name_text, item)
        return result

    return convert


def _list_of(item_check: Converter) -> Converter:
    def convert(section: _Section, key: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise section.error(key, f"must be a list, got {_describe(value)}")
        return tuple(item_check(section, f"{key}[{index}]", item) for index, item in enumerate(value))

    return convert


def _section(parent: _Section, key: str) -> _Section:
    value = parent.data[key]
    if not isinstance(value, Mapping):
        raise parent.error(key, f"must be a mapping, got {_describe(value)}")
    return _Section(parent.file, parent.field_path(key), value)


def _kind(section: _Section, choices: Collection[str], what: str) -> str:
    section.require("type")
    kind = section.data["type"]
    if kind not in choices:
        close = difflib.get_close_matches(str(kind), list(choices), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise section.error("type", f"unknown {what} {kind!r}: one of {', '.join(choices)}{hint}")
    return str(kind)


def _exactly_one(section: _Section, first: str, second: str) -> None:
    has_first = section.data.get(first) is not None
    has_second = section.data.get(second) not in (None, False)
    if has_first == has_second:
        which = "both" if has_first else "neither"
        raise section.error(first, f"set exactly one of {first} and {second} ({which} set)")


_PAGE_SIZE = _integer(1, MAX_PAGE_SIZE)

_PAGINATOR_FIELDS: dict[str, dict[str, Converter]] = {
    "offset": {
        "offset_param": _param_name,
        "limit_param": _param_name,
        "page_size": _PAGE_SIZE,
        "total_path": _optional(_value_path),
    },
    "page_number": {
        "page_param": _param_name,
        "size_param": _optional(_param_name),
        "page_size": _PAGE_SIZE,
        "first_page": _integer(0, 1),
        "total_records_path": _optional(_value_path),
        "total_pages_path": _optional(_value_path),
    },
    "cursor": {
        "cursor_param": _param_name,
        "cursor_path": _optional(_value_path),
        "has_more_path": _optional(_value_path),
        "cursor_key": _optional(_string()),
        "limit_param": _param_name,
        "page_size": _optional(_PAGE_SIZE),
    },
    "next_url": {
        "next_url_path": _optional(_value_path),
        "link_header": _boolean,
        "limit_param": _param_name,
        "page_size": _optional(_PAGE_SIZE),
    },
}


def _read_paginator(section: _Section) -> PaginatorSpec:
    kind = _kind(section, PAGINATOR_SPECS, "paginator")
    converters = _PAGINATOR_FIELDS[kind]
    section.reject_unknown(["type", *converters], f"paginator {kind}")
    values = section.collect(converters)
    if kind == "page_number" and values.get("total_records_path") and values.get("total_pages_path"):
        raise section.error(
            "total_records_path", "set at most one of total_records_path and total_pages_path"
        )
    if kind == "cursor":
        _exactly_one(section, "cursor_path", "has_more_path")
        if values.get("has_more_path") and not values.get("cursor_key"):
            raise section.error("cursor_key", "is required with has_more_path (the last record's field)")
        if values.get("cursor_path") and values.get("cursor_key"):
            raise section.error("cursor_key", "only applies with has_more_path, not with cursor_path")
    if kind == "next_url":
        _exactly_one(section, "next_url_path", "link_header")
    return PAGINATOR_SPECS[kind](**values)


_AUTH_CONVERTERS: dict[str, Converter] = {
    "header": _header_name,
    "param": _param_name,
    "token_url": _string(),
    "scope": _string(),
    "client_auth": _string(re.compile("basic|body"), "basic or body"),
}


def _read_auth(section: _Section) -> AuthSpec:
    kind = _kind(section, AUTH_FIELDS, "auth type")
    allowed = AUTH_FIELDS[kind]
    section.reject_unknown(["type", *allowed], f"auth type {kind}")
    values = section.collect({key: _AUTH_CONVERTERS[key] for key in allowed})
    if kind == "oauth2_client_credentials":
        section.require("token_url")
        url = urlsplit(values["token_url"])
        if url.scheme not in ("http", "https") or not url.hostname:
            raise section.error("token_url", f"{values['token_url']!r} is not an absolute http(s) URL")
    return AuthSpec(type=kind, **values)  # type: ignore[arg-type]


def _initial_value(section: _Section, key: str, value: Any) -> str | int | float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise section.error(key, f"must be a string or a number, got {_describe(value)}")
    return value


def _lookback(section: _Section, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise section.error(key, f"must be a number >= 0, got {_describe(value)}")
    return value


def _filter_template(section: _Section, key: str, value: Any) -> str:
    text: str = _string()(section, key, value)
    if "{value}" not in text:
        raise section.error(key, f"{text!r} must contain {{value}}, where the watermark goes")
    return text


_INCREMENTAL_FIELDS: dict[str, Converter] = {
    "cursor_field": _string(),
    "param": _param_name,
    "filter_template": _optional(_filter_template),
    "initial_value": _optional(_initial_value),
    "lookback": _lookback,
}


def _read_incremental(section: _Section) -> IncrementalSpec:
    section.reject_unknown(list(_INCREMENTAL_FIELDS), "incremental")
    section.require("cursor_field", "param")
    return IncrementalSpec(**section.collect(_INCREMENTAL_FIELDS))


def _output_format(section: _Section, key: str, value: Any) -> str:
    if value not in OUTPUT_FORMATS:
        close = difflib.get_close_matches(str(value), list(OUTPUT_FORMATS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise section.error(
            key, f"{_describe(value)} is not supported: one of {', '.join(OUTPUT_FORMATS)}{hint}"
        )
    return str(value)


_OUTPUT_FIELDS: dict[str, Converter] = {
    "format": _output_format,
    "target_file_size_mb": _integer(MIN_TARGET_FILE_SIZE_MB, MAX_TARGET_FILE_SIZE_MB),
    "keep_snapshots": _optional(_integer(1, MAX_KEEP_SNAPSHOTS)),
}


def _read_output(section: _Section) -> OutputSpec:
    section.reject_unknown(list(_OUTPUT_FIELDS), "output")
    return OutputSpec(**section.collect(_OUTPUT_FIELDS))


def _outcomes(section: _Section, key: str, value: Any) -> frozenset[str]:
    if not isinstance(value, list) or not value:
        choices = ", ".join(ALERT_OUTCOMES)
        raise section.error(key, f"must be a non-empty list of {choices}, got {_describe(value)}")
    for index, item in enumerate(value):
        if item not in ALERT_OUTCOMES:
            raise section.error(f"{key}[{index}]", f"{item!r} is not one of {', '.join(ALERT_OUTCOMES)}")
    return frozenset(value)


def _notifier_kwargs(section: _Section, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise section.error(key, f"must be a mapping, got {_describe(value)}")
    inner = _Section(section.file, section.field_path(key), value)
    for name in value:
        _string(KWARG_PATTERN, "a keyword argument name")(inner, str(name), name)
    return dict(value)


_NOTIFIER_FIELDS: dict[str, dict[str, Converter]] = {
    "sns": {
        "target_arn": _string(SNS_ARN_PATTERN, "an SNS ARN (arn:aws:sns:<region>:<account>:<name>)"),
        "aws_conn_id": _optional(_string(CONNECTION_ID_PATTERN, "an Airflow connection id")),
        "region_name": _optional(_string(re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]"), "an AWS region")),
    },
    "custom": {
        "class": _string(IMPORT_PATH_PATTERN, "an import path (package.module.NotifierClass)"),
        "message_field": _string(KWARG_PATTERN, "a keyword argument name"),
        "subject_field": _optional(_string(KWARG_PATTERN, "a keyword argument name")),
        "kwargs": _notifier_kwargs,
    },
}
_NOTIFIER_REQUIRED = {"sns": ("target_arn",), "custom": ("class",)}


def _read_notifier(section: _Section) -> NotifierSpec:
    kind = _kind(section, _NOTIFIER_FIELDS, "notifier type")
    converters = _NOTIFIER_FIELDS[kind]
    section.reject_unknown(["type", *converters], f"notifier {kind}")
    section.require(*_NOTIFIER_REQUIRED[kind])
    values = section.collect(converters)
    if kind == "sns":
        return SnsNotifierSpec(**values)
    values["class_path"] = values.pop("class")
    spec = CustomNotifierSpec(**values)
    for name in (spec.message_field, spec.subject_field):
        if name in spec.kwargs:
            raise section.error("kwargs", f"{name!r} is where the alert's text goes; remove it from kwargs")
    if spec.subject_field == spec.message_field:
        raise section.error("subject_field", "must differ from message_field")
    return spec


def _read_alerts(section: _Section) -> AlertsSpec:
    # YAML 1.1 (PyYAML) reads a bare ``on`` key as the boolean true: take it as ``on``.
    data = {("on" if key is True else key): value for key, value in section.data.items()}
    section = _Section(section.file, section.where, data)
    section.reject_unknown(["on", "notifier"], "alerts")
    section.require("notifier")
    values: dict[str, Any] = section.collect({"on": _outcomes})
    return AlertsSpec(notifier=_read_notifier(_section(section, "notifier")), **values)


def _source_path(section: _Section, key: str, value: Any) -> str:
    text: str = _string()(section, key, value)
    if "://" in text or text.startswith("//"):
        raise section.error(
            key, f"{text!r} names a host: give the path only; scheme, host and port come from the Connection"
        )
    if not text.startswith("/"):
        raise section.error(key, f"{text!r} must start with '/'")
    if "?" in text or "#" in text:
        raise section.error(key, f"{text!r} has a query or fragment: put query parameters in params")
    if any(char.isspace() or char == "\\" or ord(char) < 32 for char in text):
        raise section.error(key, f"{text!r} contains spaces, backslashes or control characters")
    return text


def _header_value(section: _Section, key: str, value: Any) -> str:
    if key.lower() in CREDENTIAL_HEADERS:
        raise section.error(key, "credentials belong in the Connection, not in the source file (see auth)")
    text = _query_value(section, key, value)
    if "\r" in text or "\n" in text:
        raise section.error(key, "must be a single line")
    return text


_SOURCE_FIELDS: dict[str, Converter] = {
    "name": _string(NAME_PATTERN, "a safe name: a lowercase letter, then lowercase letters, digits, _"),
    "description": _string(),
    "connection_id": _string(CONNECTION_ID_PATTERN, "an Airflow connection id"),
    "path": _source_path,
    "params": _mapping_of(_param_name, _query_value),
    "headers": _mapping_of(_header_name, _header_value),
    "records": _records_path,
    "primary_key": _optional(_string()),
    "max_pages": _integer(1, MAX_MAX_PAGES),
    "concurrency": _optional(_integer(1, MAX_CONCURRENCY)),
    "requests_per_second": _optional(_positive_number(MAX_REQUESTS_PER_SECOND)),
    "schedule": _optional(_string()),
    "overridable_params": _list_of(_param_name),
}
_SECTIONS = ("paginator", "auth", "incremental", "output", "alerts")
_REQUIRED = ("name", "connection_id", "path", "records", "paginator")


def _paginator_params(paginator: PaginatorSpec) -> dict[str, str]:
    """Query parameters the paginator sets on its own: field that names it -> parameter."""
    names: dict[str, str | None] = {}
    if isinstance(paginator, OffsetPaginatorSpec):
        names = {"offset_param": paginator.offset_param, "limit_param": paginator.limit_param}
    elif isinstance(paginator, PageNumberPaginatorSpec):
        names = {"page_param": paginator.page_param, "size_param": paginator.size_param}
    elif isinstance(paginator, CursorPaginatorSpec):
        names = {"cursor_param": paginator.cursor_param}
        if paginator.page_size is not None:
            names["limit_param"] = paginator.limit_param
    elif paginator.page_size is not None:
        names = {"limit_param": paginator.limit_param}
    return {f"paginator.{field_name}": param for field_name, param in names.items() if param}


def _check_reserved_params(source: SourceSpec, file: str) -> None:
    """Parameters the paginator, the auth or the incremental sync set may not also be fixed or
    overridden: one of the two values would silently lose."""
    reserved = _paginator_params(source.paginator)
    if source.auth.type == "api_key_query":
        reserved["auth.param"] = source.auth.param
    if source.incremental is not None:
        reserved["incremental.param"] = source.incremental.param
    owners: dict[str, str] = {}
    for owner, param in reserved.items():
        if param in owners:
            raise SourceError(file, owner, f"parameter {param!r} is also set by {owners[param]}")
        owners[param] = owner
    for param in source.params:
        if param in owners:
            raise SourceError(file, f"params.{param}", f"is set by {owners[param]}; remove it from params")
    for index, param in enumerate(source.overridable_params):
        if param in owners:
            message = f"{param!r} is set by {owners[param]}; it cannot be overridden"
            raise SourceError(file, f"overridable_params[{index}]", message)
    if source.auth.type == "api_key_header" and source.auth.header.lower() in {
        name.lower() for name in source.headers
    }:
        raise SourceError(file, f"headers.{source.auth.header}", "is the header auth.header sends the key in")


def parse_source(document: Any, file: str) -> SourceSpec:
    """A SourceSpec from a parsed YAML document; SourceError naming ``file`` and the field."""
    if not isinstance(document, Mapping):
        found = "empty" if document is None else f"a {type(document).__name__}"
        raise SourceError(file, "", f"must be a mapping of fields (name, path, ...), but it is {found}")
    top = _Section(file, "", document)
    top.reject_unknown([*_SOURCE_FIELDS, *_SECTIONS], "a source")
    top.require(*_REQUIRED)
    values = top.collect(_SOURCE_FIELDS)
    values["paginator"] = _read_paginator(_section(top, "paginator"))
    if document.get("auth") is not None:
        values["auth"] = _read_auth(_section(top, "auth"))
    if document.get("incremental") is not None:
        values["incremental"] = _read_incremental(_section(top, "incremental"))
    if document.get("output") is not None:
        values["output"] = _read_output(_section(top, "output"))
    if document.get("alerts") is not None:
        values["alerts"] = _read_alerts(_section(top, "alerts"))
    source = SourceSpec(file=file, **values)
    _check_reserved_params(source, file)
    return source


def load_source(path: str | Path) -> SourceSpec:
    """Read and validate one source file."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SourceError(file, "", f"cannot be read: {error}") from None
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise SourceError(file, "", f"is not valid YAML{where}: {problem}") from None
    return parse_source(document, file)


def source_files(folder: str | Path) -> list[Path]:
    """The source files of a folder (not its subfolders), hidden files left out, sorted."""
    directory = Path(folder)
    if not directory.is_dir():
        return []
    return sorted(
        path
        for path in directory.iterdir()
        if path.suffix in SOURCE_SUFFIXES and not path.name.startswith(".") and path.is_file()
    )


def load_sources(folder: str | Path) -> tuple[dict[str, SourceSpec], dict[str, SourceError]]:
    """Every source of a folder by name, and every broken file's error by path.

    A missing folder has no sources. Two files declaring the same name are both refused (neither
    can be trusted to be the one meant), each error naming the other file.
    """
    loaded: dict[str, list[SourceSpec]] = {}
    errors: dict[str, SourceError] = {}
    for path in source_files(folder):
        try:
            source = load_source(path)
        except SourceError as error:
            errors[str(path)] = error
            continue
        loaded.setdefault(source.name, []).append(source)
    sources: dict[str, SourceSpec] = {}
    for name, same_name in loaded.items():
        if len(same_name) == 1:
            sources[name] = same_name[0]
            continue
        for source in same_name:
            others = ", ".join(other.file for other in same_name if other is not source)
            errors[source.file] = SourceError(source.file, "name", f"{name!r} is also the name of {others}")
    return sources, errors
