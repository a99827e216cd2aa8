"""Where a job's data lives in S3. Keys are deterministic so a rerun overwrites, never duplicates."""

from __future__ import annotations

import functools
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")


@functools.lru_cache(maxsize=256)  # called for every key of every page: a job has one id
def safe_job_id(job_id: str) -> str:
    """A job id (the DAG run id) made safe for S3 keys and SQS attributes.

    Run ids such as ``manual__2026-11-28T01:00:00+00:00`` carry ``:`` and ``+``; every run of
    characters outside ``[A-Za-z0-9._=-]`` becomes one ``_``.
    """
    if not job_id:
        raise ValueError("job id is empty")
    cleaned = _UNSAFE.sub("_", job_id).strip("._")
    if not cleaned:
        raise ValueError(f"job id {job_id!r} has no usable characters")
    return cleaned[:200]


def raw_prefix(job_id: str) -> str:
    return f"jobs/{safe_job_id(job_id)}/raw/"


def raw_payload_key(job_id: str, page_id: str) -> str:
    """The raw page as the partner API served it: ``jobs/<job>/raw/<page>.json`` in the raw bucket."""
    return f"{raw_prefix(job_id)}{page_id}.json"


def processing_error_key(job_id: str, page_id: str) -> str:
    """Why the page's last processing attempt failed (raw bucket), readable by any consumer."""
    return f"jobs/{safe_job_id(job_id)}/errors/{page_id}.json"


def processed_prefix(job_id: str) -> str:
    return f"jobs/{safe_job_id(job_id)}/records/"


def processed_key(job_id: str, page_id: str) -> str:
    """A page's records, one JSON object per line: ``jobs/<job>/records/<page>.ndjson``."""
    return f"{processed_prefix(job_id)}{page_id}.ndjson"


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def slow_down_key(job_id: str) -> str:
    """The job's "slow down until" signal after a 429 (raw bucket), read by all its fetch tasks.

    Under the raw prefix so the retention removes it with the job's leftovers; its name starts
    with ``_`` so it is never taken for a page (page ids are ``page-NNNNNN``).
    """
    return f"{raw_prefix(job_id)}_slow_down.json"


def status_checkpoint_prefix(job_id: str) -> str:
    return f"jobs/{safe_job_id(job_id)}/status/"


def status_checkpoint_key(job_id: str, task_id: str, map_index: int) -> str:
    """One task instance's last published page statuses (raw bucket), read back by its next try:
    ``jobs/<job>/status/<task id>.<map index>.json``.

    Beside the raw pages (a job's raw folder empties as its pages are processed), and removed by
    the retention with the job's other leftovers.
    """
    if not task_id or "/" in task_id:
        raise ValueError(f"task id {task_id!r} cannot name a status checkpoint")
    return f"{status_checkpoint_prefix(job_id)}{task_id}.{map_index}.json"


def status_checkpoint_chunk_key(job_id: str, task_id: str, map_index: int, chunk: int) -> str:
    """One detail chunk of a task instance's checkpoint (``core.status_document``):
    ``jobs/<job>/status/chunks/<task id>.<map index>/<chunk>.json``."""
    status_checkpoint_key(job_id, task_id, map_index)  # the same checks
    return f"{status_checkpoint_prefix(job_id)}chunks/{task_id}.{map_index}/{chunk:05d}.json"


def watermark_key(source: str) -> str:
    """A source's incremental watermark (processed bucket): ``state/<source>/watermark.json``."""
    if not source or "/" in source or source in (".", ".."):
        raise ValueError(f"source name {source!r} cannot name a watermark")
    return f"state/{source}/watermark.json"


# --- Published snapshots (processed bucket), see docs/output.md --------------------------------
# Under their own top-level prefix: a source may be named like any other top-level folder
# (``jobs``, ``state``), so ``<source>/`` alone could collide with them.
SNAPSHOTS_ROOT = "snapshots/"
MANIFEST_NAME = "_manifest.json"


def _checked_source(source: str) -> str:
    if not source or "/" in source or source in (".", ".."):
        raise ValueError(f"source name {source!r} cannot name a snapshot folder")
    return source


def source_snapshots_prefix(source: str) -> str:
    """Every snapshot of a source, one table: ``snapshots/<source>/``."""
    return f"{SNAPSHOTS_ROOT}{_checked_source(source)}/"


def snapshot_prefix(source: str, dt: str, job_id: str) -> str:
    """One job's snapshot: ``snapshots/<source>/dt=YYYY-MM-DD/job=<safe job id>/``."""
    return f"{source_snapshots_prefix(source)}dt={dt}/job={safe_job_id(job_id)}/"


def snapshot_part_key(prefix: str, index: int, extension: str) -> str:
    """A data file of a snapshot: ``<prefix>part-00000.<ext>`` (numbered in page order)."""
    return f"{prefix}part-{index:05d}.{extension}"


def snapshot_manifest_key(prefix: str) -> str:
    """The snapshot's manifest, written last: ``<prefix>_manifest.json`` (``_``: query engines skip it)."""
    return f"{prefix}{MANIFEST_NAME}"


def latest_snapshot_key(source: str) -> str:
    """The pointer to a source's latest published snapshot: ``snapshots/<source>/_latest.json``."""
    return f"{source_snapshots_prefix(source)}_latest.json"


def published_marker_key(job_id: str) -> str:
    """Says that the job's snapshot is published (processed bucket): ``jobs/<job>/_published.json``.

    Written by the publish step as its last write; the retention removes a job's per-page records
    only once it exists, and a rerun of the step finds it and publishes nothing again.
    """
    return f"jobs/{safe_job_id(job_id)}/_published.json"
