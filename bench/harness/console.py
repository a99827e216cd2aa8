"""The benchmark's log lines (stdout, flushed: a long run is followed as it goes)."""

from __future__ import annotations

import time


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)
