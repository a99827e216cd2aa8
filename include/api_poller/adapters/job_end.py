"""The run's last step, ``end_of_job``: the job's outcome, its metrics and (if asked) one alert.

Why a task and not a DAG ``on_failure_callback``: on Airflow 3.3 DAG callbacks run in the
dag-processor, far from the run's XComs (the failed pages and their reasons), and only when the
run fails, while an incomplete job may end in a successful run (``API_POLLER_ON_INCOMPLETE=warn``).
A task reads the summary like any step, logs in the run, and runs exactly once per run:

* it is a **teardown** with no setups: it runs once every other step has ended, whatever their
  outcome (trigger rule all-done), and Airflow leaves teardowns out of the run's state, so the run
  still fails or succeeds on the report (and whatever follows it);
* it is placed after every leaf of the DAG when the DAG is wired (``run_last``), so a step added
  after the report is waited for too;
* it has **no retries**: a retry could send a second message if the first try died after
  sending. botocore retries SNS's own transient errors within the one try. A run cleared or
  redriven by an operator ends again, and tells again.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import get_current_context, task

from api_poller import names

if TYPE_CHECKING:
    from airflow.sdk import DAG
    from airflow.sdk.definitions.xcom_arg import XComArg
    from airflow.sdk.types import RuntimeTaskInstanceProtocol

    from api_poller.settings import PollerSettings
    from api_poller.sources.spec import AlertsSpec

log = logging.getLogger(__name__)

# Only the steps that failed themselves: the ones skipped because of them (upstream_failed) are no news.
FAILED_TI_STATES = frozenset({"failed"})


def failed_steps(ti: RuntimeTaskInstanceProtocol) -> tuple[str, ...]:
    """The steps of this run that failed (every one but this task)."""
    states: dict[str, Any] = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
    failed = (step for step, state in states.items() if state in FAILED_TI_STATES and step != ti.task_id)
    return tuple(sorted(failed))


def from_the_report_on(ti: RuntimeTaskInstanceProtocol) -> set[str]:
    """The report and the steps after it: the ones whose failure fails a complete job."""
    dag = ti.task.dag
    return {names.REPORT_TASK, *dag.get_task(names.REPORT_TASK).get_flat_relative_ids(upstream=False)}


def job_links(dag_id: str, run_id: str) -> dict[str, str]:
    """Where to look at the job: the progress page, the job in the job API, the run in Airflow.
    Absolute with ``[api] base_url`` set, else paths on the Airflow server."""
    from urllib.parse import quote

    from airflow.sdk.configuration import conf

    from api_poller.jobs_api.page import URL_PREFIX, run_path

    base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    ids = f"dag_id={quote(dag_id, safe='')}"
    job = f"{base}{URL_PREFIX}/jobs/{quote(run_id, safe='')}?{ids}"
    return {
        # The page opens the job's detail from its address.
        "Progress page": f"{base}{URL_PREFIX}/?job={quote(run_id, safe='')}&{ids}",
        "Job": job,
        "Airflow run": f"{base}{run_path(dag_id, run_id)}",
    }


def _seconds_since(start: datetime | None) -> float:
    from airflow.sdk import timezone

    return (timezone.utcnow() - start).total_seconds() if start else 0.0


def end_of_job(settings: PollerSettings, source: str, alerts: AlertsSpec | None = None) -> XComArg:
    """The run's last step (see the module's docstring); its value is the job's outcome."""

    @task(task_id=names.END_OF_JOB_TASK, retries=0)
    def end_of_job() -> str:
        """Decide the job's outcome, send its metrics and, if the source asks, one alert."""
        from api_poller.adapters.alerts import send_alert
        from api_poller.adapters.status_publishing import iter_published_page_records
        from api_poller.core.lifecycle import merge_page_statuses, summarize
        from api_poller.observability.metrics import JobMetrics
        from api_poller.pipeline.outcome import (
            JobEnd,
            alert_message,
            alert_subject,
            decide_outcome,
            failed_pages_of,
        )

        context = get_current_context()
        ti = context["ti"]
        summary = ti.xcom_pull(task_ids=names.REPORT_TASK, key=names.SUMMARY_KEY)
        failed = failed_steps(ti)
        after_report = from_the_report_on(ti)
        outcome = decide_outcome(summary, [step for step in failed if step in after_report])
        JobMetrics(source).job_finished(outcome, _seconds_since(context["dag_run"].start_date))
        log.info("job %s ended %s (failed steps: %s)", ti.run_id, outcome, ", ".join(failed) or "none")
        if alerts is None or outcome not in alerts.on:
            return outcome
        # The pages' own statuses (fetch and consumer merged), as the job API shows them.
        latest = merge_page_statuses(iter_published_page_records(ti))
        total = int(((summary or {}).get("progress") or {}).get("Total") or len(latest))
        end = JobEnd(
            job_id=ti.run_id,
            dag_id=ti.dag_id,
            source=source,
            outcome=outcome,
            summary=summary,
            plan_error=ti.xcom_pull(task_ids=names.PLAN_TASK, key=names.PLAN_ERROR_KEY),
            failed_tasks=failed,
            failed_pages=failed_pages_of(latest, summary),
            progress=summarize(latest, total) if latest else {},
            links=job_links(ti.dag_id, ti.run_id),
        )
        send_alert(
            alerts.notifier,
            message=alert_message(end),
            subject=alert_subject(end),
            context=context,
            default_aws_conn_id=settings.aws_conn_id,
        )
        log.info("alert sent for job %s (%s)", ti.run_id, outcome)
        return outcome

    outcome: XComArg = end_of_job()
    outcome.as_teardown()
    return outcome


def run_last(dag: DAG, last: XComArg) -> None:
    """Put ``last`` after every step that has nothing after it (the DAG's leaves)."""
    operator = last.operator  # type: ignore[attr-defined]
    for leaf in [step for step in dag.tasks if not step.downstream_list and step is not operator]:
        leaf >> operator
