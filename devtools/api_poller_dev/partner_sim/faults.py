"""Latency and injected faults of data requests, reproducible per seed.

Every random decision is derived from ``(seed, request key, k)`` -- the key names the exact
page asked for, ``k`` is how many times that key was requested before -- so a run is
reproducible however concurrent requests interleave. At most one fault per request, in this
precedence: ``drop`` (the connection is closed without an answer) > ``hang`` (the answer comes
after ``hang_seconds``) > ``rate_limit`` (429 with ``Retry-After``) > ``server_error`` (a 5xx) >
``truncate`` (a 200 whose JSON body is cut off; ``Content-Length`` matches the cut body). Each
fault has its own draw from the request's RNG, so enabling one never changes where another one
would fire.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from dataclasses import dataclass
from email.utils import formatdate

from .config import RETRY_AFTER_HTTP_DATE, SimulatorConfig
from .dataset import derived_int

RequestKey = tuple[object, ...]


@dataclass(frozen=True)
class FaultPlan:
    """What to do with one data request."""

    fault: str | None
    delay_s: float
    status_5xx: int
    cut_fraction: float  # where a truncated body is cut, in [0.25, 0.75)


class Attempts:
    """How many times each request key was asked for: the ``k`` of its RNG."""

    def __init__(self) -> None:
        self._counts: Counter[RequestKey] = Counter()

    def claim(self, key: RequestKey) -> int:
        attempt = self._counts[key]
        self._counts[key] += 1
        return attempt


def plan_request(config: SimulatorConfig, key: RequestKey, attempt: int) -> FaultPlan:
    rng = random.Random(derived_int("request", config.seed, *key, attempt))
    # The first two draws predate the other faults: keeping their order keeps
    # every seed's pattern of 500s and latencies unchanged.
    error_u = rng.random()
    delay_s = rng.uniform(*config.latency_ms) / 1000
    # Always drawn, whatever the rates, so each fault's decision is independent.
    drop_u, hang_u, limit_u, truncate_u, code_u = (rng.random() for _ in range(5))
    cut_fraction = rng.uniform(0.25, 0.75)

    fault: str | None = None
    if drop_u < config.drop_rate:
        fault = "drop"
    elif hang_u < config.hang_rate:
        fault = "hang"
        delay_s = config.hang_seconds
    elif limit_u < config.rate_limit_rate:
        fault = "rate_limit"
    elif error_u < config.error_rate:
        fault = "server_error"
    elif truncate_u < config.truncate_rate:
        fault = "truncate"
    codes = config.status_5xx_codes
    status_5xx = codes[min(int(code_u * len(codes)), len(codes) - 1)]
    return FaultPlan(fault, delay_s, status_5xx, cut_fraction)


def retry_after_header(config: SimulatorConfig) -> str:
    if config.retry_after != RETRY_AFTER_HTTP_DATE:
        return config.retry_after
    # HTTP-dates have whole seconds: round up so the date is >= now + 1 s.
    return formatdate(math.ceil(time.time()) + 1, usegmt=True)
