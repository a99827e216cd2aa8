"""A source DAG's trigger settings, defined once: its Params form and the conf its plan step reads.

A source run may set (``pipeline.source_plan.parse_source_conf`` checks them):

* each of the source's ``overridable_params`` (a query parameter; empty keeps the file's value),
* ``full_refresh`` (ignore the incremental watermark and sync everything),
* ``concurrency`` and ``fetch_tasks`` (the limits and descriptions of the seed's, from
  ``core.job_request``).

From the one list of fields below come the DAG's Params (the trigger form, and the schema Airflow
checks a run's conf against: :func:`source_params`) and the conf handed to the plan step
(:func:`source_conf`). The form is flat (one field per query parameter); a conf sent through the
API may also nest them as ``{"params": {"status": "open"}}``, as ``parse_source_conf`` documents.
A conf key that is neither (``url``, say) is passed on, so the plan step refuses it by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from api_poller.core.errors import SourceError
from api_poller.core.job_request import CONCURRENCY, FETCH_TASKS, MAX_CONCURRENCY, MAX_FETCH_TASKS
from api_poller.settings import PollerSettings
from api_poller.sources.spec import SourceSpec

if TYPE_CHECKING:
    from airflow.sdk import Param

FULL_REFRESH = "full_refresh"
NESTED_PARAMS = "params"  # the API's nested form: {"params": {"<query parameter>": "<value>"}}
SETTING_NAMES = (FULL_REFRESH, CONCURRENCY.name, FETCH_TASKS.name)


@dataclass(frozen=True)
class SourceField:
    """One field of a source's trigger form."""

    name: str
    title: str
    description: str
    default: Any
    schema: Mapping[str, Any]
    # A query parameter the source lets a trigger override (else a trigger setting).
    query_param: bool = False


def source_fields(spec: SourceSpec, settings: PollerSettings) -> list[SourceField]:
    """The fields of the source's trigger form; SourceError if an overridable parameter's name
    is the name of a trigger setting (the form could not tell them apart)."""
    fields: list[SourceField] = []
    for index, name in enumerate(spec.overridable_params):
        if name in (*SETTING_NAMES, NESTED_PARAMS):
            raise SourceError(
                spec.file,
                f"overridable_params[{index}]",
                f"{name!r} is the name of a trigger setting; it cannot also be a query parameter here",
            )
        default = spec.params.get(name)
        fields.append(
            SourceField(
                name=name,
                title=name,
                description=f"Query parameter {name!r} sent with every page"
                + (f" (the source's value: {default!r})." if default is not None else ".")
                + " Empty: the source's value, or none.",
                default=default,
                schema={"type": ["null", "string"], "maxLength": 1024},
                query_param=True,
            )
        )
    incremental = spec.incremental
    fields.append(
        SourceField(
            name=FULL_REFRESH,
            title="Full refresh",
            description=(
                f"Sync every record, ignoring the watermark of {incremental.cursor_field!r}"
                " (it still advances once the job is complete)."
                if incremental
                else "No effect: this source is not incremental, every job syncs everything."
            ),
            default=False,
            schema={"type": "boolean"},
        )
    )
    fields.append(
        SourceField(
            name=CONCURRENCY.name,
            title=CONCURRENCY.title,
            description=CONCURRENCY.description,
            default=spec.concurrency or settings.default_concurrency,
            schema={"type": "integer", "minimum": 1, "maximum": MAX_CONCURRENCY},
        )
    )
    fields.append(
        SourceField(
            name=FETCH_TASKS.name,
            title=FETCH_TASKS.title,
            description=f"{FETCH_TASKS.description} A source whose total is unknown (a cursor, a "
            "next link) is walked by one task.",
            default=FETCH_TASKS.default(settings),
            schema={"type": ["null", "integer"], "minimum": 1, "maximum": MAX_FETCH_TASKS},
        )
    )
    return fields


def source_params(spec: SourceSpec, settings: PollerSettings) -> dict[str, Param]:
    """The source DAG's Params: its trigger form, and the schema a run's conf is checked against."""
    from airflow.sdk import Param

    return {
        field.name: Param(field.default, title=field.title, description=field.description, **field.schema)
        for field in source_fields(spec, settings)
    }


def source_conf(spec: SourceSpec, params: Mapping[str, Any], settings: PollerSettings) -> dict[str, Any]:
    """The conf ``parse_source_conf`` reads, from a run's Params (the form's flat fields, the
    API's nested ``params``, and any other key, which the plan step then refuses by name)."""
    fields = source_fields(spec, settings)
    overrides: dict[str, Any] = {
        field.name: params[field.name]
        for field in fields
        if field.query_param and params.get(field.name) not in (None, "")
    }
    conf: dict[str, Any] = {}
    nested = params.get(NESTED_PARAMS)
    if isinstance(nested, Mapping):
        overrides.update(nested)  # sent explicitly through the API: wins over the form's defaults
    elif nested is not None:
        conf[NESTED_PARAMS] = nested  # not a mapping: refused by the plan step
    if NESTED_PARAMS not in conf:
        conf[NESTED_PARAMS] = overrides
    for field in fields:
        if not field.query_param and params.get(field.name) is not None:
            conf[field.name] = params[field.name]
    known = {field.name for field in fields} | {NESTED_PARAMS}
    conf.update({key: value for key, value in params.items() if key not in known})
    return conf
