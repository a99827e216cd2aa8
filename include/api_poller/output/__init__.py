"""A complete job's records as a snapshot downstream work can rely on (see docs/output.md).

* ``schema``    JSON types seen per field, and the Parquet column plan that reads back exactly;
* ``formats``   one data file per format (ndjson, ndjson.gz, parquet), built in a temporary file;
* ``rollup``    the job's per-page record files rolled up, in page order, into parts of a target size;
* ``manifest``  the manifest written last next to the data, and the source's latest pointer.

The publish step (``api_poller.pipeline.publish``) puts them together; the S3 layout is spelled in
``api_poller.core.keys``.
"""
