"""The process step's S3 client keeps the AWS connection's own botocore settings (its extra's
``config_kwargs``) and adds a pooled connection per worker thread: a hook given a config of its
own would otherwise drop the connection's (proxies, retries, timeouts)."""

from __future__ import annotations

import json

import pytest

from api_poller.adapters.sensor import pooled_config


def test_the_connection_config_is_kept_and_the_pool_fits_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = {
        "region_name": "us-east-1",
        "config_kwargs": {"connect_timeout": 7, "retries": {"max_attempts": 9}},
    }
    monkeypatch.setenv("AIRFLOW_CONN_POOLED_TEST", json.dumps({"conn_type": "aws", "extra": extra}))
    config = pooled_config("pooled_test", workers=16)
    assert config.connect_timeout == 7 and config.retries == {"max_attempts": 9}
    assert config.max_pool_connections == 20


def test_a_larger_pool_asked_by_the_connection_is_kept_and_none_means_a_pool_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    extra = {"config_kwargs": {"max_pool_connections": 64}}
    monkeypatch.setenv("AIRFLOW_CONN_POOLED_TEST", json.dumps({"conn_type": "aws", "extra": extra}))
    assert pooled_config("pooled_test", workers=16).max_pool_connections == 64
    monkeypatch.setenv("AIRFLOW_CONN_PLAIN_TEST", json.dumps({"conn_type": "aws"}))
    plain = pooled_config("plain_test", workers=2)
    assert plain.max_pool_connections == 10 and plain.connect_timeout == 60  # botocore's defaults
