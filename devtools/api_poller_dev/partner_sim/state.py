"""Where a simulator app keeps its state (all of it lives in the aiohttp app itself)."""

from __future__ import annotations

from aiohttp import web

from .auth_tokens import TokenStore
from .config import SimulatorConfig
from .dataset import Dataset
from .faults import Attempts
from .stats import SimulatorStats

CONFIG_KEY = web.AppKey("config", SimulatorConfig)
STATS_KEY = web.AppKey("stats", SimulatorStats)
DATASET_KEY = web.AppKey("dataset", Dataset)
ATTEMPTS_KEY = web.AppKey("attempts", Attempts)
TOKENS_KEY = web.AppKey("tokens", TokenStore)
