"""The job API and the live progress page, served by Airflow's own api-server.

``plugins/api_poller_plugin.py`` mounts the app built here under ``/api-poller``:

* ``POST /jobs`` starts a job (a manual run of the ``api_poller`` DAG for ``{"url": ...}``, of a
  source's ``api_poller__<name>`` DAG for ``{"source": "<name>", ...}``) and answers with the AWS
  sample's ``Entries[0].EventId`` shape;
* ``GET /jobs``, ``GET /jobs/{id}``, ``GET /jobs/{id}/tasks`` read a job's progress and pages from
  the ``page_status`` XComs (``api_poller.adapters.progress``), whichever poller DAG it belongs to;
* ``POST /jobs/{id}/replay`` starts a new job with the conf of an earlier one;
* ``POST /jobs/{id}/redrive`` sends a finished job's dead letters back and reruns its consumer,
  ``POST /jobs/{id}/rerun-failed`` runs a finished job's failed pages again (both in ``repair``);
* ``GET /`` is the progress page that Airflow's navigation embeds (``external_views``).

The routes are in ``routes``, their dependencies (authorization, settings, clients) in
``dependencies``, the documents in ``models``, the page in ``page``. Airflow's server-side
modules are imported inside :func:`create_app`, so importing this module (the plugin does, in
every Airflow process that loads plugins) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

# An input echoed in a 422 is cut to this many characters (a 2 MB URL is not sent back).
MAX_ECHOED_INPUT = 200


def _short_input(error: dict[str, Any]) -> dict[str, Any]:
    value = error.get("input")
    if isinstance(value, str) and len(value) > MAX_ECHOED_INPUT:
        return {**error, "input": f"{value[:MAX_ECHOED_INPUT]}... ({len(value)} characters)"}
    return error


def create_app() -> FastAPI:
    """The FastAPI app the plugin mounts on the api-server under ``URL_PREFIX``."""
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi import Depends, FastAPI, HTTPException, Request, status
    from fastapi.encoders import jsonable_encoder
    from fastapi.exception_handlers import http_exception_handler
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from api_poller.jobs_api.page import PAGE_TITLE
    from api_poller.jobs_api.repair import router as repair_router
    from api_poller.jobs_api.routes import router

    app = FastAPI(
        title=PAGE_TITLE,
        description="Start api_poller jobs (free-URL or per source) and follow their progress.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served below, behind authentication
    )
    app.include_router(router)
    app.include_router(repair_router)

    @app.exception_handler(StarletteHTTPException)
    async def _http_errors(request: Request, exc: StarletteHTTPException) -> Response:
        # Airflow answers 403 "Invalid JWT token" for a token it cannot decode; to a client that
        # is "not authenticated" (RFC 6750 invalid_token), so answer 401 like a missing token.
        code, headers = exc.status_code, dict(exc.headers or {})
        if code == status.HTTP_403_FORBIDDEN and exc.detail == "Invalid JWT token":
            code = status.HTTP_401_UNAUTHORIZED
        if code == status.HTTP_401_UNAUTHORIZED:
            headers.setdefault("WWW-Authenticate", "Bearer")
        return await http_exception_handler(request, HTTPException(code, exc.detail, headers or None))

    @app.exception_handler(RequestValidationError)
    async def _invalid_requests(request: Request, exc: RequestValidationError) -> Response:
        errors = [_short_input(error) for error in exc.errors()]
        return JSONResponse({"detail": jsonable_encoder(errors)}, status.HTTP_422_UNPROCESSABLE_CONTENT)

    # Any authenticated user: what each route allows is checked per DAG.
    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(get_user)])
    def openapi_document() -> dict[str, Any]:
        return app.openapi()

    return app
