"""The benchmark's results: the table (medians and ratios), results.md, results.json, the README."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.harness.rendering import add_to, markdown, summarize_runs, update_readme, write_report

SETTINGS: dict[str, Any] = {
    "concurrency": 25,
    "fetch_tasks": 0,
    "parallelism": 16,
    "latency_ms": "0-1000",
    "error_rate": 0.1,
    "seed": 42,
    "page_size": 100,
    "airflow_env": {},
    "tuned_env": {},
    "airflow_version": "3.3.2",
    "machine": {"cpus": 2, "load_start": [0.5, 0.4, 0.3]},
    "moto": "stock",
}
AIRFLOW_DETAILS = {
    "stages_s": {"plan": [1.0, 2.0], "process.consume_page_messages": [1.5, 9.0]},
    "no_task_running_s": 1.25,
}
RUNS: list[dict[str, Any]] = [
    {"system": "asyncio", "workload": "seed", "pages": 100, "repeat": 1, "wall_s": 4.0, "status": "success",
     "peak_rss_mb": 120.0,
     "cpu": {"machine_busy_s": 3.0, "by_component_s": {"the measured script (asyncio or dlt)": 0.6}}},
    {"system": "airflow", "workload": "seed", "pages": 100, "repeat": 1, "wall_s": 10.0, "status": "success",
     "peak_rss_mb": 190.5, "mapped_tis": 1, "details": AIRFLOW_DETAILS,
     "cpu": {"machine_busy_s": 12.0, "by_component_s": {
         "moto": 2.0, "Airflow tasks (LocalExecutor workers + task processes)": 1.55,
         "Airflow scheduler": 1.0}}},
    {"system": "dlt", "workload": "seed", "pages": 100, "repeat": 1, "wall_s": 60.0, "status": "success",
     "peak_rss_mb": 118.0},
    {"system": "asyncio", "workload": "seed", "pages": 100, "repeat": 2, "wall_s": 5.0, "status": "success",
     "peak_rss_mb": 121.0,
     "cpu": {"machine_busy_s": 3.0, "by_component_s": {"the measured script (asyncio or dlt)": 0.8}}},
    {"system": "airflow", "workload": "seed", "pages": 100, "repeat": 2, "wall_s": None, "status": "timeout",
     "peak_rss_mb": None, "mapped_tis": 1},
]  # fmt: skip


def report() -> dict[str, Any]:
    runs = [dict(run) for run in RUNS]
    return {
        "started_at": "2026-12-01T00:00:00Z",
        "settings": SETTINGS,
        "runs": runs,
        "table": summarize_runs(runs),
    }


def test_the_table_has_one_row_per_system_with_the_median_of_its_successful_runs() -> None:
    rows = {row["system"]: row for row in summarize_runs(RUNS)}
    assert rows["asyncio"] == {
        "system": "asyncio",
        "workload": "seed",
        "pages": 100,
        "wall_s": 4.5,
        "wall_runs_s": [4.0, 5.0],
        "peak_rss_mb": 121.0,
        "cpu_ms_per_page": 7.0,  # the median of 6 and 8
        "mapped_tis": None,
        "status": "success",
        "pages_per_s": 22.22,
        "x_asyncio": 1.0,
        "x_dlt": 0.075,
    }
    airflow = rows["airflow"]
    assert (airflow["wall_s"], airflow["wall_runs_s"]) == (10.0, [10.0, None])
    assert airflow["status"] == "1/2 not successful: timeout"
    assert airflow["cpu_ms_per_page"] == 15.5  # its task processes' only (the timed-out run: none)
    assert rows["dlt"]["cpu_ms_per_page"] is None  # not sampled
    assert (airflow["x_asyncio"], airflow["x_dlt"]) == (2.22, 0.167)
    assert (rows["dlt"]["pages_per_s"], rows["dlt"]["x_dlt"]) == (1.67, 1.0)


def test_a_system_with_no_successful_run_has_no_wall_time_and_no_ratios() -> None:
    [row] = summarize_runs([{**RUNS[4], "repeat": 1}])
    assert (row["wall_s"], row["pages_per_s"], row["x_asyncio"]) == (None, None, None)
    assert row["status"] == "1/1 not successful: timeout"


def test_results_md_shows_the_settings_the_table_the_steps_and_the_cpu() -> None:
    lines = markdown(report()).splitlines()
    assert lines[0] == (
        "Run 2026-12-01T00:00:00Z on 2 cores (load average at start [0.5, 0.4, 0.3], at end -); "
        "simulator --latency-ms 0-1000 --error-rate 0.1 --seed 42, 100 records/page; concurrency 25; "
        "Airflow 3.3.2 LocalExecutor on PostgreSQL, parallelism 16, job conf fetch_tasks automatic; "
        "moto stock; extra env none."
    )
    assert (
        "| asyncio | seed | 100 | 4.5 (4.0, 5.0) | 22.22 | 1.0 | 0.075 | 7.0 | 121.0 | - | success |" in lines
    )
    assert (
        "| airflow | seed | 100 | 10.0 (10.0, -) | 10.0 | 2.22 | 0.167 | 15.5 | 190.5 | 1 "
        "| 1/2 not successful: timeout |"
    ) in lines
    assert "- airflow seed #1: plan 1.0-2.0, consume_page_messages 1.5-9.0; no task running 1.25 s" in lines
    # CPU available = the measuring machine's cores x the run's wall time.
    assert (
        "- airflow seed #1: machine 12.0 s (of 20.0 available); moto 2.0, "
        "Airflow tasks (LocalExecutor workers + task processes) 1.55, Airflow scheduler 1.0"
    ) in lines


def test_the_report_is_written_as_json_and_markdown(tmp_path: Path) -> None:
    written = report()
    table = write_report(written, tmp_path / "out", tmp_path / "no-python", final=False)
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == written
    assert (tmp_path / "out" / "results.md").read_text() == table == markdown(written)
    assert not (tmp_path / "out" / "wall_vs_pages.png").exists()  # the plot only at the end


def test_runs_are_added_only_to_a_report_measured_with_the_same_settings(tmp_path: Path) -> None:
    earlier = tmp_path / "results.json"
    earlier.write_text(json.dumps(report()))
    now = {**SETTINGS, "started_at": "2026-12-02T00:00:00Z"}

    merged = add_to(earlier, now)
    assert merged["settings"]["more_invocations"] == [now]
    assert "runs added by `--add-to` at 2026-12-02T00:00:00Z" in markdown(merged)

    with pytest.raises(SystemExit, match=r"other settings: \{'seed': \(42, 7\)\}"):
        add_to(earlier, {**now, "seed": 7})


def test_the_readme_table_is_replaced_between_its_markers_only(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:start -->\nold table\n<!-- results:end -->\nafter\n")
    update_readme("new table\n", readme)
    assert readme.read_text() == "intro\n<!-- results:start -->\nnew table\n<!-- results:end -->\nafter\n"
    unmarked = tmp_path / "OTHER.md"
    unmarked.write_text("no markers\n")
    update_readme("new table\n", unmarked)
    assert unmarked.read_text() == "no markers\n"
