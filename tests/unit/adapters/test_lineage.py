"""What lineage shows of the partner API: where it is, never how to get in."""

from __future__ import annotations

import pytest

from api_poller.adapters.lineage import api_asset_uri


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://api.acme.example/v1/orders?api_key=s3cret&offset=0", "https://api.acme.example/v1/orders"),
        (
            "https://user:s3cret@api.acme.example:8443/v1/orders#top",
            "https://api.acme.example:8443/v1/orders",
        ),
        ("HTTP://127.0.0.1:8080", "http://127.0.0.1:8080/"),
        ("http://[::1]:9000/items", "http://[::1]:9000/items"),
    ],
)
def test_the_api_is_shown_by_scheme_host_port_and_path_only(url: str, shown: str) -> None:
    assert api_asset_uri(url) == shown
