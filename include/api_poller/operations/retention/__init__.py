"""Retention: how long a job's status and its leftovers live, and the purges that enforce it.

What ages out, enforced by the ``api_poller_maintenance`` DAG (``API_POLLER_RETENTION_DAYS``):

* **a job's status**, the XComs of its ``api_poller`` DAG run (``page_status``, ``job``,
  ``total_pages``, ``summary``, ``return_value``, ...). They are purged with Airflow's own
  ``airflow db clean`` (table ``xcom``, DAG ``api_poller`` only). The DAG run stays, so a purged
  job is still known and :func:`~.expiry.job_expired` can say why its status is gone;
* **raw payloads** left in ``s3://<raw bucket>/jobs/<job>/raw/`` by pages that never completed
  (dead-lettered, refused by SQS, or a job that stopped half-way), and the consumers' error notes
  next to them (``jobs/<job>/errors/``), by their ``LastModified``;
* **source snapshots** beyond a source's ``output.keep_snapshots`` (off by default; never the
  one the source's ``_latest.json`` names), and unfinished snapshot folders (no manifest);
* **a published job's per-page record files** (``jobs/<job>/records/`` in the processed bucket),
  intermediate once the job's snapshot is published;
* **dead letters**, which SQS drops after the DLQ's ``MessageRetentionPeriod``: the ones close to
  it are reported (job, page, age) while they can still be inspected or redriven.

One module per concern:

* ``expiry``         whether a job's status is gone because it expired (for the job API);
* ``status_purge``   which XComs can go without splitting a run, and the purge itself;
* ``metadata_db``    the purge against the metadata database: in process, or in a new process
                     given the database (Airflow 3 gives task code none);
* ``mwaa_cli``       the purge through Airflow's CLI, e.g. Amazon MWAA's CLI endpoint;
* ``purge_route``    which of the two the maintenance task takes, from the settings;
* ``raw_leftovers``  old raw pages and error notes in the raw bucket;
* ``dead_letters``   the dead letters SQS is about to drop;
* ``snapshots``      snapshots beyond keep_snapshots, unfinished snapshot folders;
* ``published_records`` per-page record files of published jobs;
* ``deletion``       batched deletes;
* ``__main__``       ``python -m api_poller.operations.retention purge-status ...``.
"""
