"""The baseline: a plain asyncio script copying every page of the partner API to S3.

aiohttp for the requests, boto3 ``put_object`` in asyncio's default thread pool, at most
``--concurrency`` pages in flight (fetch + put). Retry rule as the product's: 5xx, 429, timeouts,
dropped connections and malformed/short 200s are retried up to 6 attempts, backoff 1 s x 2^n
(capped at 60 s), half fixed and half random. Prints one JSON line with the result.

Independent of the ``api_poller`` package on purpose: this is what a person would write by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import time

import aiohttp
import boto3


class Retriable(Exception):
    pass


def backoff(retry_number: int, initial: float = 1.0, rate: float = 2.0, cap: float = 60.0) -> float:
    base = min(cap, initial * rate ** (retry_number - 1))
    return base / 2 + random.uniform(0, base / 2)


async def get_json(session: aiohttp.ClientSession, url: str, params: dict) -> tuple[bytes, object]:
    """The body and its JSON document; Retriable for 5xx/429, transport errors and bad JSON."""
    try:
        async with session.get(url, params=params) as response:
            body = await response.read()
            if response.status >= 500 or response.status == 429:
                raise Retriable(f"HTTP {response.status}")
            response.raise_for_status()
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
        raise Retriable(repr(exc)) from exc
    try:
        return body, json.loads(body)
    except ValueError as exc:
        raise Retriable("not JSON") from exc


async def get_metadata(session: aiohttp.ClientSession, url: str) -> tuple[int, int]:
    _, document = await get_json(session, url, {"startAt": 0, "count": 1})
    try:
        return int(document["totalRecords"]), int(document["maxRecordsPerPage"])
    except (KeyError, TypeError, ValueError) as exc:
        raise Retriable("malformed metadata") from exc


async def get_page(session: aiohttp.ClientSession, url: str, start_at: int, count: int) -> bytes:
    """One page's body, checked to hold the records asked for."""
    body, document = await get_json(session, url, {"startAt": start_at, "count": count})
    try:
        served = len(document["payload"])
    except (KeyError, TypeError) as exc:
        raise Retriable("malformed page") from exc
    if served != count:
        raise Retriable(f"{served} records, expected {count}")
    return body


async def with_retries(call, attempts: int):
    """``call()``'s result, retrying Retriable errors; (None, error) after the last attempt."""
    for attempt in range(1, attempts + 1):
        try:
            return await call(), None
        except Retriable as exc:
            if attempt == attempts:
                return None, str(exc)
            await asyncio.sleep(backoff(attempt))
    raise AssertionError("unreachable")


async def copy_all(args: argparse.Namespace) -> dict:
    s3 = boto3.client(
        "s3",
        endpoint_url=args.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket=args.bucket)
    in_flight = asyncio.Semaphore(args.concurrency)
    saved, failed = 0, {}

    async def one(session: aiohttp.ClientSession, index: int, start: int, count: int) -> None:
        nonlocal saved
        async with in_flight:
            body, error = await with_retries(lambda: get_page(session, args.url, start, count), args.attempts)
            if error is not None:
                failed[index] = error
                return
            key = f"jobs/{args.job}/raw/page-{index:06d}.json"
            await asyncio.to_thread(
                s3.put_object, Bucket=args.bucket, Key=key, Body=body, ContentType="application/json"
            )
            saved += 1

    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # Like the product's plan step: one record first, for totalRecords and the page size.
        first, error = await with_retries(lambda: get_metadata(session, args.url), args.attempts)
        if error is not None:
            raise SystemExit(f"cannot read the metadata: {error}")
        total, page_size = first
        pages = [
            (index, start, min(page_size, total - start))
            for index, start in enumerate(range(0, total, page_size))
        ]
        await asyncio.gather(*(one(session, *page) for page in pages))
    wall = time.monotonic() - started
    return {
        "pages": len(pages),
        "saved": saved,
        "failed": len(failed),
        "wall_s": round(wall, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="the paged endpoint, e.g. http://127.0.0.1:PORT/payload")
    parser.add_argument("--concurrency", type=int, default=25)
    parser.add_argument("--attempts", type=int, default=6)
    parser.add_argument("--endpoint", required=True, help="S3 endpoint (moto)")
    parser.add_argument("--bucket", default="bench-baseline-raw")
    parser.add_argument("--job", default="baseline")
    args = parser.parse_args(argv)
    result = asyncio.run(copy_all(args))
    print(json.dumps(result), flush=True)
    return 0 if result["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
