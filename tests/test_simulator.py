"""Tests of the partner-API simulator, against real servers (no mocks)."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from api_poller.simulator import SimulatorConfig, parse_args, run_in_thread

INCLUDE_DIR = Path(__file__).resolve().parents[1] / "include"


def get(url: str) -> tuple[int, Any]:
    """(status, decoded JSON body) of a GET, whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def get_raw(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


@pytest.fixture(scope="module")
def quiet_api() -> Iterator[str]:
    """No latency, no errors, 250 records in pages of 100, page 1 poisoned."""
    config = SimulatorConfig(total_records=250, page_size=100, latency_ms=0, error_rate=0, poison_pages={1})
    with run_in_thread(config) as base_url:
        yield base_url


def test_first_page_contents_and_shape(quiet_api: str) -> None:
    status, body = get(f"{quiet_api}/payload?startAt=0&count=100")
    assert status == 200
    assert body["maxRecordsPerPage"] == 100
    assert body["totalRecords"] == 250
    assert [record["id"] for record in body["payload"]] == list(range(100))
    texts = [record["payload"] for record in body["payload"]]
    assert all(isinstance(text, str) and len(text) == 32 for text in texts)
    assert len(set(texts)) == 100  # looks random: no repeats


def test_same_page_is_byte_identical(quiet_api: str) -> None:
    url = f"{quiet_api}/payload?startAt=200&count=50"
    assert get_raw(url) == get_raw(url)


def test_offset_is_record_based(quiet_api: str) -> None:
    _, page = get(f"{quiet_api}/payload?startAt=0&count=10")
    _, shifted = get(f"{quiet_api}/payload?startAt=5&count=5")
    assert shifted["payload"] == page["payload"][5:]


def test_last_page_is_short_and_past_end_is_empty(quiet_api: str) -> None:
    _, last = get(f"{quiet_api}/payload?startAt=200&count=100")
    assert [record["id"] for record in last["payload"]] == list(range(200, 250))
    _, past = get(f"{quiet_api}/payload?startAt=250&count=100")
    assert past["payload"] == []
    assert past["totalRecords"] == 250


def test_count_is_capped_at_page_size(quiet_api: str) -> None:
    _, body = get(f"{quiet_api}/payload?startAt=0&count=1000")
    assert len(body["payload"]) == 100


def test_count_zero_and_one_give_metadata(quiet_api: str) -> None:
    _, empty = get(f"{quiet_api}/payload?startAt=0&count=0")
    assert empty == {"maxRecordsPerPage": 100, "totalRecords": 250, "payload": []}
    _, one = get(f"{quiet_api}/payload?startAt=0&count=1")
    assert one["totalRecords"] == 250
    assert len(one["payload"]) == 1


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("count=10", "startAt"),
        ("startAt=0", "count"),
        ("startAt=abc&count=10", "startAt"),
        ("startAt=-1&count=10", "startAt"),
        ("startAt=0&count=-5", "count"),
        ("startAt=0&count=1.5", "count"),
        ("startAt=&count=1", "startAt"),
    ],
)
def test_bad_params_are_400_naming_the_param(quiet_api: str, query: str, param: str) -> None:
    status, body = get(f"{quiet_api}/payload?{query}")
    assert status == 400
    assert param in body["error"]


def test_poison_page_records_lack_ids(quiet_api: str) -> None:
    status, body = get(f"{quiet_api}/payload?startAt=100&count=100")
    assert status == 200
    assert body["totalRecords"] == 250  # the envelope is still valid
    assert len(body["payload"]) == 100
    assert all("id" not in record for record in body["payload"])
    assert all("payload" in record for record in body["payload"])
    _, healthy = get(f"{quiet_api}/payload?startAt=200&count=100")
    assert all("id" in record for record in healthy["payload"])


def test_health(quiet_api: str) -> None:
    assert get(f"{quiet_api}/health") == (200, {"status": "ok"})


def test_stats_count_statuses() -> None:
    config = SimulatorConfig(total_records=10, latency_ms=0, error_rate=0)
    with run_in_thread(config) as base_url:
        get(f"{base_url}/payload?startAt=0&count=5")
        get(f"{base_url}/payload?startAt=0&count=5")
        get(f"{base_url}/payload?startAt=x&count=5")
        get(f"{base_url}/health")  # not counted
        _, stats = get(f"{base_url}/stats")
    assert stats["requests"] == 3
    assert stats["errors_injected"] == 0
    assert stats["by_status"] == {"200": 2, "400": 1}
    assert stats["in_flight"] == 0


async def _error_pattern(base_url: str, pages: int, repeats: int) -> list[list[int]]:
    """Statuses of each page fetched ``repeats`` times in a row (pages in parallel).

    Sequential per page so each attempt number k maps to a known request.
    """

    async def one_page(session: aiohttp.ClientSession, page: int) -> list[int]:
        statuses = []
        for _ in range(repeats):
            url = f"{base_url}/payload?startAt={page * 10}&count=10"
            async with session.get(url) as response:
                await response.read()
                statuses.append(response.status)
        return statuses

    async with aiohttp.ClientSession() as session:
        return list(await asyncio.gather(*(one_page(session, page) for page in range(pages))))


def _run_error_pattern(seed: int) -> tuple[list[list[int]], dict[str, Any]]:
    config = SimulatorConfig(total_records=1000, latency_ms=0, error_rate=0.1, seed=seed)
    with run_in_thread(config) as base_url:
        pattern = asyncio.run(_error_pattern(base_url, pages=100, repeats=4))
        _, stats = get(f"{base_url}/stats")
    return pattern, stats


def test_error_rate_is_honoured_and_reproducible() -> None:
    pattern, stats = _run_error_pattern(seed=7)
    statuses = [status for page in pattern for status in page]
    assert set(statuses) <= {200, 500}
    errors = statuses.count(500)
    assert 0.05 * 400 <= errors <= 0.17 * 400
    assert stats["errors_injected"] == errors
    assert stats["by_status"] == {"200": 400 - errors, "500": errors}
    # Retrying a failed page is a new attempt that may succeed.
    assert any(500 in page and 200 in page for page in pattern)

    again, _ = _run_error_pattern(seed=7)
    assert again == pattern
    other_seed, _ = _run_error_pattern(seed=8)
    assert other_seed != pattern


def test_fixed_latency_applies_to_success_and_error() -> None:
    config = SimulatorConfig(total_records=10, latency_ms=200, error_rate=0)
    with run_in_thread(config) as base_url:
        started = time.monotonic()
        status, _ = get(f"{base_url}/payload?startAt=0&count=1")
        assert status == 200
        assert time.monotonic() - started >= 0.2

    failing = SimulatorConfig(total_records=10, latency_ms=150, error_rate=1.0)
    with run_in_thread(failing) as base_url:
        started = time.monotonic()
        status, body = get(f"{base_url}/payload?startAt=0&count=1")
        assert (status, body) == (500, {"error": "simulated failure"})
        assert time.monotonic() - started >= 0.15


def test_health_is_never_delayed_nor_failing() -> None:
    config = SimulatorConfig(latency_ms=5000, error_rate=1.0)
    with run_in_thread(config) as base_url:
        started = time.monotonic()
        assert get(f"{base_url}/health") == (200, {"status": "ok"})
        assert time.monotonic() - started < 2.5  # loose: far below the 5 s latency


async def _fetch_concurrently(base_url: str, n: int) -> list[int]:
    # limit=0: the client's default pool (100) would serialise the requests.
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> int:
            url = f"{base_url}/payload?startAt={i}&count=1"
            async with session.get(url) as response:
                body = await response.json()
                assert body["payload"][0]["id"] == i
                return response.status

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def test_hundreds_of_concurrent_requests() -> None:
    config = SimulatorConfig(total_records=1000, latency_ms=200, error_rate=0)
    with run_in_thread(config) as base_url:
        started = time.monotonic()
        statuses = asyncio.run(_fetch_concurrently(base_url, 300))
        elapsed = time.monotonic() - started
        _, stats = get(f"{base_url}/stats")
    assert statuses == [200] * 300
    assert elapsed < 10  # loose; sequential would take 300 * 0.2 s = 60 s
    assert stats["max_in_flight"] > 100


def test_parse_args() -> None:
    config = parse_args(["--total-records", "500", "--latency-ms", "200", "--poison-pages", "1, 3"])
    assert config.total_records == 500
    assert config.latency_ms == (200, 200)
    assert config.poison_pages == {1, 3}
    assert parse_args([]) == SimulatorConfig()
    assert parse_args(["--latency-ms", "5-50"]).latency_ms == (5, 50)


@pytest.mark.parametrize(
    "argv",
    [
        ["--latency-ms", "50-5"],
        ["--latency-ms", "fast"],
        ["--error-rate", "1.5"],
        ["--poison-pages", "a"],
        ["--page-size", "0"],
    ],
)
def test_parse_args_rejects_bad_flags(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        parse_args(argv)
    assert excinfo.value.code == 2


def test_cli_prints_url_serves_and_exits_on_sigterm() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(INCLUDE_DIR), os.environ.get("PYTHONPATH", "")]),
    }
    argv = [sys.executable, "-m", "api_poller.simulator", "--total-records", "500"]
    with subprocess.Popen(
        [*argv, "--latency-ms", "0", "--error-rate", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as process:
        try:
            assert process.stdout is not None
            ready, _, _ = select.select([process.stdout], [], [], 10)
            assert ready, "no listening line within 10 s"
            line = process.stdout.readline().strip()
            prefix = "partner-api simulator listening on "
            assert line.startswith(prefix)
            base_url = line.removeprefix(prefix)
            assert base_url.startswith("http://127.0.0.1:")
            assert get(f"{base_url}/health") == (200, {"status": "ok"})
            _, body = get(f"{base_url}/payload?startAt=0&count=1")
            assert body["totalRecords"] == 500
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
