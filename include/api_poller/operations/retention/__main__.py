"""The status purge from the command line, in a process that may use the metadata database.

    python -m api_poller.operations.retention purge-status --retention-days 3 [--as-of ISO] [--dry-run]

Needs Airflow's metadata database configured as for the scheduler. The maintenance task starts
it this way (``metadata_db.run_purge_process``) and reads the report line it prints last.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime

from api_poller.operations.retention.metadata_db import REPORT_MARKER, MetadataDbStatusStore
from api_poller.operations.retention.status_purge import purge_expired_status
from api_poller.operations.retention.timestamps import as_utc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m api_poller.operations.retention",
        description="Purge the status (XComs) of api_poller jobs that ended more than N days ago.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    purge = commands.add_parser("purge-status", help="needs Airflow's metadata database configured")
    purge.add_argument("--retention-days", type=float, required=True)
    purge.add_argument("--as-of", type=as_utc, default=None, help="ISO time to age from (default: now)")
    purge.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)

    from airflow.utils.session import create_session

    with create_session() as session:
        report = purge_expired_status(
            MetadataDbStatusStore(session),
            as_of=args.as_of or datetime.now(UTC),
            retention_days=args.retention_days,
            dry_run=args.dry_run,
        )
    print(REPORT_MARKER + json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
