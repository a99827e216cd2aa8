"""The YAML examples of docs/sources.md are valid sources (each block, or each blank-line separated
part of a block, completed with the required fields it leaves out)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from api_poller.sources import parse_source

DOC = Path(__file__).resolve().parents[3] / "docs" / "sources.md"
REQUIRED = {
    "name": "docs_example",
    "connection_id": "acme_api",
    "path": "/items",
    "records": "items",
    "paginator": {"type": "offset"},
}


def examples() -> list[str]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    return [part for block in blocks for part in block.split("\n\n") if part.strip()]


@pytest.mark.parametrize("example", examples())
def test_doc_example_is_a_valid_source(example: str) -> None:
    document = {**REQUIRED, **yaml.safe_load(example)}

    source = parse_source(document, "docs/sources.md")

    assert source.name == document["name"]


def test_the_doc_has_an_example_per_paginator_and_auth_kind() -> None:
    documents = [yaml.safe_load(example) for example in examples()]
    paginators = {doc["paginator"]["type"] for doc in documents if "paginator" in doc}
    auths = {doc["auth"]["type"] for doc in documents if "auth" in doc}

    assert paginators == {"offset", "page_number", "cursor", "next_url"}
    assert auths >= {"basic", "bearer", "api_key_header", "api_key_query", "oauth2_client_credentials"}
