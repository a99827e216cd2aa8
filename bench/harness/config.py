"""Where the benchmark's files are, what it measures, and how long a run may take."""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
MAIN_PYTHON = ROOT / ".venv" / "bin" / "python"

WORKLOAD_PAGES = {"seed": 100, "1000": 1000, "10000": 10000, "100000": 100000}
# The comparison (bench/run's default, the README's table); 100000 is the scale run (issue 14), Airflow
# only, best with a fast simulator (--latency-ms 0-20 --error-rate 0): see bench/README.md.
DEFAULT_WORKLOADS = ("seed", "1000", "10000")
PAGE_SIZE = 100
ALL_SYSTEMS = ("asyncio", "airflow", "dlt")
DLT_WORKLOADS = ("seed",)  # dlt reads one page at a time: the seed workload is enough to compare
TUNED_SYSTEM = "airflow-tuned"


def run_timeout(pages: int, factor: float = 1.0) -> float:
    """Per-run limit: 600 s up to 4,000 pages, then 0.15 s a page (1500 s at 10,000 pages), x factor."""
    return factor * max(600.0, 0.15 * pages)


def simulator_args(pages: int, args: argparse.Namespace) -> list[str]:
    """The partner-API simulator's options for a workload: same seed, latencies and errors for all."""
    return [
        f"--total-records={pages * PAGE_SIZE}",
        f"--page-size={PAGE_SIZE}",
        f"--latency-ms={args.latency_ms}",
        f"--error-rate={args.error_rate}",
        f"--seed={args.seed}",
        f"--record-bytes={args.record_bytes}",
    ]
