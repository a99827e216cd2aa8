"""The results: results.json (every run), results.md (the table and per-run notes), the plot, and
the table in bench/README.md after a full run."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
from pathlib import Path
from typing import Any

from .config import BENCH, PAGE_SIZE, TUNED_SYSTEM
from .console import log
from .sampling import AIRFLOW_TASKS, MEASURED_SCRIPTS
from .timeline import idle_seconds

# Settings that must match for runs to be compared in one report (``--add-to``).
COMPARABLE = (
    "concurrency", "fetch_tasks", "parallelism", "latency_ms", "error_rate", "seed", "record_bytes",
    "airflow_env",
)  # fmt: skip
# Comparable settings added after reports were written: the value those reports ran with.
LATER_DEFAULTS = {"record_bytes": 0}


def task_cpu_ms_per_page(run: dict[str, Any]) -> float | None:
    """The CPU the system's own work cost per page: Airflow's task processes (with their
    supervisors), or the measured script (asyncio, dlt); None if not sampled."""
    by_component = (run.get("cpu") or {}).get("by_component_s") or {}
    seconds = by_component.get(AIRFLOW_TASKS if run["system"].startswith("airflow") else MEASURED_SCRIPTS)
    if seconds is None or run["status"] != "success" or not run["pages"]:
        return None
    return round(1000 * seconds / run["pages"], 2)


def summarize_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per system and workload: the median wall time over its repeats, with ratios."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["system"], run["workload"]), []).append(run)
    rows = []
    for (system, workload), group in groups.items():
        walls = sorted(r["wall_s"] for r in group if r["status"] == "success")
        failed = [r["status"] for r in group if r["status"] != "success"]
        rsss = [r["peak_rss_mb"] for r in group if r.get("peak_rss_mb") is not None]
        cpus = [cpu for cpu in map(task_cpu_ms_per_page, group) if cpu is not None]
        rows.append(
            {
                "system": system,
                "workload": workload,
                "pages": group[0]["pages"],
                "wall_s": round(statistics.median(walls), 2) if walls else None,
                "wall_runs_s": [r["wall_s"] for r in group],
                "peak_rss_mb": max(rsss, default=None),
                "cpu_ms_per_page": round(statistics.median(cpus), 2) if cpus else None,
                "mapped_tis": group[0].get("mapped_tis"),
                "status": "success"
                if not failed
                else f"{len(failed)}/{len(group)} not successful: {failed[0]}",
            }
        )
    medians = {(r["system"], r["workload"]): r["wall_s"] for r in rows}
    for r in rows:
        base = medians.get(("asyncio", r["workload"]))
        dlt = medians.get(("dlt", r["workload"]))
        wall = r["wall_s"]
        r["pages_per_s"] = round(r["pages"] / wall, 2) if wall else None
        r["x_asyncio"] = round(wall / base, 2) if wall and base else None
        r["x_dlt"] = round(wall / dlt, 3) if wall and dlt else None
    return rows


def _fmt(value: Any) -> str:
    return "-" if value is None else str(value)


def markdown(report: dict[str, Any]) -> str:
    """results.md: the settings, the table, the Airflow steps and the CPU used, run by run."""
    s = report["settings"]
    cpus = s["machine"].get("cpus") or os.cpu_count() or 1  # the measuring machine's
    lines = [
        f"Run {report['started_at']} on {s['machine']['cpus']} cores (load average at start "
        f"{s['machine']['load_start']}, at end {_fmt(s['machine'].get('load_end'))}); simulator "
        f"--latency-ms {s['latency_ms']} --error-rate {s['error_rate']} --seed {s['seed']}, "
        f"{s.get('page_size', PAGE_SIZE)} records/page"
        + (f" of ~{s['record_bytes']} B" if s.get("record_bytes") else "")
        + f"; concurrency {s['concurrency']}; Airflow "
        f"{s['airflow_version']} LocalExecutor on PostgreSQL, parallelism {s['parallelism']}, job conf "
        f"fetch_tasks {s['fetch_tasks'] or 'automatic'}; moto {s.get('moto', 'stock')}; "
        f"extra env {s['airflow_env'] or 'none'}"
        + (f"; {TUNED_SYSTEM} env {s['tuned_env']}" if s.get("tuned_env") else "")
        + "".join(
            f"; runs added by `--add-to` at {more['started_at']} (load average at start "
            f"{more['machine']['load_start']})"
            for more in s.get("more_invocations", [])
        )
        + ".",
        "",
        "| system | workload | pages | wall s | pages/s | x asyncio | x dlt | task CPU ms/page "
        "| peak RSS MB | mapped TIs | status |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in report["table"]:
        runs = r["wall_runs_s"]
        wall = _fmt(r["wall_s"]) + (f" ({', '.join(map(_fmt, runs))})" if len(runs) > 1 else "")
        lines.append(
            f"| {r['system']} | {r['workload']} | {r['pages']} | {wall} "
            f"| {_fmt(r['pages_per_s'])} "
            f"| {_fmt(r['x_asyncio'])} | {_fmt(r['x_dlt'])} | {_fmt(r.get('cpu_ms_per_page'))} "
            f"| {_fmt(r['peak_rss_mb'])} "
            f"| {_fmt(r.get('mapped_tis'))} | {r['status']} |"
        )
    lines += [
        "",
        "wall s (median; every repeat in brackets): trigger to run success for Airflow "
        "(the run's queued_at to end_date: every page SuccessfullyCompleted, reconciled and "
        "reported); the script's fetch->S3 for asyncio; `pipeline.run` for dlt. "
        "x asyncio / x dlt: wall time divided by theirs on the same workload (x dlt below 1 = faster). "
        "task CPU ms/page (median): the CPU seconds of Airflow's task processes and their "
        "LocalExecutor workers (fixed costs included: every step of the job), or of the measured "
        "script, per page; not moto's, the simulator's or Airflow's services' (listed below). "
        "peak RSS: largest Airflow task process (sampled every 0.5 s), or the whole process for the others.",
    ]
    stage_lines = []
    for r in report["runs"]:
        details = r.get("details", {})
        stages = details.get("stages_s")
        if r["system"].startswith("airflow") and stages:
            parts = ", ".join(f"{name.split('.')[-1]} {start}-{end}" for name, (start, end) in stages.items())
            idle = details.get("no_task_running_s")
            if idle is None and details.get("timeline"):
                idle = idle_seconds(details["timeline"], details.get("server_wall_s"))
            stage_lines.append(
                f"- {r['system']} {r['workload']} #{r.get('repeat', 1)}: {parts}; no task running {idle} s"
            )
    if stage_lines:
        lines += ["", "Airflow steps, seconds after the trigger (start-end):", "", *stage_lines]
    cpu_lines = [
        f"- {r['system']} {r['workload']} #{r.get('repeat', 1)}: machine {r['cpu']['machine_busy_s']} s "
        f"(of {round(cpus * (r['wall_s'] or 0), 1)} available); "
        + ", ".join(f"{name} {value}" for name, value in r["cpu"]["by_component_s"].items())
        for r in report["runs"]
        if r.get("cpu")
    ]
    if cpu_lines:
        lines += ["", "CPU seconds used during each run, by component:", "", *cpu_lines]
    return "\n".join(lines) + "\n"


def update_readme(table_md: str, readme: Path = BENCH / "README.md") -> None:
    """Replace the table between the README's results markers (left alone without them)."""
    text = readme.read_text()
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        readme.write_text(f"{head}{start}\n{table_md}{end}{tail}")


def plot(python: Path, report_path: Path, png: Path) -> None:
    """bench/plot.py, in the venv that has matplotlib."""
    subprocess.run([str(python), str(BENCH / "plot.py"), str(report_path), str(png)], check=True)


def add_to(path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """An earlier report to add this invocation's runs to (same workload settings required)."""
    report: dict[str, Any] = json.loads(path.read_text())
    earlier = report["settings"]
    pairs = {k: tuple(both.get(k, LATER_DEFAULTS.get(k)) for both in (earlier, settings)) for k in COMPARABLE}
    different = {k: pair for k, pair in pairs.items() if pair[0] != pair[1]}
    if different:
        raise SystemExit(f"bench: --add-to {path} was measured with other settings: {different}")
    # This invocation's own settings (started_at, work folder, moto, machine load) are kept apart.
    earlier.setdefault("more_invocations", []).append(settings)
    if settings.get("tuned_env") and not earlier.get("tuned_env"):
        earlier["tuned_env"] = settings["tuned_env"]
    return report


def write_report(
    report: dict[str, Any], out: Path, tools_python: Path, *, final: bool, readme: bool = False
) -> str:
    """results.json and results.md in ``out`` (and, when ``final``, the plot; the README with ``readme``)."""
    out.mkdir(parents=True, exist_ok=True)
    report_path = out / "results.json"
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    (out / "results.md").write_text(table)
    if final:
        png = out / "wall_vs_pages.png"
        try:
            plot(tools_python, report_path, png)
            log(f"plot: {png}")
        except (subprocess.CalledProcessError, OSError) as error:
            log(f"plot failed: {error}")
        if readme:
            update_readme(table)
    return table
