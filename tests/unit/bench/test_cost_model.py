"""The cost table's arithmetic: price classes, scaling a counted run, the serverless sample's model."""

from __future__ import annotations

import pytest

from bench.harness.cost_model import (
    ServerlessAssumptions,
    expected_attempts,
    one_page_batches,
    pages_per_million,
    poller_lines,
    request_price,
    scale_counts,
    serverless_lines,
    total_requests,
    total_usd,
)

# Round prices, so every expected figure below is mental arithmetic.
PRICES = {
    "s3_put_class_per_1k": 5.0,
    "s3_get_class_per_1k": 1.0,
    "sqs_per_million": 1.0,
    "sfn_standard_per_1k_transitions": 1.0,
    "lambda_per_million_requests": 1.0,
    "lambda_per_gb_second": 1.0,
    "dynamodb_per_million_wru": 1.0,
    "apigw_http_per_million": 1.0,
    "eventbridge_per_million": 1.0,
}


@pytest.mark.parametrize(
    ("operation", "price_class", "usd"),
    [
        ("s3.PutObject", "S3 PUT-class", 0.005),
        ("s3.ListObjectsV2", "S3 PUT-class", 0.005),
        ("s3.DeleteObjects", "S3 PUT-class", 0.005),  # a POST: the dearer reading
        ("s3.CreateBucket", "S3 PUT-class", 0.005),
        ("s3.GetObject", "S3 GET-class", 0.001),
        ("s3.HeadObject", "S3 GET-class", 0.001),
        ("s3.DeleteObject", "S3 DELETE (free)", 0.0),
        ("sqs.SendMessageBatch", "SQS standard", 1e-6),
    ],
)
def test_each_request_is_priced_by_its_class(operation: str, price_class: str, usd: float) -> None:
    assert request_price(operation, PRICES) == (price_class, pytest.approx(usd))


def test_an_operation_of_a_service_without_prices_is_refused() -> None:
    with pytest.raises(ValueError, match=r"no price for dynamodb\.PutItem"):
        request_price("dynamodb.PutItem", PRICES)


def test_page_requests_grow_with_the_pages_and_job_requests_do_not() -> None:
    scaled = scale_counts(
        {"s3.PutObject": 200, "sqs.SendMessageBatch": 15},
        {"s3.CreateBucket": 2, "s3.PutObject": 1},
        run_pages=100,
        pages=10_000,
    )
    assert scaled == {"s3.CreateBucket": 2, "s3.PutObject": 20_001, "sqs.SendMessageBatch": 1_500}
    assert pages_per_million(100) == 10_000
    assert pages_per_million(30) == 33_334  # the last page is short


def test_the_poller_lines_price_every_counted_operation() -> None:
    lines = poller_lines({"s3.PutObject": 2000, "s3.GetObject": 1000, "sqs.ReceiveMessage": 100}, PRICES)
    assert [line.service for line in lines] == ["S3", "S3", "SQS"]
    assert total_usd(lines) == pytest.approx(10 + 1 + 0.0001)
    assert total_requests(lines) == 3100


def test_the_serverless_flow_without_errors_costs_what_its_states_writes_and_messages_add_up_to() -> None:
    assume = ServerlessAssumptions(error_rate=0.0, lambda_memory_gb=1.0, fetch_seconds=1.0,
                                   process_seconds_per_page=0.0)  # fmt: skip
    lines = {line.item.split(" (")[0]: line for line in serverless_lines(100, PRICES, assume)}
    assert lines["standard-workflow transitions"].quantity == 100 * 11 + 3
    assert lines["invocations"].quantity == 100 + 4 + 1  # a fetch per page, 4 batches of 25, the plan
    assert lines["compute"].quantity == 100  # GB-s: 1 GB for 1 s per page
    assert lines["status writes, on-demand"].quantity == 400  # Started, PayloadSaved, Enqueued, done
    assert lines["sqs.SendMessage"].quantity == 100
    assert lines["sqs.ReceiveMessage"].quantity == lines["sqs.DeleteMessageBatch"].quantity == 10
    assert lines["s3.PutObject"].usd == pytest.approx(0.5)
    assert lines["s3.DeleteObject"].usd == 0


def test_transient_errors_add_a_transition_and_an_invocation_per_retry() -> None:
    assert expected_attempts(0.1, 6) == pytest.approx(1.11111, rel=1e-4)
    assert expected_attempts(0.0, 6) == 1

    def quantities(error_rate: float) -> dict[str, float]:
        lines = serverless_lines(1000, PRICES, ServerlessAssumptions(error_rate=error_rate))
        return {line.item.split(" (")[0]: line.quantity for line in lines if line.unit != "GB-s"}

    calm, noisy = quantities(0.0), quantities(0.1)
    assert {item: round(noisy[item] - calm[item], 1) for item in calm if noisy[item] != calm[item]} == {
        "standard-workflow transitions": 111.1,
        "invocations": 111.1,
    }


def test_the_worst_batching_puts_one_page_in_every_batch_call_and_leaves_the_rest() -> None:
    counted = {"sqs.SendMessageBatch": 1500.0, "sqs.ReceiveMessage": 20_000.0, "s3.PutObject": 20_000.0}
    assert one_page_batches(counted, 10_000) == {
        "sqs.SendMessageBatch": 10_000,
        "sqs.ReceiveMessage": 20_000,  # already above one a page (empty long polls)
        "s3.PutObject": 20_000,
    }
