"""Sources: any paginated HTTP API, declared in one YAML file each (see docs/sources.md).

* ``spec``   the typed, frozen description of a source and the reader that validates a file;
* ``folder`` where the source files are.

The partner-side building blocks a source is fetched with live in ``api_poller.partner``:
``records`` (paths in a response), ``paginators`` (which request comes next) and ``auth``
(credentials scoped to the Connection's origin).
"""

from api_poller.sources.folder import sources_folder
from api_poller.sources.spec import (
    AuthSpec,
    CursorPaginatorSpec,
    IncrementalSpec,
    NextUrlPaginatorSpec,
    OffsetPaginatorSpec,
    OutputSpec,
    PageNumberPaginatorSpec,
    PaginatorSpec,
    SourceSpec,
    load_source,
    load_sources,
    parse_source,
)

__all__ = [
    "AuthSpec",
    "CursorPaginatorSpec",
    "IncrementalSpec",
    "NextUrlPaginatorSpec",
    "OffsetPaginatorSpec",
    "OutputSpec",
    "PageNumberPaginatorSpec",
    "PaginatorSpec",
    "SourceSpec",
    "load_source",
    "load_sources",
    "parse_source",
    "sources_folder",
]
