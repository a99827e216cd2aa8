"""deploy/aws/api-poller-resources.yaml: the CloudFormation template of the DAG's buckets, queues and policy.

Checked three ways: the template itself (parsed with CloudFormation's short tags), cfn-lint (its
resource schemas), and a stack created from it on moto's in-process CloudFormation, whose
buckets and queues the DAG's own resource lookup then finds. moto does not apply a bucket's
lifecycle rules from a template, so the expiry rule is checked in the template.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from api_poller_dev.mwaa_bundle import parse_settings

from api_poller.aws.resources import ensure_resources
from api_poller.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "aws" / "api-poller-resources.yaml"
REGION = "eu-west-1"

S3_ACTIONS = {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"}
SQS_ACTIONS = {
    "sqs:SendMessage",
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueUrl",
    "sqs:GetQueueAttributes",
}


class CloudFormationLoader(yaml.SafeLoader):
    """YAML loader that understands CloudFormation's short tags (!Ref, !GetAtt, !Sub, ...)."""


def _short_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CloudFormationLoader.add_multi_constructor("!", _short_tag)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=CloudFormationLoader)


def _statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    return template["Resources"]["PollerPolicy"]["Properties"]["PolicyDocument"]["Statement"]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_template_declares_the_buckets_queues_and_policy(template: dict[str, Any]) -> None:
    types = {name: resource["Type"] for name, resource in template["Resources"].items()}
    assert types == {
        "RawBucket": "AWS::S3::Bucket",
        "ProcessedBucket": "AWS::S3::Bucket",
        "DeadLetterQueue": "AWS::SQS::Queue",
        "ProcessingQueue": "AWS::SQS::Queue",
        "PollerPolicy": "AWS::IAM::ManagedPolicy",
    }
    outputs = set(template["Outputs"])
    assert {"RawBucketName", "ProcessedBucketName", "QueueName", "QueueUrl"} <= outputs
    assert {"DeadLetterQueueName", "DeadLetterQueueUrl", "PolicyArn", "BuildBundleSettings"} <= outputs


def test_leftover_raw_pages_expire_after_a_parameter_number_of_days(template: dict[str, Any]) -> None:
    assert template["Parameters"]["RawObjectExpirationDays"]["Default"] == 7
    (rule,) = template["Resources"]["RawBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rule["Status"] == "Enabled"
    assert rule["Prefix"] == "jobs/"
    assert rule["ExpirationInDays"] == {"Ref": "RawObjectExpirationDays"}
    # The processed data is never expired by the template.
    assert "LifecycleConfiguration" not in template["Resources"]["ProcessedBucket"]["Properties"]


def test_processing_queue_dead_letters_after_three_receives(template: dict[str, Any]) -> None:
    redrive = template["Resources"]["ProcessingQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert redrive["maxReceiveCount"] == {"Ref": "MaxReceiveCount"}
    assert template["Parameters"]["MaxReceiveCount"]["Default"] == 3


def test_policy_grants_exactly_what_the_dag_does(template: dict[str, Any]) -> None:
    statements = _statements(template)
    assert all(statement["Effect"] == "Allow" for statement in statements)
    granted = {action for statement in statements for action in _as_list(statement["Action"])}
    assert granted == S3_ACTIONS | SQS_ACTIONS
    for statement in statements:
        resources = json.dumps(statement["Resource"])
        assert "*" not in resources.replace("/*", ""), f"unscoped resource in {statement['Sid']}"
        actions = _as_list(statement["Action"])
        if any(action.startswith("sqs:") for action in actions):
            assert "ProcessingQueue" in resources and "DeadLetterQueue" in resources
        else:
            assert "RawBucket" in resources and "ProcessedBucket" in resources


def test_cfn_lint_finds_no_problem() -> None:
    api = pytest.importorskip("cfnlint.api", reason="cfn-lint (installed with moto[server]) is missing")
    # Errors and warnings; informational suggestions (I...) are not failures.
    matches = [match for match in api.lint_all(TEMPLATE.read_text()) if match.rule.id[0] in "EW"]
    assert not matches, "\n".join(str(match) for match in matches)


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch):
    """The template deployed on moto's in-process AWS; yields its outputs and boto3 clients."""
    import boto3
    from moto import mock_aws

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        cloudformation = boto3.client("cloudformation", region_name=REGION)
        cloudformation.create_stack(
            StackName="api-poller",
            TemplateBody=TEMPLATE.read_text(),
            Parameters=[{"ParameterKey": "NamePrefix", "ParameterValue": "acme-poller"}],
            Capabilities=["CAPABILITY_IAM"],
        )
        (described,) = cloudformation.describe_stacks(StackName="api-poller")["Stacks"]
        assert described["StackStatus"] == "CREATE_COMPLETE", described.get("StackStatusReason")
        outputs = {output["OutputKey"]: output["OutputValue"] for output in described["Outputs"]}
        clients = {service: boto3.client(service, region_name=REGION) for service in ("s3", "sqs", "iam")}
        yield outputs, clients


def test_stack_creates_buckets_and_queues_with_the_redrive_policy(stack) -> None:
    outputs, clients = stack
    buckets = {bucket["Name"] for bucket in clients["s3"].list_buckets()["Buckets"]}
    assert buckets == {outputs["RawBucketName"], outputs["ProcessedBucketName"]}
    assert outputs["RawBucketName"] == f"acme-poller-raw-123456789012-{REGION}"
    sqs = clients["sqs"]
    assert sqs.get_queue_url(QueueName=outputs["QueueName"])["QueueUrl"] == outputs["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=outputs["QueueUrl"], AttributeNames=["All"])["Attributes"]
    dead_letter = sqs.get_queue_attributes(QueueUrl=outputs["DeadLetterQueueUrl"], AttributeNames=["All"])[
        "Attributes"
    ]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dead_letter["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == 3
    assert int(dead_letter["MessageRetentionPeriod"]) == 14 * 24 * 3600


def test_stack_policy_is_scoped_to_the_stack_resources(stack) -> None:
    outputs, clients = stack
    iam = clients["iam"]
    policy = iam.get_policy(PolicyArn=outputs["PolicyArn"])["Policy"]
    document = iam.get_policy_version(PolicyArn=outputs["PolicyArn"], VersionId=policy["DefaultVersionId"])[
        "PolicyVersion"
    ]["Document"]
    document = json.loads(document) if isinstance(document, str) else document
    resources = {
        action: set(_as_list(statement["Resource"]))
        for statement in document["Statement"]
        for action in _as_list(statement["Action"])
    }
    raw, processed = (f"arn:aws:s3:::{outputs[name]}" for name in ("RawBucketName", "ProcessedBucketName"))
    queues = {
        clients["sqs"].get_queue_attributes(QueueUrl=outputs[url], AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        for url in ("QueueUrl", "DeadLetterQueueUrl")
    }
    assert resources["s3:ListBucket"] == {raw, processed}
    for action in S3_ACTIONS - {"s3:ListBucket"}:
        assert resources[action] == {f"{raw}/*", f"{processed}/*"}
    for action in SQS_ACTIONS:
        assert resources[action] == queues


def test_the_dag_finds_the_stack_resources_from_its_outputs(stack) -> None:
    """The BuildBundleSettings output, as startup.sh settings, is what the DAG's lookup needs."""
    outputs, clients = stack
    overrides = parse_settings(outputs["BuildBundleSettings"].replace("--setting ", "").split())
    settings = load_settings(
        {f"API_POLLER_{name.upper()}": value for name, value in overrides.items()}
        | {"API_POLLER_CREATE_RESOURCES": "false"}
    )
    found = ensure_resources(clients["s3"], clients["sqs"], settings, create=settings.create_resources)
    assert found == {"queue_url": outputs["QueueUrl"], "dead_letter_queue_url": outputs["DeadLetterQueueUrl"]}
