"""Unit tests of api_poller.settings: defaults and API_POLLER_* overrides.

Every test passes its own environment mapping: conftest.py sets some API_POLLER_* variables in
os.environ for the DAG tests, so os.environ is only used where reading it is the behaviour tested.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from api_poller.settings import ENV_PREFIX, PollerSettings, load_settings


def test_empty_environment_gives_defaults() -> None:
    assert load_settings({}) == PollerSettings()


@pytest.mark.parametrize(
    ("field", "default"),
    [
        ("aws_conn_id", "aws_default"),
        ("raw_bucket", "api-poller-raw"),
        ("processed_bucket", "api-poller-processed"),
        ("queue_name", "api-poller-process-payload"),
        ("dead_letter_queue_name", "api-poller-process-payload-dlq"),
        ("max_receive_count", 3),
        ("create_resources", True),
        ("schedule", ""),
        ("default_url", ""),
        ("http_attempts", 6),
        ("retry_initial_seconds", 1.0),
        ("retry_backoff_rate", 2.0),
        ("retry_max_seconds", 60.0),
        ("on_incomplete", "fail"),
        ("process_yield_seconds", 0.0),
    ],
)
def test_default_value(field: str, default: Any) -> None:
    assert getattr(PollerSettings(), field) == default


def test_unrelated_variables_are_ignored() -> None:
    environ = {
        "RAW_BUCKET": "x",
        "API_POLLER": "y",
        "API_POLLER_NOT_A_FIELD": "z",
        "api_poller_raw_bucket": "w",
    }
    assert load_settings(environ) == PollerSettings()


@pytest.mark.parametrize(
    ("variable", "raw", "field", "expected"),
    [
        ("API_POLLER_RAW_BUCKET", "my-raw", "raw_bucket", "my-raw"),
        ("API_POLLER_SCHEDULE", "@daily", "schedule", "@daily"),
        (
            "API_POLLER_DEFAULT_URL",
            "https://partner.example/payload",
            "default_url",
            "https://partner.example/payload",
        ),
        ("API_POLLER_MAX_RECEIVE_COUNT", "5", "max_receive_count", 5),
        ("API_POLLER_DEFAULT_FETCH_TASKS", "16", "default_fetch_tasks", 16),
        ("API_POLLER_HTTP_ATTEMPTS", "1", "http_attempts", 1),
        ("API_POLLER_RETRY_INITIAL_SECONDS", "0.02", "retry_initial_seconds", 0.02),
        ("API_POLLER_HTTP_TIMEOUT_SECONDS", "10", "http_timeout_seconds", 10.0),
        ("API_POLLER_CREATE_RESOURCES", "false", "create_resources", False),
        ("API_POLLER_ON_INCOMPLETE", "warn", "on_incomplete", "warn"),
        ("API_POLLER_PROCESS_YIELD_SECONDS", "2", "process_yield_seconds", 2.0),
    ],
)
def test_env_overrides_field_with_its_type(variable: str, raw: str, field: str, expected: Any) -> None:
    value = getattr(load_settings({variable: raw}), field)
    assert value == expected
    assert type(value) is type(expected)


def test_override_leaves_other_fields_at_default() -> None:
    settings = load_settings({"API_POLLER_RAW_BUCKET": "elsewhere"})
    assert dataclasses.replace(settings, raw_bucket="api-poller-raw") == PollerSettings()


def test_every_field_can_be_set_from_its_variable() -> None:
    for field in dataclasses.fields(PollerSettings):
        variable = ENV_PREFIX + field.name.upper()
        special = {"on_incomplete": "warn", "create_resources": "0", "reconcile": "full"}
        raw = special.get(field.name, "7")
        assert getattr(load_settings({variable: raw}), field.name) != field.default, variable


def test_none_environment_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_POLLER_QUEUE_NAME", "from-os-environ")
    assert load_settings().queue_name == "from-os-environ"


@pytest.mark.parametrize(
    ("variable", "raw", "kind"),
    [
        ("API_POLLER_MAX_RECEIVE_COUNT", "three", "int"),
        ("API_POLLER_HTTP_ATTEMPTS", "2.5", "int"),
        ("API_POLLER_DEFAULT_CONCURRENCY", "", "int"),
        ("API_POLLER_RETRY_MAX_SECONDS", "a minute", "float"),
        ("API_POLLER_CREATE_RESOURCES", "maybe", "bool"),
        ("API_POLLER_CREATE_RESOURCES", "", "bool"),
    ],
)
def test_invalid_value_names_the_variable_and_type(variable: str, raw: str, kind: str) -> None:
    with pytest.raises(ValueError, match=f"{variable}=.* is not a valid {kind}"):
        load_settings({variable: raw})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("True", True),
        ("1", True),
        ("yes", True),
        ("on", True),
        (" true ", True),
        ("false", False),
        ("FALSE", False),
        ("0", False),
        ("no", False),
        ("off", False),
        (" 0\n", False),
    ],
)
def test_bool_parsing(raw: str, expected: bool) -> None:
    assert load_settings({"API_POLLER_CREATE_RESOURCES": raw}).create_resources is expected


@pytest.mark.parametrize("value", ["fail", "warn"])
def test_on_incomplete_accepts_fail_and_warn(value: str) -> None:
    assert load_settings({"API_POLLER_ON_INCOMPLETE": value}).on_incomplete == value


@pytest.mark.parametrize("value", ["ignore", "FAIL", "", " warn"])
def test_on_incomplete_rejects_other_values_naming_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match="API_POLLER_ON_INCOMPLETE must be 'fail' or 'warn'"):
        load_settings({"API_POLLER_ON_INCOMPLETE": value})


@pytest.mark.parametrize("attempts", ["0", "-1"])
def test_http_attempts_below_one_rejected(attempts: str) -> None:
    with pytest.raises(ValueError, match="API_POLLER_HTTP_ATTEMPTS must be >= 1"):
        load_settings({"API_POLLER_HTTP_ATTEMPTS": attempts})


def test_a_negative_process_yield_is_rejected() -> None:
    with pytest.raises(ValueError, match="API_POLLER_PROCESS_YIELD_SECONDS must be >= 0"):
        load_settings({"API_POLLER_PROCESS_YIELD_SECONDS": "-1"})


def test_settings_are_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        PollerSettings().raw_bucket = "x"  # type: ignore[misc]
