"""Benchmark: the api_poller DAG on a real Airflow vs a plain asyncio script vs dlt's rest_api source.

One command starts moto's server, PostgreSQL-backed Airflow (LocalExecutor) and, per measured run,
a fresh partner-API simulator (same seed, so every system sees the same latencies and errors);
it measures each system on each workload and writes bench/results/results.{json,md} and a plot.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
MAIN_PYTHON = ROOT / ".venv" / "bin" / "python"

WORKLOAD_PAGES = {"seed": 100, "1000": 1000, "10000": 10000}
PAGE_SIZE = 100
DAG_ID = "api_poller"
ALL_SYSTEMS = ("asyncio", "airflow", "dlt")
DLT_WORKLOADS = ("seed",)  # dlt reads one page at a time: the seed workload is enough to compare
TUNED_SYSTEM = "airflow-tuned"


def _main_venv() -> None:
    """Re-run under the project's venv (Airflow, moto, boto3, aiohttp, psutil) if started elsewhere."""
    import importlib.util

    if importlib.util.find_spec("airflow") is not None:
        return
    if MAIN_PYTHON.exists() and Path(sys.executable).resolve() != MAIN_PYTHON.resolve():
        os.execv(str(MAIN_PYTHON), [str(MAIN_PYTHON), __file__, *sys.argv[1:]])
    raise SystemExit("bench: the project venv is missing; run scripts/bootstrap (bench/run does it)")


# -- small helpers ------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


TIMEOUT_FACTOR = 1.0  # --timeout-factor


def run_timeout(pages: int) -> float:
    """Per-run limit: 600 s up to 4,000 pages, then 0.15 s a page (1500 s at 10,000 pages)."""
    return TIMEOUT_FACTOR * max(600.0, 0.15 * pages)


def ensure_venv(venv: Path, lock: Path) -> Path:
    """A venv holding exactly ``lock`` (hash-checked); rebuilt when the lock changes."""
    python = venv / "bin" / "python"
    stamp = venv / ".lock-sha256"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == digest:
        return python
    base = getattr(sys, "_base_executable", sys.executable)
    log(f"installing {lock.relative_to(ROOT)} into {venv.relative_to(ROOT)}")
    uv = shutil.which("uv")
    if uv:
        if not python.exists():
            subprocess.run([uv, "venv", "--quiet", "--python", base, str(venv)], check=True)
        subprocess.run(
            [uv, "pip", "sync", "--quiet", "--require-hashes", "--python", str(python), str(lock)], check=True
        )
    else:
        subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--require-hashes", "-r", str(lock)], check=True
        )
    stamp.write_text(digest)
    return python


def http_json(url: str, method: str = "GET", timeout: float = 10.0) -> Any:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def reset_moto(endpoint: str) -> None:
    """Every run starts on an empty moto (the DAG recreates its buckets and queues)."""
    http_json(f"{endpoint}/moto-api/reset", method="POST")


@contextlib.contextmanager
def moto(work: Path, stock: bool) -> Iterator[str]:
    """moto's server on 127.0.0.1: with bench/moto_server.py's SQS fixes unless ``stock``."""
    from api_poller_dev.local_stack import background_process, free_port, moto_server, wait_for_http

    if stock:
        with moto_server(work) as endpoint:
            yield endpoint
        return
    port = free_port()
    command = [sys.executable, str(BENCH / "moto_server.py"), "-H", "127.0.0.1", "-p", str(port)]
    with background_process(command, work / "moto.log"):
        endpoint = f"http://127.0.0.1:{port}"
        wait_for_http(f"{endpoint}/moto-api/")
        yield endpoint


def simulator_args(pages: int, args: argparse.Namespace) -> list[str]:
    return [
        f"--total-records={pages * PAGE_SIZE}",
        f"--page-size={PAGE_SIZE}",
        f"--latency-ms={args.latency_ms}",
        f"--error-rate={args.error_rate}",
        f"--seed={args.seed}",
    ]


def run_json_subprocess(command: list[str], log_path: Path, timeout: float, env: dict | None = None) -> dict:
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
    result = json.loads(lines[-1])
    result["exit_code"] = process.returncode
    return result


# -- CPU seconds per component ------------------------------------------------------------------

# First match wins; "children" counts the CPU of reaped children too (task processes end up in
# their LocalExecutor worker's, which lives as long as the scheduler).
CPU_COMPONENTS = (
    ("moto", "moto_server"),
    ("moto", "moto.server"),  # --stock-moto
    ("simulator", "api_poller_dev.simulator"),
    ("Airflow tasks (LocalExecutor workers + task processes)", "worker -- "),
    ("Airflow api-server", "api_server"),
    ("Airflow api-server", "api-server"),
    ("Airflow scheduler", "scheduler"),
    ("Airflow dag-processor", "dag-processor"),
    ("Airflow dag-processor", "dag_processor"),
    ("Airflow triggerer", "triggerer"),
    ("PostgreSQL", "postgres"),
    ("this benchmark", "bench/run.py"),
)


MEASURED_SCRIPTS = "the measured script (asyncio or dlt)"


def cpu_snapshot() -> dict[str, Any]:
    """CPU seconds so far per component (self + reaped children), and the machine's busy total."""
    tick = os.sysconf("SC_CLK_TCK")
    per_pid: dict[int, tuple[str, float]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            title = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            component = next((name for name, needle in CPU_COMPONENTS if needle in title), None)
            if component:
                pid = int(stat.parent.name)
                fields = [int(f) for f in stat.read_text().rsplit(")", 1)[1].split()[11:15]]
                if pid == os.getpid():
                    # The measuring scripts are this process's children: their CPU is theirs.
                    per_pid[pid] = (component, sum(fields[:2]) / tick)
                    per_pid[-pid] = (MEASURED_SCRIPTS, sum(fields[2:]) / tick)
                else:
                    per_pid[pid] = (component, sum(fields) / tick)
    busy = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = busy[3] + busy[4]
    return {"pids": per_pid, "busy_s": (sum(busy) - idle) / tick}


def cpu_used(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """CPU seconds per component between two snapshots (processes alive at the end; those that
    started in between count from zero), and the machine's busy CPU seconds."""
    used: Counter = Counter()
    for pid, (component, seconds) in after["pids"].items():
        earlier = before["pids"].get(pid)
        start = earlier[1] if earlier and earlier[0] == component else 0.0
        used[component] += max(0.0, seconds - start)
    return {
        "machine_busy_s": round(after["busy_s"] - before["busy_s"], 1),
        "by_component_s": {name: round(value, 1) for name, value in used.most_common()},
    }


# -- RSS of the Airflow task processes ----------------------------------------------------------


def _children(pid: int) -> list[int]:
    """Child PIDs: from /proc/PID/task/*/children (cheap: the sampler must not load the machine it
    measures), else with psutil."""
    with contextlib.suppress(OSError, ValueError):
        return [
            int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()
        ]
    import psutil  # in the project's lock

    try:
        return [child.pid for child in psutil.Process(pid).children()]
    except psutil.Error:  # the process is gone: no children (never stop the sampler)
        return []


def _rss_and_title(pid: int) -> tuple[int, str]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))
    title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    return rss_kb * 1024, title


UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class TaskRssSampler(threading.Thread):
    """Every ``interval`` s, the RSS of each task process: children of the scheduler's LocalExecutor
    workers (the worker is the task's supervisor; its child runs the task). Keyed by TI id, which
    both processes carry in their titles."""

    def __init__(self, scheduler_pid: int, interval: float = 0.5) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.scheduler_pid = scheduler_pid
        self.interval = interval
        self.peak: dict[str, int] = {}  # TI id (or pid) -> peak RSS bytes
        self.pids: dict[str, int] = {}  # TI id -> task pid
        self.peak_total = 0
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            total = 0
            for worker in _children(self.scheduler_pid):
                for task in _children(worker):
                    try:
                        rss, title = _rss_and_title(task)
                        _, worker_title = _rss_and_title(worker)
                    except (OSError, AttributeError):
                        continue
                    match = UUID_RE.search(title) or UUID_RE.search(worker_title)
                    key = match.group(0) if match else f"pid-{task}"
                    self.peak[key] = max(self.peak.get(key, 0), rss)
                    self.pids[key] = task
                    total += rss
            self.peak_total = max(self.peak_total, total)
            self.samples += 1

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


# -- profiling (optional) -----------------------------------------------------------------------


class Profiler(threading.Thread):
    """py-spy ``record`` (non-blocking: it reads the process's memory, no network) on the first task
    process of each chosen task, plus the scheduler and the api-server, while a run goes on."""

    def __init__(self, pyspy: Path, airflow: Any, run_id: str, sampler: TaskRssSampler, out: Path, seconds):
        super().__init__(daemon=True, name="profiler")
        self.pyspy, self.airflow, self.run_id, self.sampler = pyspy, airflow, run_id, sampler
        self.out, self.seconds = out, seconds
        self.targets = {"fetch_pages": None, "process.consume_page_messages": None, "report": None}
        self.recorders: list[subprocess.Popen] = []
        self.files: dict[str, Path] = {}
        self._stop_event = threading.Event()

    def _record(self, name: str, pid: int, subprocesses: bool = False) -> None:
        path = self.out / f"profile-{name}.txt"
        command = [str(self.pyspy), "record", "--pid", str(pid), "--duration", str(self.seconds)]
        command += ["--rate", "50", "--nonblocking", "--format", "raw", "--output", str(path)]
        if subprocesses:
            command.append("--subprocesses")
        log_file = open(self.out / f"profile-{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.recorders.append(subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT))
        self.files[name] = path
        log(f"profiling {name} (pid {pid}) for {self.seconds}s")

    def run(self) -> None:
        self._record("scheduler", self.airflow.processes["scheduler"].pid, subprocesses=False)
        self._record("api-server", self.airflow.processes["api-server"].pid, subprocesses=True)
        while not self._stop_event.wait(2.0) and any(v is None for v in self.targets.values()):
            try:
                tis = self.airflow.task_instances(DAG_ID, self.run_id)
            except Exception:
                continue
            by_id = {ti["id"]: ti for ti in tis}
            for ti_id, pid in list(self.sampler.pids.items()):
                ti = by_id.get(ti_id)
                if ti and ti["task_id"] in self.targets and self.targets[ti["task_id"]] is None:
                    if ti["task_id"] == "fetch_pages" and ti["map_index"] != 0:
                        continue
                    self.targets[ti["task_id"]] = pid
                    self._record(ti["task_id"].replace("process.", ""), pid)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
        for recorder in self.recorders:
            try:
                recorder.wait(timeout=self.seconds + 30)
            except subprocess.TimeoutExpired:
                recorder.send_signal(signal.SIGINT)
                recorder.wait(timeout=30)


# Exclusive categories for profile samples: the first rule with a needle in the stack wins.
PROFILE_RULES = (
    ("status XCom push (task side)", ("xcom_push",)),
    ("api-server: XCom routes", ("execution_api/routes/xcoms.py",)),
    ("reconcile: S3 get + parse ids", ("_read_ids",)),
    ("process: S3 get/put/delete + ndjson", ("process_page", "records_to_ndjson", "delete_raw_pages")),
    ("SQS calls", ("_consume_once", "_finish_batch", "_account_dead_letters", "send_message_batch")),
    ("S3 list", ("stored_page_ids",)),
    ("other boto3 calls (fetch: put_object in threads)", ("botocore/",)),
    ("HTTP client (aiohttp)", ("aiohttp/",)),
    ("task start: imports + DAG parse", ("_find_and_load", "dagbag.py", "parse_dag", "startup (")),
    ("database (SQLAlchemy)", ("sqlalchemy/",)),
    ("asyncio event loop", ("asyncio/",)),
    ("json", ("json/",)),
)


def summarize_profile(path: Path, top: int = 8) -> dict[str, Any]:
    """From py-spy's collapsed stacks (on-CPU samples): share per category and busiest leaf frames."""
    leaves: Counter = Counter()
    categories: Counter = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        leaves[stack.rsplit(";", 1)[-1]] += n
        label = next((label for label, needles in PROFILE_RULES if any(x in stack for x in needles)), "other")
        categories[label] += n
    if not total:
        return {"samples": 0}
    return {
        "samples": total,
        "category_pct": {label: round(100 * n / total, 1) for label, n in categories.most_common()},
        "top_leaf_frames_pct": {frame: round(100 * n / total, 1) for frame, n in leaves.most_common(top)},
    }


# -- the systems --------------------------------------------------------------------------------


def run_script(command: list[str], log_path: Path, timeout: float, *, done: str, expected: int) -> dict:
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


def run_asyncio(url: str, endpoint: str, pages: int, args: argparse.Namespace, work: Path) -> dict:
    command = [sys.executable, str(BENCH / "baseline_asyncio.py"), "--url", url]
    command += ["--endpoint", endpoint, "--concurrency", str(args.concurrency)]
    return run_script(command, work / "asyncio.log", run_timeout(pages), done="saved", expected=pages)


def run_dlt(dlt_python: Path, base_url: str, pages: int, work: Path) -> dict:
    command = [str(dlt_python), str(BENCH / "dlt_source.py"), "--base-url", base_url]
    command += ["--page-size", str(PAGE_SIZE), "--workdir", str(work / "dlt")]
    timeout = run_timeout(pages) * 4
    return run_script(command, work / "dlt.log", timeout, done="rows", expected=pages * PAGE_SIZE)


def _relative(stamp: str | None, origin: datetime) -> float | None:
    if not stamp:
        return None
    return round((datetime.fromisoformat(stamp.replace("Z", "+00:00")) - origin).total_seconds(), 2)


def _timeline(run: dict, tis: list[dict]) -> list[dict]:
    """Each TI's queued/start/end, in seconds after the run was queued (the trigger)."""
    origin = datetime.fromisoformat(run["queued_at"].replace("Z", "+00:00"))
    rows = [
        {
            "task": ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""),
            "state": ti["state"],
            "try": ti.get("try_number"),
            "queued_s": _relative(ti.get("queued_when"), origin),
            "start_s": _relative(ti.get("start_date"), origin),
            "end_s": _relative(ti.get("end_date"), origin),
        }
        for ti in tis
    ]
    return sorted(rows, key=lambda row: (row["start_s"] is None, row["start_s"] or 0))


def _stages(timeline: list[dict]) -> dict[str, list[float | None]]:
    """[start, end] of each step (a mapped step: first start, last end)."""
    stages: dict[str, list] = {}
    for row in timeline:
        name = row["task"].split("[")[0]
        start, end = row["start_s"], row["end_s"]
        if name not in stages:
            stages[name] = [start, end]
        else:
            known = stages[name]
            known[0] = min(x for x in (known[0], start) if x is not None) if start is not None else known[0]
            known[1] = max(x for x in (known[1], end) if x is not None) if end is not None else known[1]
    return stages


def _idle_seconds(timeline: list[dict], end: float | None) -> float | None:
    """Seconds between the trigger and the run's end when none of its tasks was running: the
    scheduler's share (queueing, dependency checks, executor pick-up, run state update)."""
    if end is None:
        return None
    busy, cursor = 0.0, 0.0
    spans = sorted((r["start_s"], r["end_s"]) for r in timeline if r["start_s"] is not None and r["end_s"])
    for start, stop in spans:
        start = max(start, cursor)
        if stop > start:
            busy += stop - start
            cursor = stop
    return round(end - busy, 2)


def _xcom(airflow: Any, run_id: str, task_id: str, key: str) -> Any:
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
    try:
        value = airflow.request("GET", path + "?deserialize=true")["value"]
    except urllib.error.HTTPError:
        return None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    return value


def run_airflow(
    airflow: Any, url: str, pages: int, args: argparse.Namespace, work: Path, profile_seconds: int = 0
) -> dict:
    conf = {"url": url, "concurrency": args.concurrency}
    if args.fetch_tasks:
        conf["fetch_tasks"] = args.fetch_tasks
    sampler = TaskRssSampler(airflow.processes["scheduler"].pid, interval=0.5)
    sampler.start()
    profiler = None
    timeout = run_timeout(pages)
    started = time.monotonic()
    run_id = airflow.trigger(DAG_ID, conf)
    if profile_seconds:
        pyspy = BENCH / ".venv" / "bin" / "py-spy"
        profiler = Profiler(pyspy, airflow, run_id, sampler, work, profile_seconds)
        profiler.start()
    state, last_report = "queued", started
    try:
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
    summary = _xcom(airflow, run_id, "report", "summary") or {}
    timeline = _timeline(run, tis)
    server_wall = _relative(run.get("end_date"), datetime.fromisoformat(run["queued_at"]))
    result = {
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
            "no_task_running_s": _idle_seconds(timeline, server_wall),
            "progress": summary.get("progress"),
            "records_written": summary.get("recordsWritten"),
            "complete": summary.get("complete"),
            "task_instances": len(tis),
            "task_peak_rss_mb": peaks,
            "task_processes_peak_total_rss_mb": round(sampler.peak_total / 2**20, 1),
            "rss_samples": sampler.samples,
            "stages_s": _stages(timeline),
            "timeline": timeline,
        },
    }
    if profiler:
        result["details"]["profiles"] = {
            name: {"file": str(path.relative_to(ROOT)), **summarize_profile(path)}
            for name, path in profiler.files.items()
            if path.exists()
        }
    return result


# -- the report ---------------------------------------------------------------------------------


def summarize_runs(runs: list[dict]) -> list[dict]:
    """One row per system and workload: the median wall time over its repeats, with ratios."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        groups.setdefault((run["system"], run["workload"]), []).append(run)
    rows = []
    for (system, workload), group in groups.items():
        walls = sorted(r["wall_s"] for r in group if r["status"] == "success")
        failed = [r["status"] for r in group if r["status"] != "success"]
        rsss = [r["peak_rss_mb"] for r in group if r.get("peak_rss_mb") is not None]
        rows.append(
            {
                "system": system,
                "workload": workload,
                "pages": group[0]["pages"],
                "wall_s": round(statistics.median(walls), 2) if walls else None,
                "wall_runs_s": [r["wall_s"] for r in group],
                "peak_rss_mb": max(rsss, default=None),
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


def markdown(report: dict) -> str:
    s = report["settings"]
    lines = [
        f"Run {report['started_at']} on {s['machine']['cpus']} cores (load average at start "
        f"{s['machine']['load_start']}, at end {_fmt(s['machine'].get('load_end'))}); simulator "
        f"--latency-ms {s['latency_ms']} --error-rate {s['error_rate']} --seed {s['seed']}, "
        f"{PAGE_SIZE} records/page; concurrency {s['concurrency']}; Airflow {s['airflow_version']} "
        f"LocalExecutor on PostgreSQL, parallelism {s['parallelism']}, job conf fetch_tasks "
        f"{s['fetch_tasks'] or 'automatic'}; moto {s.get('moto', 'stock')}; "
        f"extra env {s['airflow_env'] or 'none'}"
        + (f"; {TUNED_SYSTEM} env {s['tuned_env']}" if s.get("tuned_env") else "")
        + "".join(
            f"; runs added by `--add-to` at {more['started_at']} (load average at start "
            f"{more['machine']['load_start']})"
            for more in s.get("more_invocations", [])
        )
        + ".",
        "",
        "| system | workload | pages | wall s | pages/s | x asyncio | x dlt | peak RSS MB "
        "| mapped TIs | status |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in report["table"]:
        runs = r["wall_runs_s"]
        wall = _fmt(r["wall_s"]) + (f" ({', '.join(map(_fmt, runs))})" if len(runs) > 1 else "")
        lines.append(
            f"| {r['system']} | {r['workload']} | {r['pages']} | {wall} "
            f"| {_fmt(r['pages_per_s'])} "
            f"| {_fmt(r['x_asyncio'])} | {_fmt(r['x_dlt'])} | {_fmt(r['peak_rss_mb'])} "
            f"| {_fmt(r.get('mapped_tis'))} | {r['status']} |"
        )
    lines += [
        "",
        "wall s (median; every repeat in brackets): trigger to run success for Airflow "
        "(the run's queued_at to end_date: every page SuccessfullyCompleted, reconciled and "
        "reported); the script's fetch->S3 for asyncio; `pipeline.run` for dlt. "
        "x asyncio / x dlt: wall time divided by theirs on the same workload (x dlt below 1 = faster). "
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
                idle = _idle_seconds(details["timeline"], details.get("server_wall_s"))
            stage_lines.append(
                f"- {r['system']} {r['workload']} #{r.get('repeat', 1)}: {parts}; no task running {idle} s"
            )
    if stage_lines:
        lines += ["", "Airflow steps, seconds after the trigger (start-end):", "", *stage_lines]
    cpu_lines = [
        f"- {r['system']} {r['workload']} #{r.get('repeat', 1)}: machine {r['cpu']['machine_busy_s']} s "
        f"(of {round((os.cpu_count() or 1) * (r['wall_s'] or 0), 1)} available); "
        + ", ".join(f"{name} {value}" for name, value in r["cpu"]["by_component_s"].items())
        for r in report["runs"]
        if r.get("cpu")
    ]
    if cpu_lines:
        lines += ["", "CPU seconds used during each run, by component:", "", *cpu_lines]
    return "\n".join(lines) + "\n"


def update_readme(table_md: str) -> None:
    readme = BENCH / "README.md"
    text = readme.read_text()
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        readme.write_text(f"{head}{start}\n{table_md}{end}{tail}")


def plot(python: Path, report_path: Path, png: Path) -> None:
    subprocess.run([str(python), str(BENCH / "plot.py"), str(report_path), str(png)], check=True)


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", default="seed,1000,10000", help="comma-separated: seed,1000,10000")
    parser.add_argument("--quick", action="store_true", help="the seed workload only")
    parser.add_argument(
        "--systems", default=",".join(ALL_SYSTEMS), help="comma-separated: asyncio,airflow,dlt"
    )
    parser.add_argument("--concurrency", type=int, default=25, help="requests in flight (all systems)")
    parser.add_argument(
        "--fetch-tasks", type=int, default=0, help="job conf fetch_tasks (0: the DAG's automatic choice)"
    )
    parser.add_argument("--parallelism", type=int, default=16, help="Airflow [core] parallelism")
    parser.add_argument("--latency-ms", default="0-1000")
    parser.add_argument("--error-rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--airflow-env", action="append", default=[], metavar="API_POLLER_X=V",
        help="a product setting for the benchmark's Airflow (repeatable; API_POLLER_* only)",
    )  # fmt: skip
    parser.add_argument(
        "--tuned-env", action="append", default=[], metavar="API_POLLER_X=V",
        help=f"also run a second Airflow ('{TUNED_SYSTEM}') with these product settings",
    )  # fmt: skip
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per system on workloads up to 1,000 pages (median reported)",
    )
    parser.add_argument(
        "--stock-moto", action="store_true", help="moto as is (its SQS is quadratic in the queue depth)"
    )
    parser.add_argument("--timeout-factor", type=float, default=1.0, help="scales every per-run timeout")
    parser.add_argument("--no-warmup", action="store_true", help="skip the unmeasured warm-up DAG run")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="SECONDS",
        help="py-spy record task processes, scheduler and api-server during the largest Airflow run",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument(
        "--add-to", type=Path, metavar="RESULTS_JSON",
        help="add this invocation's runs to an earlier results.json (e.g. to finish a partial run)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.out = args.out.resolve()
    if args.add_to:
        args.add_to = args.add_to.resolve()
    args.workloads = ["seed"] if args.quick else [w for w in args.workloads.split(",") if w]
    unknown = [w for w in args.workloads if w not in WORKLOAD_PAGES]
    if unknown:
        parser.error(f"unknown workloads {unknown}; choose from {list(WORKLOAD_PAGES)}")
    args.systems = [s for s in args.systems.split(",") if s]
    if bad := [s for s in args.systems if s not in ALL_SYSTEMS]:
        parser.error(f"unknown systems {bad}; choose from {list(ALL_SYSTEMS)}")
    for option in ("airflow_env", "tuned_env"):
        env = {}
        for item in getattr(args, option):
            key, sep, value = item.partition("=")
            if not sep or not key.startswith("API_POLLER_"):
                parser.error(
                    f"--{option.replace('_', '-')} takes API_POLLER_NAME=VALUE (product settings only)"
                )
            env[key] = value
        setattr(args, option, env)
    return args


@contextlib.contextmanager
def airflow_stack(
    name: str, work: Path, endpoint: str, args: argparse.Namespace, env: dict[str, str]
) -> Iterator[Any]:
    from api_poller_dev.local_airflow import running_airflow, scratch_postgres_database
    from api_poller_dev.local_stack import aws_connection

    with (
        scratch_postgres_database("api_poller_bench") as database_url,
        running_airflow(
            work / name,
            database_url=database_url,
            parallelism=args.parallelism,
            extra_env={"AIRFLOW_CONN_AWS_DEFAULT": aws_connection(endpoint), **env},
        ) as airflow,
    ):
        airflow.wait_for_dag(DAG_ID)
        log(f"{name} is up at {airflow.base_url} (home {work / name})")
        yield airflow


def warm_up(airflow: Any, endpoint: str, work: Path) -> None:
    """One small unmeasured run, so the first measured one does not pay for cold caches."""
    from api_poller_dev.local_stack import simulator_server

    reset_moto(endpoint)
    with simulator_server(
        work / "warmup", ["--total-records=1000", "--latency-ms=0", "--error-rate=0"]
    ) as base:
        run_id = airflow.trigger(DAG_ID, {"url": f"{base}/payload", "fetch_tasks": 2})
        state = airflow.wait_for_run(DAG_ID, run_id, timeout=300)
    log(f"warm-up run: {state}")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    _main_venv()
    sys.path[:0] = [str(ROOT / "include"), str(ROOT / "devtools")]
    args = parse_args(argv)
    global TIMEOUT_FACTOR
    TIMEOUT_FACTOR = args.timeout_factor
    from api_poller_dev.local_airflow import postgres_reachable
    from api_poller_dev.local_stack import simulator_server

    # SIGTERM (e.g. a timeout around this command) unwinds like Ctrl-C: every server is stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    if ("airflow" in args.systems or args.tuned_env) and not postgres_reachable():
        raise SystemExit("bench: PostgreSQL is not reachable on 127.0.0.1:5432")

    started_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    work = args.out / "work" / started_at.replace(":", "")
    work.mkdir(parents=True, exist_ok=True)
    tools_python = ensure_venv(BENCH / ".venv", BENCH / "requirements.txt")
    dlt_python = None
    if "dlt" in args.systems and any(w in DLT_WORKLOADS for w in args.workloads):
        dlt_python = ensure_venv(BENCH / ".venv-dlt", BENCH / "requirements-dlt.txt")
    import airflow as airflow_package

    systems = [s for s in ALL_SYSTEMS if s in args.systems]
    if args.tuned_env:
        systems.append(TUNED_SYSTEM)
    settings = {
        "concurrency": args.concurrency,
        "fetch_tasks": args.fetch_tasks,
        "parallelism": args.parallelism,
        "latency_ms": args.latency_ms,
        "error_rate": args.error_rate,
        "seed": args.seed,
        "page_size": PAGE_SIZE,
        "airflow_env": args.airflow_env,
        "tuned_env": args.tuned_env,
        "airflow_version": airflow_package.__version__,
        "dlt": "dlt rest_api source, filesystem destination on local disk (jsonl)",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_start": [round(x, 2) for x in os.getloadavg()],
        },
        "workdir": str(work.relative_to(ROOT) if work.is_relative_to(ROOT) else work),
        "repeat": args.repeat,
        "moto": "stock" if args.stock_moto else "with bench/moto_server.py's SQS fixes",
    }
    report: dict[str, Any] = {"started_at": started_at, "settings": settings, "table": [], "runs": []}
    if args.add_to:
        report = add_to(args.add_to, {**settings, "started_at": started_at})
    largest = max(args.workloads, key=WORKLOAD_PAGES.get)
    log(f"workloads {args.workloads}, systems {systems}; work files in {work}")

    with contextlib.ExitStack() as stack:
        endpoint = stack.enter_context(moto(work, args.stock_moto))
        airflows: dict[str, Any] = {}
        for system, env in (("airflow", args.airflow_env), (TUNED_SYSTEM, args.tuned_env)):
            if system not in systems:
                continue
            airflows[system] = stack.enter_context(airflow_stack(system, work, endpoint, args, env))
            if not args.no_warmup:
                warm_up(airflows[system], endpoint, work)
        for workload in args.workloads:
            pages = WORKLOAD_PAGES[workload]
            repeats = args.repeat if pages <= 1000 else 1
            # Repeats interleave the systems, so load from elsewhere on the machine hits them alike.
            for repeat, system in itertools.product(range(1, repeats + 1), systems):
                if system == "dlt" and workload not in DLT_WORKLOADS:
                    continue
                run_dir = work / f"{workload}-{system}-{repeat}"
                run_dir.mkdir(parents=True, exist_ok=True)
                reset_moto(endpoint)
                load = round(os.getloadavg()[0], 2)
                log(f"{system} on {workload} ({pages} pages), #{repeat}, load {load} ...")
                with simulator_server(run_dir, simulator_args(pages, args)) as base_url:
                    url = f"{base_url}/payload"
                    cpu_before = cpu_snapshot()
                    try:
                        if system == "asyncio":
                            result = run_asyncio(url, endpoint, pages, args, run_dir)
                        elif system == "dlt":
                            result = run_dlt(dlt_python, base_url, pages, run_dir)
                        else:
                            profiled = workload == largest and system == "airflow" and repeat == 1
                            profile = args.profile if profiled else 0
                            result = run_airflow(airflows[system], url, pages, args, run_dir, profile)
                    except (subprocess.TimeoutExpired, RuntimeError, urllib.error.URLError) as error:
                        result = {"wall_s": None, "status": f"error: {error}", "peak_rss_mb": None}
                    result["cpu"] = cpu_used(cpu_before, cpu_snapshot())
                    result["simulator"] = http_json(f"{base_url}/stats")
                run = {"system": system, "workload": workload, "pages": pages, "repeat": repeat, **result}
                run["invocation"] = started_at
                run["load_average_1m_at_start"] = load
                report["runs"].append(run)
                log(f"{system} on {workload}: {run['status']} in {run['wall_s']} s")
                report["table"] = summarize_runs(report["runs"])
                write_report(report, args.out, tools_python, final=False)
    # (With --add-to, ``settings`` is this invocation's entry in "more_invocations".)
    settings["machine"]["load_end"] = [round(x, 2) for x in os.getloadavg()]
    measured = {(r["system"], r["workload"]) for r in report["runs"]}
    full = all(
        (system, workload) in measured
        for workload in WORKLOAD_PAGES
        for system in ALL_SYSTEMS
        if system != "dlt" or workload in DLT_WORKLOADS
    )
    table = write_report(report, args.out, tools_python, final=True, readme=full)
    print(table)
    return 0 if all(r["status"] == "success" for r in report["runs"]) else 1


COMPARABLE = ("concurrency", "fetch_tasks", "parallelism", "latency_ms", "error_rate", "seed", "airflow_env")


def add_to(path: Path, settings: dict) -> dict:
    """An earlier report to add this invocation's runs to (same workload settings required)."""
    report = json.loads(path.read_text())
    earlier = report["settings"]
    different = {k: (earlier.get(k), settings[k]) for k in COMPARABLE if earlier.get(k) != settings[k]}
    if different:
        raise SystemExit(f"bench: --add-to {path} was measured with other settings: {different}")
    # This invocation's own settings (started_at, work folder, moto, machine load) are kept apart.
    earlier.setdefault("more_invocations", []).append(settings)
    if settings.get("tuned_env") and not earlier.get("tuned_env"):
        earlier["tuned_env"] = settings["tuned_env"]
    return report


def write_report(report: dict, out: Path, tools_python: Path, *, final: bool, readme: bool = False) -> str:
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


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as interrupt:
        log(f"interrupted ({interrupt}); every server was stopped, partial results are in results.json")
        sys.exit(130)
