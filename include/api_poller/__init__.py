"""api_poller: keep a full copy of a partner's paginated HTTP API in S3, on Apache Airflow.

The package is laid out by layer, in the order the data flows:

* ``core``       pure domain: pages and the plan, the page lifecycle, S3 key layout, errors, the
                 job request. No Airflow, no AWS, no network.
* ``partner``    the partner API client: requests, retries, credentials, the SSRF guard.
* ``aws``        S3 and SQS: resources, page messages, object listing and batched deletes.
* ``pipeline``   the steps: plan -> fetch (+ enqueue) -> consume/process -> reconcile -> report.
* ``adapters``   thin Airflow glue: the consumer sensor, task helpers, progress from XCom.
* ``operations`` day-2 work: dead-letter redrive, retention.
* ``jobs_api``   the job API and progress page the Airflow plugin serves.

``names`` spells the DAG, task and XCom names; ``settings`` reads the deployment's settings.
Development tools (simulator, local stack, MWAA bundle builder) live outside this package, in
``devtools/api_poller_dev``, and are never shipped.
"""
