"""Completeness check after processing: does the output hold every planned record exactly once?"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from api_poller.aws.objects import stored_page_ids
from api_poller.core.keys import processed_key, processed_prefix
from api_poller.core.planning import PageTask, seed_batch_pages

SAMPLE = 20


def _read_keys(s3_client: Any, bucket: str, key: str, primary_key: str) -> list[Any]:
    """The primary key values of one processed page, read line by line (never the whole object)."""
    body = s3_client.get_object(Bucket=bucket, Key=key)["Body"]
    return [json.loads(line).get(primary_key) for line in body.iter_lines() if line.strip()]


def _stored_count(s3_client: Any, bucket: str, key: str) -> int:
    """The record count the process step stored with a processed object."""
    return int(s3_client.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get("records", 0))


def _count_output(
    s3_client: Any,
    bucket: str,
    job_id: str,
    present: list[str],
    known: Mapping[str, int],
    primary_key: str | None,
    workers: int,
) -> tuple[dict[str, int], Counter[Any]]:
    """Records per landed page and, with a ``primary_key``, how often each key value occurs.

    With a key every processed object of ``present`` is read back; without one the ``known``
    counts (the consumer's records) are used and the others come from the objects' metadata.
    """
    per_page = {page: int(known[page]) for page in present if known.get(page) is not None}
    id_counts: Counter[Any] = Counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        if primary_key is not None:
            keys = [processed_key(job_id, page) for page in present]
            read = pool.map(lambda k: _read_keys(s3_client, bucket, k, primary_key), keys)
            for page, ids in zip(present, read, strict=True):
                per_page[page] = len(ids)
                id_counts.update(ids)
        else:
            # Pages another consumer (or an earlier try) processed: their count is on the object.
            unknown = [page for page in present if page not in per_page]
            keys = [processed_key(job_id, page) for page in unknown]
            counts = pool.map(lambda k: _stored_count(s3_client, bucket, k), keys)
            per_page.update(zip(unknown, counts, strict=True))
    return per_page, id_counts


def reconcile_output(
    *,
    s3_client: Any,
    processed_bucket: str,
    job_id: str,
    pages: list[PageTask],
    total_records: int,
    statuses: Mapping[str, Mapping[str, Any]],
    read_output: bool = True,
    workers: int = 16,
) -> dict[str, Any]:
    """Compare what landed with what was planned.

    With ``read_output`` every processed object is read back to find duplicate ids and pages
    whose record count differs from the plan; otherwise counts come from the page statuses (or
    the processed object's metadata) and duplicate ids across pages are not looked for.
    """
    landed = stored_page_ids(s3_client, processed_bucket, processed_prefix(job_id))
    planned = {page.page_id: page for page in pages}
    pages_missing = sorted(set(planned) - landed)
    known = {page: record["records"] for page, record in statuses.items() if "records" in record}
    per_page, id_counts = _count_output(
        s3_client, processed_bucket, job_id, sorted(set(planned) & landed), known,
        "id" if read_output else None, workers,
    )  # fmt: skip
    duplicates = sorted((i for i, n in id_counts.items() if n > 1), key=str)
    wrong_counts = {
        page: {"planned": planned[page].count, "written": written}
        for page, written in sorted(per_page.items())
        if written != planned[page].count
    }
    records_written = sum(per_page.values())
    unique = len(id_counts) if read_output else records_written
    return {
        "mode": "full" if read_output else "counts",
        "plannedPages": len(planned),
        "pagesWithOutput": len(set(planned) & landed),
        "pagesMissing": pages_missing[:SAMPLE],
        "pagesMissingCount": len(pages_missing),
        "totalRecords": total_records,
        "recordsWritten": records_written,
        "uniqueRecords": unique,
        "duplicateIdsCount": len(duplicates),
        "duplicateIds": duplicates[:SAMPLE],
        "recordsMissing": max(0, total_records - unique),
        "pagesWithWrongCount": dict(list(wrong_counts.items())[:SAMPLE]),
        "complete": not pages_missing and not duplicates and not wrong_counts and unique == total_records,
    }


def reconcile_job(
    settings: Any,
    job: Mapping[str, Any],
    plan: list[Mapping[str, Any]],
    s3_client: Any,
    statuses: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """Reconcile a job: its plan step's ``job`` and return value, merged ``statuses``, S3 output."""
    return reconcile_output(
        s3_client=s3_client,
        processed_bucket=settings.processed_bucket,
        job_id=job["job_id"],
        pages=[page for entry in plan for page in seed_batch_pages(entry["batch"])],
        total_records=job["total_records"],
        statuses=statuses,
        read_output=settings.reconcile == "full",
    )


# --- sources ----------------------------------------------------------------------------------


def reconcile_source_output(
    *,
    s3_client: Any,
    processed_bucket: str,
    job_id: str,
    pages: list[str],
    fetched: Mapping[str, int | None],
    written: Mapping[str, int],
    primary_key: str | None,
    read_output: bool,
    resumed: frozenset[str] = frozenset(),
    workers: int = 16,
) -> dict[str, Any]:
    """Compare a source job's output with what its fetch tasks fetched.

    ``pages`` are the job's pages (planned, or those the walk recorded); ``fetched`` each page's
    record count as its fetch task saved it (None: never saved); ``written`` each page's count as
    the consumer recorded it (pages missing there are read from the processed object's metadata).
    With ``read_output`` and a ``primary_key`` every processed object is read back to count
    duplicate ids across the job; without a primary key, records are only counted. ``resumed``
    pages were found processed by a retried fetch task, which did not fetch them again: their
    output is their count.
    """
    landed = stored_page_ids(s3_client, processed_bucket, processed_prefix(job_id))
    expected = set(pages)
    present = sorted(expected & landed)
    pages_missing = sorted(expected - landed)
    full = read_output and primary_key is not None
    per_page, id_counts = _count_output(
        s3_client, processed_bucket, job_id, present, written, primary_key if full else None, workers
    )
    fetched = {
        **{page: per_page.get(page) for page in resumed if page in expected},
        **{page: count for page, count in fetched.items() if count is not None},
    }
    never_saved = sorted(page for page in expected if fetched.get(page) is None)
    wrong_counts = {
        page: {"fetched": fetched.get(page), "written": count}
        for page, count in sorted(per_page.items())
        if fetched.get(page) is not None and count != fetched.get(page)
    }
    duplicates = sorted((i for i, n in id_counts.items() if n > 1), key=str)
    records_fetched = sum(int(fetched.get(page) or 0) for page in expected)
    records_written = sum(per_page.values())
    unique = len(id_counts) if full else records_written
    return {
        "mode": "full" if full else "counts",
        "primaryKey": primary_key,
        "plannedPages": len(expected),
        "pagesWithOutput": len(present),
        "pagesMissing": pages_missing[:SAMPLE],
        "pagesMissingCount": len(pages_missing),
        "pagesNeverSaved": never_saved[:SAMPLE],
        "totalRecords": records_fetched,
        "recordsWritten": records_written,
        "uniqueRecords": unique,
        "duplicateIdsCount": len(duplicates),
        "duplicateIds": duplicates[:SAMPLE],
        "recordsMissing": max(0, records_fetched - records_written),
        "pagesWithWrongCount": dict(list(wrong_counts.items())[:SAMPLE]),
        "complete": not pages_missing
        and not never_saved
        and not wrong_counts
        and not duplicates
        and records_written == records_fetched,
    }
