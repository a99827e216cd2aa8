"""What ``local-sync`` shows: a live progress display, plain lines or JSON lines, and a summary.

The pure functions turn a job's progress document and page statuses into numbers and text; the
three reporters show them: ``LiveReporter`` (a terminal: rich's live display), ``PlainReporter``
(stdout is a pipe or a file: one line per change, no control codes) and ``JsonReporter``
(``--json``: one JSON object per line, for scripts and CI).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Protocol

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

STATES = ["Started", "PayloadSaved", "Enqueued", "SuccessfullyCompleted", "FailedToComplete"]


@dataclass(frozen=True)
class Snapshot:
    """The job at one moment: pages per state (and Total), retries and elapsed seconds."""

    counts: Mapping[str, int | bool]
    retries: int
    elapsed: float

    @property
    def total(self) -> int:
        return int(self.counts.get("Total", 0))

    @property
    def failed(self) -> int:
        return int(self.counts.get("FailedToComplete", 0))

    @property
    def finished(self) -> int:
        """Pages in a final state (completed or failed)."""
        return int(self.counts.get("SuccessfullyCompleted", 0)) + self.failed

    @property
    def pages_per_second(self) -> float:
        return self.finished / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def seconds_left(self) -> float | None:
        """At the rate so far; None while nothing has finished or the total is still unknown."""
        if self.counts.get("TotalKnown") is False or not self.finished or not self.total:
            return None
        return max(self.total - self.finished, 0) / self.pages_per_second


@dataclass(frozen=True)
class Failure:
    reason: str
    pages: list[str]


@dataclass
class Summary:
    """What the run produced, for the closing summary."""

    dag_id: str
    run_id: str
    state: str
    complete: bool
    counts: Mapping[str, int | bool]
    records: int
    files: int
    s3_location: str
    local_copy: str
    elapsed: float
    log_path: str
    failures: list[Failure] = field(default_factory=list)

    @property
    def pages_written(self) -> int:
        return int(self.counts.get("SuccessfullyCompleted", 0))


def count_retries(statuses: Mapping[str, Mapping[str, Any]]) -> int:
    """Pages fetched more than once, or whose latest record carries a fetch error."""
    return sum(
        1 for record in statuses.values() if int(record.get("attempts") or 1) > 1 or record.get("error")
    )


def failures_by_reason(statuses: Mapping[str, Mapping[str, Any]]) -> list[Failure]:
    """Failed pages grouped by their reason, the most frequent reason first."""
    grouped: dict[str, list[str]] = {}
    for page, record in sorted(statuses.items()):
        if record.get("state") == "FailedToComplete":
            grouped.setdefault(str(record.get("reason") or "no reason recorded"), []).append(page)
    order = Counter({reason: len(pages) for reason, pages in grouped.items()})
    return [Failure(reason, grouped[reason]) for reason, _ in order.most_common()]


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = round(seconds)
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def total_text(snapshot: Snapshot) -> str:
    known = snapshot.counts.get("TotalKnown") is not False
    return str(snapshot.total) if known else f"{snapshot.total}+ (walking)"


def progress_line(snapshot: Snapshot) -> str:
    """One plain line: pages by state, rate, elapsed, time left, retries and failures."""
    states = " ".join(f"{state}={int(snapshot.counts.get(state, 0))}" for state in STATES)
    return (
        f"progress: {snapshot.finished}/{total_text(snapshot)} pages done | {states} | "
        f"{snapshot.pages_per_second:.1f} pages/s | elapsed {format_duration(snapshot.elapsed)} | "
        f"left {format_duration(snapshot.seconds_left)} | retries {snapshot.retries} | "
        f"failures {snapshot.failed}"
    )


def progress_event(snapshot: Snapshot) -> dict[str, Any]:
    left = snapshot.seconds_left
    return {
        "event": "progress",
        "pages": dict(snapshot.counts),
        "finished": snapshot.finished,
        "pages_per_second": round(snapshot.pages_per_second, 2),
        "elapsed_seconds": round(snapshot.elapsed, 1),
        "seconds_left": None if left is None else round(left, 1),
        "retries": snapshot.retries,
        "failures": snapshot.failed,
    }


def summary_lines(summary: Summary) -> list[str]:
    """The closing summary, as plain lines."""
    verdict = "complete" if summary.complete else f"NOT complete (run {summary.state})"
    lines = [
        f"job {summary.run_id} ({summary.dag_id}): {verdict} in {format_duration(summary.elapsed)}",
        f"written: {summary.records} records from {summary.pages_written} of "
        f"{int(summary.counts.get('Total', 0))} pages ({summary.files} files)",
    ]
    if summary.failures:
        failed = sum(len(failure.pages) for failure in summary.failures)
        lines.append(f"failed pages: {failed}")
        for failure in summary.failures:
            shown = ", ".join(failure.pages[:5]) + (", ..." if len(failure.pages) > 5 else "")
            lines.append(f"  {len(failure.pages)} x {failure.reason} (pages {shown})")
    lines += [
        f"output: {summary.s3_location} (local copy: {summary.local_copy})",
        f"logs: less {summary.log_path}",
    ]
    return lines


def summary_event(summary: Summary) -> dict[str, Any]:
    document = asdict(summary)
    document["counts"] = dict(summary.counts)
    document["pages_written"] = summary.pages_written
    document["elapsed"] = round(summary.elapsed, 1)
    return {"event": "summary", **document}


class Reporter(Protocol):
    every_tick: bool  # redraw each second (elapsed moves), not only when the job's numbers change

    def info(self, message: str, **fields: Any) -> None: ...
    def update(self, snapshot: Snapshot) -> None: ...
    def finish(self, summary: Summary) -> None: ...


class PlainReporter:
    """Plain text lines, one per change: for a pipe, a file or a CI log."""

    every_tick = False

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def info(self, message: str, **fields: Any) -> None:
        self._print(message)

    def update(self, snapshot: Snapshot) -> None:
        self._print(progress_line(snapshot))

    def finish(self, summary: Summary) -> None:
        for line in summary_lines(summary):
            self._print(line)


class JsonReporter(PlainReporter):
    """One JSON object per line: ``info``, ``progress`` events and a final ``summary``."""

    def info(self, message: str, **fields: Any) -> None:
        self._print(json.dumps({"event": "info", "message": message, **fields}))

    def update(self, snapshot: Snapshot) -> None:
        self._print(json.dumps(progress_event(snapshot)))

    def finish(self, summary: Summary) -> None:
        self._print(json.dumps(summary_event(summary)))


def progress_table(snapshot: Snapshot) -> Table:
    table = Table(title="api_poller job", show_header=False, expand=False)
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    for state in STATES:
        table.add_row(state, str(int(snapshot.counts.get(state, 0))))
    table.add_row("Total", total_text(snapshot))
    table.add_row("pages/s", f"{snapshot.pages_per_second:.1f}")
    table.add_row("elapsed", format_duration(snapshot.elapsed))
    table.add_row("time left", format_duration(snapshot.seconds_left))
    table.add_row("retries", str(snapshot.retries))
    table.add_row("failures", Text(str(snapshot.failed), style="red" if snapshot.failed else ""))
    return table


class LiveReporter:
    """A live display on a terminal: the progress table redrawn in place."""

    every_tick = True

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Live | None = None
        self.lock = threading.Lock()

    def info(self, message: str, **fields: Any) -> None:
        self.console.print(message, highlight=False, soft_wrap=True)

    def update(self, snapshot: Snapshot) -> None:
        with self.lock:
            if self.live is None:
                # Live would otherwise print what Airflow writes to sys.stdout/stderr (the log
                # file) above the display.
                self.live = Live(
                    progress_table(snapshot),
                    console=self.console,
                    refresh_per_second=4,
                    redirect_stdout=False,
                    redirect_stderr=False,
                )
                self.live.start()
            else:
                self.live.update(progress_table(snapshot))

    def finish(self, summary: Summary) -> None:
        with self.lock:
            if self.live is not None:
                self.live.stop()
        style = "bold green" if summary.complete else "bold red"
        lines = summary_lines(summary)
        text = Group(Text(lines[0], style=style), *(Text(line) for line in lines[1:]))
        self.console.print(text, soft_wrap=True)  # paths stay whole, to copy


def reporter_for(out: IO[str], as_json: bool) -> Reporter:
    """JSON lines with --json; else a live display on a terminal, plain lines elsewhere."""
    if as_json:
        return JsonReporter(out)
    console = Console(file=out)
    return LiveReporter(console) if console.is_terminal else PlainReporter(out)
