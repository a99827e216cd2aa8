"""A source's alert notifier: built from its ``alerts:`` section, checked when its DAG is built.

The notifier is an Airflow notifier (``BaseNotifier``): the Amazon provider's ``SnsNotifier`` for
``type: sns``, or the class a ``type: custom`` section names, built with its kwargs and the alert's
text in its message field. It is sent with ``notify(context)``, never ``notifier(context)``: the
latter renders every field as a Jinja template, and the text carries the partner API's error
messages, which must never be evaluated as templates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from api_poller.core.errors import SourceError
from api_poller.sources.spec import CustomNotifierSpec, SnsNotifierSpec, SourceSpec

if TYPE_CHECKING:
    from airflow.sdk import BaseNotifier
    from airflow.sdk.definitions.context import Context

    from api_poller.settings import PollerSettings
    from api_poller.sources.spec import NotifierSpec

CHECK_TEXT = "(checking that the notifier can be built)"


def _notifier_class(spec: CustomNotifierSpec) -> type[BaseNotifier]:
    """The class named by ``spec``; ValueError saying why it is not a notifier."""
    from airflow.sdk import BaseNotifier
    from airflow.sdk.module_loading import import_string

    try:
        found = import_string(spec.class_path)
    except ImportError as error:
        raise ValueError(f"cannot import {spec.class_path!r}: {error}") from None
    if not isinstance(found, type) or not issubclass(found, BaseNotifier):
        raise ValueError(f"{spec.class_path!r} is not an Airflow notifier (a BaseNotifier subclass)")
    return found


def build_notifier(
    spec: NotifierSpec, *, message: str, subject: str, default_aws_conn_id: str
) -> BaseNotifier:
    """The notifier of ``spec`` carrying ``message`` (and ``subject`` where it has one).

    ValueError (unknown class, not a notifier) or TypeError (arguments it does not take or lacks)
    when it cannot be built.
    """
    if isinstance(spec, SnsNotifierSpec):
        from airflow.providers.amazon.aws.notifications.sns import SnsNotifier

        return SnsNotifier(
            aws_conn_id=spec.aws_conn_id or default_aws_conn_id,
            target_arn=spec.target_arn,
            region_name=spec.region_name,
            message=message,
            subject=subject,
        )
    kwargs: dict[str, Any] = {**spec.kwargs, spec.message_field: message}
    if spec.subject_field:
        kwargs[spec.subject_field] = subject
    return _notifier_class(spec)(**kwargs)


def check_alerts(spec: SourceSpec, settings: PollerSettings) -> None:
    """SourceError naming the file and field if the source's custom notifier cannot be built (an
    unknown class, one that is not a notifier, arguments it does not accept or lacks). Nothing is
    sent: notifiers connect when they notify. An SNS notifier is not built here: its section is
    checked in full when the file is read, and building it would import the provider's SNS hook
    on every DAG parse."""
    if spec.alerts is None or not isinstance(spec.alerts.notifier, CustomNotifierSpec):
        return
    try:
        build_notifier(
            spec.alerts.notifier,
            message=CHECK_TEXT,
            subject=CHECK_TEXT,
            default_aws_conn_id=settings.aws_conn_id,
        )
    except ValueError as error:
        raise SourceError(spec.file, "alerts.notifier.class", str(error)) from None
    except TypeError as error:
        message = f"the notifier cannot be built: {error}"
        raise SourceError(spec.file, "alerts.notifier.kwargs", message) from None


def send_alert(
    spec: NotifierSpec, *, message: str, subject: str, context: Context, default_aws_conn_id: str
) -> None:
    """Send one alert (no template rendering: see the module's docstring)."""
    notifier = build_notifier(spec, message=message, subject=subject, default_aws_conn_id=default_aws_conn_id)
    notifier.notify(context)
