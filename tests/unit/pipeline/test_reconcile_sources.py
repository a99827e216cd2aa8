"""Unit tests of api_poller.pipeline.reconcile.reconcile_source_output: a source job's output
against what its fetch tasks fetched (moto's S3, in process)."""

from __future__ import annotations

import json
from typing import Any

from api_poller.core.keys import processed_key
from api_poller.core.planning import page_id
from api_poller.pipeline.reconcile import reconcile_source_output
from api_poller.settings import PollerSettings
from tests.unit.pipeline.conftest import MotoStack

BUCKET = PollerSettings().processed_bucket
JOB = "manual__2026-12-02T05:00:00+00:00"
PAGES = [page_id(n) for n in (1, 2, 3)]


def write_page(s3: Any, page: str, keys: list[Any], field: str = "sku") -> None:
    body = "".join(json.dumps({field: key}) + "\n" for key in keys).encode()
    s3.put_object(
        Bucket=BUCKET, Key=processed_key(JOB, page), Body=body, Metadata={"records": str(len(keys))}
    )


def reconcile(stack: MotoStack, **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "s3_client": stack.s3,
        "processed_bucket": BUCKET,
        "job_id": JOB,
        "pages": PAGES,
        "fetched": dict.fromkeys(PAGES, 2),
        "written": {},
        "primary_key": "sku",
        "read_output": True,
        **overrides,
    }
    return reconcile_source_output(**arguments)


def test_a_job_whose_pages_hold_what_was_fetched_is_complete(stack: MotoStack) -> None:
    for number, page in enumerate(PAGES):
        write_page(stack.s3, page, [f"a{number}", f"b{number}"])

    result = reconcile(stack)

    assert result["complete"] is True
    assert result["totalRecords"] == result["recordsWritten"] == result["uniqueRecords"] == 6
    assert result["mode"] == "full"


def test_duplicate_ids_are_found_only_with_a_primary_key_in_full_mode(stack: MotoStack) -> None:
    for page in PAGES:
        write_page(stack.s3, page, ["same", f"other-{page}"])

    with_key = reconcile(stack)
    assert with_key["complete"] is False
    assert with_key["duplicateIds"] == ["same"] and with_key["duplicateIdsCount"] == 1

    for counts_only in (reconcile(stack, primary_key=None), reconcile(stack, read_output=False)):
        assert counts_only["mode"] == "counts"
        assert counts_only["duplicateIdsCount"] == 0 and counts_only["complete"] is True


def test_a_page_missing_written_short_or_never_saved_makes_the_job_incomplete(stack: MotoStack) -> None:
    write_page(stack.s3, PAGES[0], ["a", "b"])
    write_page(stack.s3, PAGES[1], ["c"])  # one record short of what was fetched

    result = reconcile(stack, fetched={PAGES[0]: 2, PAGES[1]: 2, PAGES[2]: None}, read_output=False)

    assert result["complete"] is False
    assert result["pagesMissing"] == [PAGES[2]]
    assert result["pagesNeverSaved"] == [PAGES[2]]
    assert result["pagesWithWrongCount"] == {PAGES[1]: {"fetched": 2, "written": 1}}
    assert result["recordsMissing"] == 1


def test_pages_a_retried_fetch_found_processed_count_as_fetched_what_they_hold(stack: MotoStack) -> None:
    for page in PAGES:
        write_page(stack.s3, page, [f"{page}-a", f"{page}-b"])

    result = reconcile(stack, fetched={PAGES[0]: 2}, resumed=frozenset(PAGES[1:]))

    assert result["complete"] is True and result["totalRecords"] == 6
