"""An Airflow run's task instances (as the REST API returns them) as seconds after its trigger."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def seconds_after(stamp: str | None, origin: datetime) -> float | None:
    """Seconds from ``origin`` to an ISO time stamp (None for none)."""
    if not stamp:
        return None
    return round((datetime.fromisoformat(stamp.replace("Z", "+00:00")) - origin).total_seconds(), 2)


def task_timeline(run: dict[str, Any], tis: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each TI's queued/start/end, in seconds after the run was queued (the trigger)."""
    origin = datetime.fromisoformat(run["queued_at"].replace("Z", "+00:00"))
    rows = [
        {
            "task": ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""),
            "state": ti["state"],
            "try": ti.get("try_number"),
            "queued_s": seconds_after(ti.get("queued_when"), origin),
            "start_s": seconds_after(ti.get("start_date"), origin),
            "end_s": seconds_after(ti.get("end_date"), origin),
        }
        for ti in tis
    ]
    return sorted(rows, key=lambda row: (row["start_s"] is None, row["start_s"] or 0))


def step_spans(timeline: list[dict[str, Any]]) -> dict[str, list[float | None]]:
    """[start, end] of each step (a mapped step: first start, last end)."""
    stages: dict[str, list[float | None]] = {}
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


def idle_seconds(timeline: list[dict[str, Any]], end: float | None) -> float | None:
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
