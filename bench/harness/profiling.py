"""Optional py-spy profiles of an Airflow run (``--profile SECONDS``), and what they show."""

from __future__ import annotations

import signal
import subprocess
import threading
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api_poller import names

from .console import log
from .sampling import TaskRssSampler

if TYPE_CHECKING:
    from api_poller_dev.local_airflow import AirflowServer


class Profiler(threading.Thread):
    """py-spy ``record`` (non-blocking: it reads the process's memory, no network) on the first task
    process of each chosen task, plus the scheduler and the api-server, while a run goes on."""

    def __init__(
        self,
        pyspy: Path,
        airflow: AirflowServer,
        run_id: str,
        sampler: TaskRssSampler,
        out: Path,
        seconds: int,
    ) -> None:
        super().__init__(daemon=True, name="profiler")
        self.pyspy, self.airflow, self.run_id, self.sampler = pyspy, airflow, run_id, sampler
        self.out, self.seconds = out, seconds
        self.targets: dict[str, int | None] = dict.fromkeys(
            (names.FETCH_TASK, names.CONSUME_TASK_ID, names.REPORT_TASK)
        )
        self.recorders: list[subprocess.Popen[bytes]] = []
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
                tis = self.airflow.task_instances(names.POLLER_DAG_ID, self.run_id)
            except Exception:
                continue
            by_id = {ti["id"]: ti for ti in tis}
            for ti_id, pid in list(self.sampler.pids.items()):
                ti = by_id.get(ti_id)
                if ti and ti["task_id"] in self.targets and self.targets[ti["task_id"]] is None:
                    if ti["task_id"] == names.FETCH_TASK and ti["map_index"] != 0:
                        continue
                    self.targets[ti["task_id"]] = pid
                    self._record(ti["task_id"].rsplit(".", 1)[-1], pid)  # without its task group

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
    leaves: Counter[str] = Counter()
    categories: Counter[str] = Counter()
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
