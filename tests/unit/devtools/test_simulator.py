"""Tests of the partner-API simulator, against real servers (no mocks)."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import suppress
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from api_poller_dev.simulator import RunningSimulator, SimulatorConfig, parse_args, run_in_thread

DEVTOOLS_DIR = Path(__file__).resolve().parents[3] / "devtools"


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
    assert stats["faults_injected"] == {
        "drop": 0,
        "hang": 0,
        "rate_limit": 0,
        "server_error": 0,
        "truncate": 0,
    }


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


def test_parse_args_fault_flags() -> None:
    defaults = parse_args([])
    assert (defaults.status_5xx_codes, defaults.retry_after, defaults.hang_seconds) == ((500,), "1", 30)
    assert defaults.rate_limit_rate == defaults.hang_rate == defaults.drop_rate == 0
    assert defaults.truncate_rate == defaults.record_bytes == 0
    assert defaults.non_contiguous_ids is False
    config = parse_args(
        [
            "--status-5xx-codes=500,502,503,504",
            "--rate-limit-rate=0.2",
            "--retry-after=http-date",
            "--hang-rate=0.05",
            "--hang-seconds=12.5",
            "--drop-rate=0.01",
            "--truncate-rate=1",
            "--non-contiguous-ids",
            "--record-bytes=40000",
        ]
    )
    assert config.status_5xx_codes == (500, 502, 503, 504)
    assert (config.rate_limit_rate, config.retry_after) == (0.2, "http-date")
    assert (config.hang_rate, config.hang_seconds) == (0.05, 12.5)
    assert (config.drop_rate, config.truncate_rate) == (0.01, 1.0)
    assert config.non_contiguous_ids is True
    assert config.record_bytes == 40000
    assert parse_args(["--retry-after", "0"]).retry_after == "0"


@pytest.mark.parametrize(
    "argv",
    [
        ["--latency-ms", "50-5"],
        ["--latency-ms", "fast"],
        ["--error-rate", "1.5"],
        ["--poison-pages", "a"],
        ["--page-size", "0"],
        ["--rate-limit-rate", "-0.1"],
        ["--hang-rate", "2"],
        ["--drop-rate", "nan"],
        ["--truncate-rate", "x"],
        ["--hang-seconds", "-1"],
        ["--hang-seconds", "inf"],
        ["--record-bytes", "-1"],
        ["--record-bytes", "1.5"],
        ["--retry-after", "soon"],
        ["--retry-after", "-1"],
        ["--status-5xx-codes", "404"],
        ["--status-5xx-codes", "500,abc"],
        ["--status-5xx-codes", ""],
    ],
)
def test_parse_args_rejects_bad_flags(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        parse_args(argv)
    assert excinfo.value.code == 2


def test_cli_prints_url_serves_and_exits_on_sigterm() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(DEVTOOLS_DIR), os.environ.get("PYTHONPATH", "")]),
    }
    argv = [sys.executable, "-m", "api_poller_dev.simulator", "--total-records", "500"]
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


# --- fault modes ---------------------------------------------------------------------------------

FAULTS_OFF = {"drop": 0, "hang": 0, "rate_limit": 0, "server_error": 0, "truncate": 0}


async def raw_get(
    base_url: str, path: str, timeout: float | None = 10
) -> tuple[str, int, dict[str, str], bytes]:
    """One GET on its own connection, without any client-side retry.

    Returns ``(outcome, status, headers, body)``: outcome is ``"closed"`` (the
    server closed without answering), ``"timeout"`` or ``"answered"``.
    """
    url = urlsplit(base_url)
    assert url.hostname is not None and url.port is not None
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\nConnection: close\r\n\r\n".encode())
        try:
            data = await asyncio.wait_for(reader.read(), timeout)  # until EOF
        except TimeoutError:
            return "timeout", 0, {}, b""
        except ConnectionResetError:
            data = b""
    finally:
        writer.close()
        with suppress(ConnectionError):
            await writer.wait_closed()
    if not data:
        return "closed", 0, {}, b""
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return "answered", int(status_line.split()[1]), headers, body


def classify(outcome: str, status: int, headers: dict[str, str], body: bytes) -> str:
    """The fault kind a raw answer shows (``"ok"`` for a valid page)."""
    if outcome == "closed":
        return "drop"
    if outcome == "timeout":
        return "hang"
    if status == 429:
        return "rate_limit"
    if 500 <= status <= 599:
        return "server_error"
    assert status == 200
    assert int(headers["content-length"]) == len(body)
    try:
        json.loads(body)
    except json.JSONDecodeError:
        return "truncate"
    return "ok"


async def _raw_stats(base_url: str) -> dict[str, Any]:
    _, status, _, body = await raw_get(base_url, "/stats")
    assert status == 200
    return json.loads(body)


async def _fault_pattern(base_url: str, pages: int, repeats: int) -> list[list[tuple[str, int]]]:
    """``(kind, status)`` of each page fetched ``repeats`` times (pages in parallel).

    One round per attempt, so each request's k is known. Hangs are told apart
    without any timing: a round is over once every request has arrived and all
    but the server's count of hangs have been answered; the rest are hangs.
    """
    loop = asyncio.get_running_loop()
    pattern: list[list[tuple[str, int]]] = [[] for _ in range(pages)]
    hangs_before = 0
    for attempt in range(repeats):
        tasks = [
            asyncio.create_task(raw_get(base_url, f"/payload?startAt={page * 10}&count=10", timeout=None))
            for page in range(pages)
        ]
        deadline = loop.time() + 30
        while True:
            stats = await _raw_stats(base_url)
            hangs = stats["faults_injected"]["hang"] - hangs_before
            answered = sum(task.done() for task in tasks)
            if stats["requests"] == (attempt + 1) * pages and answered == pages - hangs:
                break
            assert loop.time() < deadline, "round not settled in 30 s"
            await asyncio.sleep(0.02)
        hangs_before += hangs
        for task in tasks:
            task.cancel()  # no-op for the answered ones; hangs up the others
        await asyncio.gather(*tasks, return_exceptions=True)
        for page, task in enumerate(tasks):
            if task.cancelled():
                pattern[page].append(("hang", 0))
            else:
                outcome, status, headers, body = task.result()
                pattern[page].append((classify(outcome, status, headers, body), status))
    return pattern


def wait_for_stats(base_url: str, predicate: Any, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        _, stats = get(f"{base_url}/stats")
        if predicate(stats) or time.monotonic() > deadline:
            return stats
        time.sleep(0.02)


def _run_faults(config: SimulatorConfig) -> tuple[list[list[tuple[str, int]]], dict[str, Any]]:
    with run_in_thread(config) as base_url:
        pattern = asyncio.run(_fault_pattern(base_url, pages=200, repeats=2))
        # The hangs' handlers are cancelled once their clients have hung up.
        stats = wait_for_stats(base_url, lambda stats: stats["in_flight"] == 0)
    return pattern, stats


MIXED_FAULTS = SimulatorConfig(
    total_records=2000,
    latency_ms=0,
    seed=11,
    error_rate=0.1,
    status_5xx_codes=(500, 502, 503, 504),
    rate_limit_rate=0.1,
    hang_rate=0.1,
    drop_rate=0.1,
    truncate_rate=0.1,
)


def test_every_fault_kind_at_its_rate_independently_reproducibly_and_counted() -> None:
    pattern, stats = _run_faults(MIXED_FAULTS)
    kinds = Counter(kind for page in pattern for kind, _ in page)
    n = 400
    # Each fault draws independently at 0.1; a lower-precedence one fires when no higher one did.
    for position, kind in enumerate(["drop", "hang", "rate_limit", "server_error", "truncate", "ok"]):
        p = 0.9**position * (0.1 if kind != "ok" else 1)
        expected, sigma = n * p, math.sqrt(n * p * (1 - p))
        assert abs(kinds[kind] - expected) <= 4 * sigma, (kind, kinds)
    assert {status for page in pattern for kind, status in page if kind == "server_error"} == {
        500,
        502,
        503,
        504,
    }

    assert stats["requests"] == n
    assert stats["in_flight"] == 0
    assert stats["faults_injected"] == {kind: kinds[kind] for kind in FAULTS_OFF}
    assert stats["errors_injected"] == kinds["server_error"]
    # Drops and cut-off hangs never answered; truncated bodies are 200s.
    answered = Counter(str(status) for page in pattern for kind, status in page if status)
    assert stats["by_status"] == dict(sorted(answered.items()))
    assert stats["by_status"]["200"] == kinds["ok"] + kinds["truncate"]

    again, _ = _run_faults(MIXED_FAULTS)
    assert again == pattern

    # Each fault draws independently: enabling the others never moves a 5xx, only pre-empts some.
    errors_only = SimulatorConfig(
        total_records=2000, latency_ms=0, seed=11, error_rate=0.1, status_5xx_codes=(500, 502, 503, 504)
    )
    alone, _ = _run_faults(errors_only)
    for mixed_page, alone_page in zip(pattern, alone, strict=True):
        for (kind, status), (alone_kind, alone_status) in zip(mixed_page, alone_page, strict=True):
            if kind == "server_error":
                assert (alone_kind, alone_status) == (kind, status)
            elif alone_kind == "server_error":
                assert kind in {"drop", "hang", "rate_limit"}


@pytest.mark.parametrize("retry_after", ["1", "http-date"])
def test_rate_limit_answers_429_with_retry_after(retry_after: str) -> None:
    config = SimulatorConfig(latency_ms=0, error_rate=0, rate_limit_rate=1.0, retry_after=retry_after)
    with run_in_thread(config) as base_url:
        before = time.time()
        with pytest.raises(urllib.error.HTTPError) as excinfo:
            urllib.request.urlopen(f"{base_url}/payload?startAt=0&count=10", timeout=10)
        after = time.time()
        _, stats = get(f"{base_url}/stats")
    error = excinfo.value
    assert error.code == 429
    assert json.loads(error.read()) == {"error": "rate limited"}
    header = error.headers["Retry-After"]
    if retry_after == "1":
        assert header == "1"
    else:
        day = r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
        month = r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
        assert re.fullmatch(rf"{day}, \d\d {month} \d{{4}} \d\d:\d\d:\d\d GMT", header), header
        when = parsedate_to_datetime(header).timestamp()
        assert before + 1 <= when <= after + 2
    assert stats["by_status"] == {"429": 1}
    assert stats["faults_injected"] == {**FAULTS_OFF, "rate_limit": 1}


def test_5xx_codes_are_drawn_from_the_list() -> None:
    config = SimulatorConfig(latency_ms=0, error_rate=1.0, status_5xx_codes=(500, 502, 503, 504))
    with run_in_thread(config) as base_url:
        statuses = [get(f"{base_url}/payload?startAt=0&count=1")[0] for _ in range(40)]
        _, stats = get(f"{base_url}/stats")
    assert set(statuses) == {500, 502, 503, 504}
    assert stats["errors_injected"] == 40
    assert stats["faults_injected"] == {**FAULTS_OFF, "server_error": 40}


async def _fetch_with_timeout(base_url: str, path: str, timeout: float) -> tuple[str, float]:
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        try:
            async with session.get(f"{base_url}{path}") as response:
                await response.read()
                result = str(response.status)
        except TimeoutError:
            result = "timeout"
    return result, time.monotonic() - started


def test_hang_is_cut_by_the_client_timeout_and_the_server_keeps_serving() -> None:
    # Seed 7: the first attempt at the page hangs, the second does not.
    config = SimulatorConfig(latency_ms=0, error_rate=0, hang_rate=0.5, hang_seconds=30, seed=7)
    with run_in_thread(config) as base_url:
        hung, elapsed = asyncio.run(_fetch_with_timeout(base_url, "/payload?startAt=0&count=10", 0.5))
        assert (hung, elapsed < 2) == ("timeout", True)
        # The next attempt at the same page is served (generous timeout: the machine may be busy).
        assert asyncio.run(_fetch_with_timeout(base_url, "/payload?startAt=0&count=10", 10))[0] == "200"
        assert get(f"{base_url}/health") == (200, {"status": "ok"})
        # The hung handler was cancelled when its client hung up.
        stats = wait_for_stats(base_url, lambda stats: stats["in_flight"] == 0)
    assert stats["in_flight"] == 0
    assert stats["faults_injected"] == {**FAULTS_OFF, "hang": 1}
    assert stats["by_status"] == {"200": 1}


async def _aiohttp_get(base_url: str, path: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.get(f"{base_url}{path}") as response:
        return response.status, await response.read()


def test_drop_closes_the_connection_without_an_answer() -> None:
    config = SimulatorConfig(latency_ms=0, error_rate=0, drop_rate=1.0)
    with run_in_thread(config) as base_url:
        assert asyncio.run(raw_get(base_url, "/payload?startAt=0&count=10"))[0] == "closed"
        # aiohttp retries an idempotent request once on a disconnection, then raises.
        with pytest.raises(aiohttp.ServerDisconnectedError):
            asyncio.run(_aiohttp_get(base_url, "/payload?startAt=0&count=10"))
        _, stats = get(f"{base_url}/stats")
    assert stats["by_status"] == {}
    assert stats["faults_injected"] == {**FAULTS_OFF, "drop": stats["requests"]}
    assert stats["requests"] >= 2


def test_truncated_body_is_complete_but_invalid_json() -> None:
    common: dict[str, Any] = {"total_records": 250, "latency_ms": 0, "error_rate": 0, "seed": 5}
    with run_in_thread(SimulatorConfig(**common)) as base_url:
        full = get_raw(f"{base_url}/payload?startAt=100&count=100")
    with run_in_thread(SimulatorConfig(**common, truncate_rate=1.0)) as base_url:
        outcome, status, headers, body = asyncio.run(raw_get(base_url, "/payload?startAt=100&count=100"))
        # aiohttp reads it without a payload error: Content-Length matches.
        status_via_aiohttp, body_via_aiohttp = asyncio.run(
            _aiohttp_get(base_url, "/payload?startAt=100&count=100")
        )
        _, stats = get(f"{base_url}/stats")
    assert (outcome, status) == ("answered", 200)
    assert headers["content-type"].startswith("application/json")
    assert int(headers["content-length"]) == len(body)
    assert full.startswith(body) and len(full) // 4 <= len(body) < len(full) * 3 // 4 + 1
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)
    assert status_via_aiohttp == 200 and full.startswith(body_via_aiohttp)
    with pytest.raises(json.JSONDecodeError):
        json.loads(body_via_aiohttp)
    assert stats["by_status"] == {"200": 2}
    assert stats["faults_injected"] == {**FAULTS_OFF, "truncate": 2}


def test_faults_never_touch_health_stats_or_bad_parameters() -> None:
    config = SimulatorConfig(
        latency_ms=0, error_rate=1.0, rate_limit_rate=1.0, hang_rate=1.0, drop_rate=1.0, truncate_rate=1.0
    )
    with run_in_thread(config) as base_url:
        started = time.monotonic()
        assert get(f"{base_url}/health") == (200, {"status": "ok"})
        status, body = get(f"{base_url}/payload?startAt=x&count=1")
        assert (status, "startAt" in body["error"]) == (400, True)
        status, stats = get(f"{base_url}/stats")
        assert time.monotonic() - started < 2.5
    assert status == 200
    assert stats["by_status"] == {"400": 1}
    assert stats["faults_injected"] == FAULTS_OFF


@pytest.mark.parametrize("non_contiguous", [False, True])
def test_pages_of_a_total_not_multiple_of_page_size(non_contiguous: bool) -> None:
    config = SimulatorConfig(
        total_records=1050, page_size=100, latency_ms=0, error_rate=0, non_contiguous_ids=non_contiguous
    )
    with run_in_thread(config) as base_url:
        pages = [get(f"{base_url}/payload?startAt={start}&count=100")[1] for start in range(0, 1100, 100)]
        _, shifted = get(f"{base_url}/payload?startAt=105&count=5")
        _, past = get(f"{base_url}/payload?startAt=1050&count=100")
    assert [len(page["payload"]) for page in pages] == [100] * 10 + [50]
    assert all(page["totalRecords"] == 1050 for page in pages)
    assert past["payload"] == []
    assert shifted["payload"] == pages[1]["payload"][5:10]  # startAt is still an offset
    ids = [record["id"] for page in pages for record in page["payload"]]
    assert len(set(ids)) == len(ids) == 1050
    assert all(a < b for a, b in itertools.pairwise(ids))
    if non_contiguous:
        assert all(record_id != offset for offset, record_id in enumerate(ids))
        gaps = {b - a for a, b in itertools.pairwise(ids)}
        assert len(gaps) > 1 and min(gaps) > 1  # irregular gaps: no formula from one page
    else:
        assert ids == list(range(1050))


@pytest.mark.parametrize(("size", "count"), [(1001, 3), (30_000, 100)])
def test_record_bytes_sets_the_payload_length(size: int, count: int) -> None:
    config = SimulatorConfig(total_records=200, latency_ms=0, error_rate=0, record_bytes=size)
    with run_in_thread(config) as base_url:
        url = f"{base_url}/payload?startAt=100&count={count}"
        first = get_raw(url)
        assert get_raw(url) == first  # deterministic
    texts = [record["payload"] for record in json.loads(first)["payload"]]
    assert len(texts) == count
    assert all(isinstance(text, str) and len(text) == size for text in texts)
    assert len(set(texts)) == count


def test_shutdown_with_pending_hangs_is_fast() -> None:
    simulator = RunningSimulator(SimulatorConfig(latency_ms=0, error_rate=0, hang_rate=1.0, hang_seconds=60))
    base_url = simulator.start()
    url = urlsplit(base_url)
    assert url.hostname is not None and url.port is not None
    clients = []
    try:
        for start in range(20):
            client = socket.create_connection((url.hostname, url.port), timeout=5)
            clients.append(client)
            client.sendall(f"GET /payload?startAt={start}&count=1 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        stats = wait_for_stats(base_url, lambda stats: stats["in_flight"] == 20)
        assert stats["in_flight"] == 20
        started = time.monotonic()
        simulator.stop()
        assert time.monotonic() - started < 3
        for client in clients:  # closed without an answer
            with suppress(ConnectionResetError):
                assert client.recv(100) == b""
    finally:
        simulator.stop()
        for client in clients:
            client.close()
