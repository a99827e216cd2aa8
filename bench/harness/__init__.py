"""The benchmark's parts, driven by ``bench/run.py``.

* ``config``     where its files are, the workloads and systems, how long a run may take;
* ``console``    its log lines;
* ``services``   what the contenders run against: moto, a PostgreSQL-backed Airflow, tool venvs;
* ``runners``    how each contender (Airflow, the asyncio script, dlt) is started and timed;
* ``timeline``   an Airflow run's task instances as seconds after its trigger;
* ``sampling``   CPU seconds per component and the task processes' RSS, read from /proc;
* ``profiling``  optional py-spy profiles of an Airflow run, summarized;
* ``rendering``  results.json, results.md, the plot and the README's table.

And for ``bench/cost.py``:

* ``aws_requests``  counts the AWS requests of every botocore client made in process, by operation;
* ``cost_model``    prices them per million records, and models the serverless sample's flow;

and for ``bench/status_read.py``: ``status_schedule`` (when page-status documents are flushed over
a run, by the product's recorder on a moved clock; read latencies as p50/p95).

Standard library only (psutil at most, lazily; ``aws_requests`` needs botocore, which the main
venv has), so the pure parts are unit-tested without the benchmark's extra venvs.
"""
