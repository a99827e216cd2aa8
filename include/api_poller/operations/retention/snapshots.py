"""Published snapshots beyond a source's ``output.keep_snapshots``, and unfinished snapshot folders.

A source's snapshots are the folders ``snapshots/<source>/dt=<date>/job=<job>/`` of the processed
bucket. With ``keep_snapshots: N`` the newest N folders with a manifest (by the manifest's
``publishedAt``) stay, and so does the one the pointer ``_latest.json`` names, whatever its age;
the others are expired: the manifest is deleted first (a reader never finds a manifest whose
files are gone), then the data files. Without ``keep_snapshots`` (the default) no published
snapshot is touched.

A folder without a manifest is a publish that never finished (its parts are not a snapshot, no
reader was told about them); it is removed once its newest object is older than the retention
cutoff, whatever ``keep_snapshots`` says (a publish still going on is recent).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from api_poller.aws.clients import S3Client
from api_poller.core.keys import MANIFEST_NAME, latest_snapshot_key, source_snapshots_prefix
from api_poller.operations.retention.deletion import delete_keys
from api_poller.operations.retention.timestamps import as_utc
from api_poller.output.manifest import read_json_object

log = logging.getLogger(__name__)


@dataclass
class _Folder:
    prefix: str
    keys: list[str] = field(default_factory=list)
    newest: datetime | None = None
    has_manifest: bool = False


def _folders(s3_client: S3Client, bucket: str, source: str) -> dict[str, _Folder]:
    """The source's snapshot folders (``dt=.../job=.../``) with their objects."""
    root = source_snapshots_prefix(source)
    folders: dict[str, _Folder] = {}
    for listing in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=root):
        for item in listing.get("Contents", []):
            parts = item["Key"][len(root) :].split("/")
            if len(parts) != 3 or not parts[0].startswith("dt=") or not parts[1].startswith("job="):
                continue  # the pointer, or something not ours
            prefix = f"{root}{parts[0]}/{parts[1]}/"
            folder = folders.setdefault(prefix, _Folder(prefix))
            folder.keys.append(item["Key"])
            modified = as_utc(item["LastModified"])
            folder.newest = modified if folder.newest is None else max(folder.newest, modified)
            folder.has_manifest |= parts[2] == MANIFEST_NAME
    return folders


def _remove_folder(s3_client: S3Client, bucket: str, folder: _Folder) -> None:
    manifest = f"{folder.prefix}{MANIFEST_NAME}"
    if folder.has_manifest:
        delete_keys(s3_client, bucket, [manifest])  # first: the snapshot stops being complete
    delete_keys(s3_client, bucket, [key for key in folder.keys if key != manifest])


def expire_snapshots(
    s3_client: S3Client,
    bucket: str,
    source: str,
    *,
    keep: int | None,
    cutoff: datetime,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Expire the source's published snapshots beyond the newest ``keep`` (None: none), never the
    pointer's, and remove unfinished folders older than ``cutoff``; what went (or would go)."""
    cutoff = as_utc(cutoff)
    folders = _folders(s3_client, bucket, source)
    pointer = read_json_object(s3_client, bucket, latest_snapshot_key(source)) or {}
    pointed = str(pointer.get("manifest", "")).removeprefix(f"s3://{bucket}/")
    published = [folder for folder in folders.values() if folder.has_manifest]
    expired: list[_Folder] = []
    if keep is not None:
        order: list[tuple[str, str, _Folder]] = []
        for folder in published:
            manifest = read_json_object(s3_client, bucket, f"{folder.prefix}{MANIFEST_NAME}") or {}
            order.append((str(manifest.get("publishedAt", "")), folder.prefix, folder))
        order.sort(reverse=True)  # newest first
        expired = [folder for _, _, folder in order[keep:] if f"{folder.prefix}{MANIFEST_NAME}" != pointed]
    unfinished = [
        folder
        for folder in folders.values()
        if not folder.has_manifest and folder.newest is not None and folder.newest < cutoff
    ]
    if not dry_run:
        for folder in [*expired, *unfinished]:
            _remove_folder(s3_client, bucket, folder)
    log.info(
        "%s %d of %d snapshots of %s (keep %s) and %d unfinished folders older than %s",
        "would expire" if dry_run else "expired",
        len(expired),
        len(published),
        source,
        keep if keep is not None else "all",
        len(unfinished),
        cutoff.isoformat(),
    )
    return {
        "source": source,
        "keep": keep,
        "snapshots": len(published),
        "expired": sorted(folder.prefix for folder in expired),
        "unfinished_removed": sorted(folder.prefix for folder in unfinished),
        "pointer": pointed or None,
        "dry_run": dry_run,
    }
