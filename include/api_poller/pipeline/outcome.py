"""How a job ended, and the alert that says so: decided once, at the end of the run.

* **complete**: the report's summary says complete and no step of the run failed;
* **incomplete**: the report ran and found failed pages or missing records;
* **failed**: there is no summary (the plan failed, or the report step itself), or the report or a
  step after it failed although the summary was complete (a fetch task that failed before the
  consumer processed its pages anyway does not count: the report saw the job whole).

The alert's text is built here, without Airflow: the job, its outcome, the plan's error, the failed
pages grouped by reason and the links to follow. It is bounded (``MAX_REASONS`` groups, page ids
cut at ``MAX_PAGES_PER_REASON`` per group, each reason at ``MAX_REASON_CHARS``), so a job with
10,000 failed pages still sends a short message. Reasons are the page statuses' (credential-free,
redacted by the client); query strings are dropped from them here too, which also lets one
reason group the pages it failed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from api_poller.core.lifecycle import PageState

COMPLETE, INCOMPLETE, FAILED = "complete", "incomplete", "failed"

MAX_REASONS = 10
MAX_PAGES_PER_REASON = 5
MAX_REASON_CHARS = 300
MAX_SUBJECT_CHARS = 100  # SNS's limit for a subject
_QUERY = re.compile(r"\?[^\s'\"]*")
_PAGE_ID = re.compile(r"\bpage-\d+\b")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")
MISSING_OUTPUT = "no output was written for it (the report found it missing)"


def decide_outcome(summary: Mapping[str, Any] | None, failed_from_the_report_on: Sequence[str]) -> str:
    """complete, incomplete or failed (see the module's docstring); ``failed_from_the_report_on``:
    the report and the steps after it that failed."""
    if not summary:
        return FAILED
    if not summary.get("complete"):
        return INCOMPLETE
    return FAILED if failed_from_the_report_on else COMPLETE


def failed_pages_of(
    latest: Mapping[str, Mapping[str, Any]], summary: Mapping[str, Any] | None
) -> dict[str, str]:
    """Each failed page and why: the FailedToComplete pages of the run's page statuses (the fetch
    tasks' and the consumer's, merged), then pages the report's reconciliation found without
    output, then the summary's own list."""
    failed = {
        page: str(record.get("reason") or "unknown")
        for page, record in latest.items()
        if record.get("state") == PageState.FAILED_TO_COMPLETE
    }
    reconciliation = (summary or {}).get("reconciliation") or {}
    for page in reconciliation.get("pagesMissing") or []:
        failed.setdefault(str(page), MISSING_OUTPUT)
    for page, reason in ((summary or {}).get("failedPages") or {}).items():
        failed.setdefault(str(page), str(reason))
    return failed


def reason_group(reason: str) -> str:
    """A failed page's reason with what differs from page to page (query strings, page ids) left
    out, so that pages failed for one reason are listed together."""
    return _PAGE_ID.sub("<page>", _QUERY.sub("", reason)).strip()


def group_failed_pages(failed: Mapping[str, str]) -> list[tuple[str, list[str]]]:
    """(reason, pages) pairs, the reason failing the most pages first."""
    groups: dict[str, list[str]] = {}
    for page, reason in sorted(failed.items()):
        groups.setdefault(reason_group(str(reason)), []).append(page)
    return sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class JobEnd:
    """What the end of a job's run knows: its outcome and what led to it."""

    job_id: str
    dag_id: str
    source: str
    outcome: str
    summary: Mapping[str, Any] | None = None
    plan_error: str | None = None
    failed_tasks: tuple[str, ...] = ()
    # Pages given up on, and why (``failed_pages_of``); the pages by state (the progress document).
    failed_pages: Mapping[str, str] = field(default_factory=dict)
    progress: Mapping[str, int] = field(default_factory=dict)
    # Where to look: name -> URL (the progress page, the job in the job API, the run in Airflow).
    links: Mapping[str, str] = field(default_factory=dict)


def alert_subject(end: JobEnd) -> str:
    """One printable line of at most 100 characters (SNS's rules for a subject)."""
    text = f"api-poller: {end.source} job {end.outcome}: {end.job_id}"
    return _cut(_UNPRINTABLE.sub("?", text), MAX_SUBJECT_CHARS)


def alert_message(end: JobEnd) -> str:
    """The alert's text: the job, why it is not complete, the failed pages by reason, the links."""
    lines = [
        f"Job {end.job_id} of source {end.source} (DAG {end.dag_id}) ended {end.outcome.upper()}.",
        "",
    ]
    if end.plan_error:
        lines += [f"The plan failed: {_cut(end.plan_error, MAX_REASON_CHARS * 2)}", ""]
    summary = end.summary or {}
    progress = end.progress or summary.get("progress") or {}
    if progress:
        lines.append(
            f"Pages: {progress.get('SuccessfullyCompleted', 0)} of {progress.get('Total', 0)} completed, "
            f"{progress.get('FailedToComplete', 0)} failed."
        )
    if summary:
        lines.append(
            f"Records written: {summary.get('recordsWritten', 0)} of {summary.get('totalRecords', 0)}."
        )
        reconciliation = summary.get("reconciliation") or {}
        walk = reconciliation.get("walk") if isinstance(reconciliation, Mapping) else None
        if isinstance(walk, Mapping) and not walk.get("complete"):
            ending = f"{walk.get('stop_reason')} {walk.get('stop_detail') or ''}".rstrip()
            lines.append(f"The walk ended early: {ending}")
    failed = end.failed_pages
    if failed:
        groups = group_failed_pages(failed)
        lines += ["", f"Failed pages ({len(failed)}), by reason:"]
        for reason, pages in groups[:MAX_REASONS]:
            shown = ", ".join(pages[:MAX_PAGES_PER_REASON])
            hidden = len(pages) - MAX_PAGES_PER_REASON
            more = f" and {hidden} more" if hidden > 0 else ""
            lines.append(f"- {len(pages)} page(s): {_cut(reason, MAX_REASON_CHARS)}")
            lines.append(f"  {shown}{more}")
        if len(groups) > MAX_REASONS:
            rest = sum(len(pages) for _, pages in groups[MAX_REASONS:])
            lines.append(f"- {len(groups) - MAX_REASONS} more reason(s), {rest} page(s): see the job's pages")
    if end.failed_tasks:
        lines += ["", f"Failed steps: {', '.join(end.failed_tasks)} (see their logs in Airflow)."]
    if end.links:
        lines += ["", *(f"{name}: {url}" for name, url in end.links.items())]
    return "\n".join(lines) + "\n"
