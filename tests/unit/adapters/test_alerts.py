"""A source's notifier: built from its alerts section, refused at parse time when it cannot be."""

from __future__ import annotations

from typing import Any

import pytest

from api_poller.adapters.alerts import build_notifier, check_alerts, send_alert
from api_poller.core.errors import SourceError
from api_poller.settings import PollerSettings
from api_poller.sources.spec import CustomNotifierSpec, SnsNotifierSpec, parse_source

try:
    from airflow.sdk import BaseNotifier
except ImportError:  # pragma: no cover
    BaseNotifier = object  # type: ignore[misc,assignment]

SENT: list[dict[str, Any]] = []


class RecordingNotifier(BaseNotifier):  # type: ignore[misc]
    """A notifier that keeps what it was asked to send."""

    template_fields = ("text",)

    def __init__(self, *, channel: str, text: str, title: str | None = None) -> None:
        super().__init__()
        self.channel, self.text, self.title = channel, text, title

    def notify(self, context: Any) -> None:
        SENT.append({"channel": self.channel, "text": self.text, "title": self.title})


SOURCE = {
    "name": "orders",
    "connection_id": "acme",
    "path": "/orders",
    "records": "items",
    "paginator": {"type": "offset"},
}
RECORDING = f"{__name__}.RecordingNotifier"


def source_with(notifier: dict[str, Any]) -> Any:
    return parse_source({**SOURCE, "alerts": {"notifier": notifier}}, "orders.yaml")


def test_the_sns_notifier_defaults_to_the_deployments_aws_connection() -> None:
    spec = SnsNotifierSpec(target_arn="arn:aws:sns:eu-west-1:123456789012:alerts")
    notifier = build_notifier(spec, message="m", subject="s", default_aws_conn_id="aws_poller")
    assert type(notifier).__name__ == "SnsNotifier"
    assert (notifier.aws_conn_id, notifier.target_arn, notifier.message, notifier.subject) == (
        "aws_poller", "arn:aws:sns:eu-west-1:123456789012:alerts", "m", "s",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("notifier", "field", "why"),
    [
        ({"type": "custom", "class": "acme.notify.Pager"}, "alerts.notifier.class", "cannot import"),
        (
            {"type": "custom", "class": "json.JSONDecoder"},
            "alerts.notifier.class",
            "is not an Airflow notifier",
        ),
        (
            {"type": "custom", "class": RECORDING, "message_field": "text"},
            "alerts.notifier.kwargs",
            "channel",
        ),
        (
            {
                "type": "custom",
                "class": RECORDING,
                "message_field": "text",
                "kwargs": {"channel": "c", "colour": 1},
            },
            "alerts.notifier.kwargs",
            "colour",
        ),
    ],
)
def test_a_notifier_that_cannot_be_built_is_a_source_error_naming_the_field(notifier, field, why) -> None:
    with pytest.raises(SourceError) as raised:
        check_alerts(source_with(notifier), PollerSettings())
    assert raised.value.field == field and why in str(raised.value)


def test_a_custom_notifier_gets_the_text_as_written_never_rendered_as_a_template() -> None:
    spec = CustomNotifierSpec(
        class_path=RECORDING, message_field="text", subject_field="title", kwargs={"channel": "#alerts"}
    )
    SENT.clear()
    # A partner's error message may hold template syntax: it must reach people as it is.
    send_alert(
        spec, message="HTTP 500: {{ conn.acme.password }}", subject="s", context={}, default_aws_conn_id="x"
    )
    assert SENT == [{"channel": "#alerts", "text": "HTTP 500: {{ conn.acme.password }}", "title": "s"}]


@pytest.mark.parametrize(
    ("alerts", "message"),
    [
        ({"notifier": {"type": "sns"}}, "alerts.notifier.target_arn: is required"),
        (
            {"notifier": {"type": "sns", "target_arn": "alerts"}},
            "alerts.notifier.target_arn: 'alerts' is not an SNS ARN",
        ),
        ({"notifier": {"type": "slack"}}, "alerts.notifier.type: unknown notifier type 'slack'"),
        ({"on": ["failed"]}, "alerts.notifier: is required"),
        (
            {True: ["sometimes"], "notifier": {"type": "sns"}},
            "alerts.on[0]: 'sometimes' is not one of failed, incomplete",
        ),
        ({"on": [], "notifier": {"type": "sns"}}, "alerts.on: must be a non-empty list"),
        ({"notify": {}}, "alerts.notify: unknown field of alerts; did you mean 'notifier'?"),
        (
            {"notifier": {"type": "custom", "class": RECORDING, "kwargs": {"message": "x"}}},
            "alerts.notifier.kwargs: 'message' is where the alert's text goes",
        ),
    ],
)
def test_a_bad_alerts_section_is_refused_naming_the_field(alerts, message) -> None:
    with pytest.raises(
        SourceError, match=message.replace("[", r"\[").replace("]", r"\]").replace("?", r"\?")
    ):
        parse_source({**SOURCE, "alerts": alerts}, "orders.yaml")


def test_a_bare_on_key_reads_as_on_not_as_true() -> None:
    import yaml

    text = "on: [incomplete]\nnotifier: {type: sns, target_arn: 'arn:aws:sns:us-east-1:123456789012:a'}\n"
    spec = parse_source({**SOURCE, "alerts": yaml.safe_load(text)}, "orders.yaml")
    assert spec.alerts is not None and spec.alerts.on == frozenset({"incomplete"})
