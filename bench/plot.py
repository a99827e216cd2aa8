"""Wall time vs pages for each system, from bench/results/results.json (runs in bench/.venv)."""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter, ScalarFormatter


def main(report_path: str, png_path: str) -> int:
    report = json.loads(Path(report_path).read_text())
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for run in report.get("table", report["runs"]):
        if run["wall_s"]:
            series[run["system"]].append((run["pages"], run["wall_s"]))
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for system, points in sorted(series.items()):
        points.sort()
        pages, walls = zip(*points, strict=True)
        ax.plot(pages, walls, marker="o", label=system)
        for x, y in points:
            ax.annotate(f"{y:.0f}s", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("pages (100 records each)")
    ax.set_ylabel("wall time, s")
    s = report["settings"]
    ax.set_title(
        f"api_poller benchmark: {s['latency_ms']} ms latency, {s['error_rate']:.0%} errors, "
        f"{s['concurrency']} in flight",
        fontsize=10,
    )
    ax.margins(x=0.12, y=0.12)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
