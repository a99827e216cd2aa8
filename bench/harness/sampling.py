"""What the machine spent during a run, read from /proc: CPU seconds per component, and the RSS
of every Airflow task process (sampled in a thread; cheap, as it must not load what it measures)."""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections import Counter
from pathlib import Path
from typing import Any

AIRFLOW_TASKS = "Airflow tasks (LocalExecutor workers + task processes)"
# First match wins; "children" counts the CPU of reaped children too (task processes end up in
# their LocalExecutor worker's, which lives as long as the scheduler).
CPU_COMPONENTS = (
    ("moto", "moto_server"),
    ("moto", "moto.server"),  # --stock-moto
    ("simulator", "api_poller_dev.simulator"),
    (AIRFLOW_TASKS, "worker -- "),
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

# A task instance's id, which the task process and its supervisor both carry in their titles.
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# -- reading /proc ---------------------------------------------------------------------------------


def component_of(command_line: str) -> str | None:
    """The component a process belongs to, from its command line (None: not one we count)."""
    return next((name for name, needle in CPU_COMPONENTS if needle in command_line), None)


def process_cpu_ticks(stat_line: str) -> tuple[int, int]:
    """(own, reaped children's) CPU ticks from ``/proc/PID/stat``: utime+stime, cutime+cstime.

    Fields are counted after the command's closing parenthesis (the command may hold spaces).
    """
    utime, stime, cutime, cstime = (int(f) for f in stat_line.rsplit(")", 1)[1].split()[11:15])
    return utime + stime, cutime + cstime


def machine_busy_ticks(proc_stat: str) -> int:
    """CPU ticks the machine spent busy since boot: ``/proc/stat``'s first line minus idle and iowait."""
    ticks = [int(x) for x in proc_stat.split("\n", 1)[0].split()[1:]]
    return sum(ticks) - ticks[3] - ticks[4]


def rss_bytes(proc_status: str) -> int:
    """Resident memory from ``/proc/PID/status`` (ValueError for a process without, e.g. a zombie)."""
    match = re.search(r"^VmRSS:\s+(\d+)", proc_status, re.M)
    if match is None:
        raise ValueError("no VmRSS")
    return int(match.group(1)) * 1024


def _command_line(pid: int | str) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


# -- CPU seconds per component ---------------------------------------------------------------------


def cpu_snapshot() -> dict[str, Any]:
    """CPU seconds so far per component (self + reaped children), and the machine's busy total."""
    tick = os.sysconf("SC_CLK_TCK")
    per_pid: dict[int, tuple[str, float]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            component = component_of(_command_line(stat.parent.name))
            if component:
                pid = int(stat.parent.name)
                own, children = process_cpu_ticks(stat.read_text())
                if pid == os.getpid():
                    # The measuring scripts are this process's children: their CPU is theirs.
                    per_pid[pid] = (component, own / tick)
                    per_pid[-pid] = (MEASURED_SCRIPTS, children / tick)
                else:
                    per_pid[pid] = (component, (own + children) / tick)
    return {"pids": per_pid, "busy_s": machine_busy_ticks(Path("/proc/stat").read_text()) / tick}


def cpu_used(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """CPU seconds per component between two snapshots (processes alive at the end; those that
    started in between count from zero), and the machine's busy CPU seconds."""
    used: Counter[str] = Counter()
    for pid, (component, seconds) in after["pids"].items():
        earlier = before["pids"].get(pid)
        start = earlier[1] if earlier and earlier[0] == component else 0.0
        used[component] += max(0.0, seconds - start)
    return {
        "machine_busy_s": round(after["busy_s"] - before["busy_s"], 1),
        "by_component_s": {name: round(value, 1) for name, value in used.most_common()},
    }


# -- RSS of the Airflow task processes -------------------------------------------------------------


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
    return rss_bytes(Path(f"/proc/{pid}/status").read_text()), _command_line(pid).strip()


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
                    except (OSError, ValueError):  # gone, or a zombie
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
