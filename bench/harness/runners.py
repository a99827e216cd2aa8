"""How each contender is started and timed: the api_poller DAG on a real Airflow, the asyncio
script and dlt's rest_api source (the scripts in bench/, each printing one JSON result line)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api_poller import names

from .config import BENCH, PAGE_SIZE, ROOT, run_timeout
from .console import log
from .profiling import Profiler, summarize_profile
from .sampling import TaskRssSampler
from .timeline import idle_seconds, seconds_after, step_spans, task_timeline

if TYPE_CHECKING:
    from api_poller_dev.local_airflow import AirflowServer

DAG_ID = names.POLLER_DAG_ID


# -- the measuring scripts (asyncio, dlt) ----------------------------------------------------------


def run_json_subprocess(
    command: list[str], log_path: Path, timeout: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run a measuring script (its own process group, killed on timeout) and parse its JSON line."""
    with open(log_path, "wb") as stderr:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, env=env, start_new_session=True
        )
        try:
            out, _ = process.communicate(timeout=timeout)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{command[1]} exited {process.returncode} without a result; see {log_path}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["exit_code"] = process.returncode
    return result


def run_script(
    command: list[str], log_path: Path, timeout: float, *, done: str, expected: int
) -> dict[str, Any]:
    """A measuring script's run: successful when it exited 0 with ``expected`` ``done`` items."""
    result = run_json_subprocess(command, log_path, timeout)
    ok = result["exit_code"] == 0 and result[done] == expected
    return {
        "wall_s": result["wall_s"],
        "status": "success" if ok else f"failed ({result[done]} of {expected} {done})",
        "peak_rss_mb": result["peak_rss_mb"],
        "peak_rss_what": "the script's process",
        "details": result,
    }


def run_asyncio(url: str, endpoint: str, pages: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    command = [sys.executable, str(BENCH / "baseline_asyncio.py"), "--url", url]
    command += ["--endpoint", endpoint, "--concurrency", str(args.concurrency)]
    timeout = run_timeout(pages, args.timeout_factor)
    return run_script(command, work / "asyncio.log", timeout, done="saved", expected=pages)


def run_dlt(
    dlt_python: Path, base_url: str, pages: int, args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    command = [str(dlt_python), str(BENCH / "dlt_source.py"), "--base-url", base_url]
    command += ["--page-size", str(PAGE_SIZE), "--workdir", str(work / "dlt")]
    timeout = run_timeout(pages, args.timeout_factor) * 4
    return run_script(command, work / "dlt.log", timeout, done="rows", expected=pages * PAGE_SIZE)


# -- the api_poller DAG on a real Airflow ----------------------------------------------------------


def _xcom(airflow: AirflowServer, run_id: str, task_id: str, key: str) -> Any:
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
    try:
        value = airflow.request("GET", path + "?deserialize=true")["value"]
    except urllib.error.HTTPError:
        return None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    return value


def _wait_for_end(
    airflow: AirflowServer, run_id: str, pages: int, started: float, timeout: float, sampler: TaskRssSampler
) -> str:
    """Poll the run until it succeeds or fails, or fail it ``timeout`` s after ``started``; its state."""
    state, last_report = "queued", started
    while True:
        try:
            state = airflow.run_state(DAG_ID, run_id)
        except urllib.error.HTTPError:
            raise  # an answer (401, 404, ...): waiting would not change it
        except (TimeoutError, ConnectionError, urllib.error.URLError):
            pass  # a busy api-server: poll again
        now = time.monotonic()
        if state in ("success", "failed"):
            break
        if now - started > timeout:
            state = "timeout"
            with contextlib.suppress(Exception):
                airflow.request("PATCH", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}", {"state": "failed"})
            break
        if now - last_report >= 15:
            last_report = now
            with contextlib.suppress(Exception):
                counts = Counter(
                    f"{ti['task_id'].split('.')[-1]}:{ti['state']}"
                    for ti in airflow.task_instances(DAG_ID, run_id)
                )
                peak = max(sampler.peak.values(), default=0) / 2**20
                log(
                    f"  airflow {pages} pages: {now - started:.0f}s, {dict(counts)}, "
                    f"peak task RSS {peak:.0f} MB"
                )
        time.sleep(1.0)  # the run's own end_date gives the wall time: polling need not be fine
    return state


def run_airflow(
    airflow: AirflowServer,
    url: str,
    pages: int,
    args: argparse.Namespace,
    work: Path,
    profile_seconds: int = 0,
) -> dict[str, Any]:
    conf: dict[str, Any] = {"url": url, "concurrency": args.concurrency}
    if args.fetch_tasks:
        conf["fetch_tasks"] = args.fetch_tasks
    sampler = TaskRssSampler(airflow.processes["scheduler"].pid, interval=0.5)
    sampler.start()
    profiler = None
    timeout = run_timeout(pages, args.timeout_factor)
    started = time.monotonic()
    run_id = airflow.trigger(DAG_ID, conf)
    if profile_seconds:
        pyspy = BENCH / ".venv" / "bin" / "py-spy"
        profiler = Profiler(pyspy, airflow, run_id, sampler, work, profile_seconds)
        profiler.start()
    try:
        state = _wait_for_end(airflow, run_id, pages, started, timeout, sampler)
        wall = time.monotonic() - started
    finally:
        sampler.stop()
        if profiler:
            profiler.stop()
    run = airflow.dag_run(DAG_ID, run_id)
    tis = airflow.task_instances(DAG_ID, run_id)
    by_id = {ti["id"]: ti for ti in tis}
    peaks = {}
    for ti_id, rss in sampler.peak.items():
        ti = by_id.get(ti_id)
        name = (ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else "")) if ti else ti_id
        peaks[name] = round(rss / 2**20, 1)
    largest = max(peaks.items(), key=lambda item: item[1], default=("-", 0.0))
    summary = _xcom(airflow, run_id, names.REPORT_TASK, names.SUMMARY_KEY) or {}
    timeline = task_timeline(run, tis)
    server_wall = seconds_after(run.get("end_date"), datetime.fromisoformat(run["queued_at"]))
    result: dict[str, Any] = {
        # The run's queued_at -> end_date (server clock); the client's poll time if it never ended.
        "wall_s": server_wall if server_wall is not None else round(wall, 3),
        "client_wall_s": round(wall, 3),
        "status": state,
        "peak_rss_mb": largest[1],
        "peak_rss_what": f"task process {largest[0]}",
        "mapped_tis": sum(1 for ti in tis if ti["map_index"] >= 0),
        "details": {
            "run_id": run_id,
            "conf": conf,
            "server_wall_s": server_wall,
            "no_task_running_s": idle_seconds(timeline, server_wall),
            "progress": summary.get("progress"),
            "records_written": summary.get("recordsWritten"),
            "complete": summary.get("complete"),
            "task_instances": len(tis),
            "task_peak_rss_mb": peaks,
            "task_processes_peak_total_rss_mb": round(sampler.peak_total / 2**20, 1),
            "rss_samples": sampler.samples,
            "stages_s": step_spans(timeline),
            "timeline": timeline,
        },
    }
    if profiler:
        result["details"]["profiles"] = {
            # --out may be outside the project (e.g. under /tmp): then the absolute path.
            name: {
                "file": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
                **summarize_profile(path),
            }
            for name, path in profiler.files.items()
            if path.exists()
        }
    return result
