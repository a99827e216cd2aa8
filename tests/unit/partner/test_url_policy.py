"""The SSRF guard: private and metadata addresses are refused unless the allowlist names them."""

from __future__ import annotations

import pytest

from api_poller.core.errors import InvalidJobRequest
from api_poller.partner.url_policy import check_url_allowed, parse_allowlist


def resolver(table: dict[str, list[str]]):
    return lambda host: table[host]


HOSTS = resolver(
    {
        "partner.example": ["93.184.216.34"],
        "metadata.internal": ["169.254.169.254"],
        "169.254.169.254": ["169.254.169.254"],
        "10.0.0.7": ["10.0.0.7"],
        "127.0.0.1": ["127.0.0.1"],
        "localhost": ["127.0.0.1", "::1"],
        "sneaky.example": ["93.184.216.34", "192.168.1.10"],
        "v6.example": ["fd00::1"],
    }
)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.internal/payload",
        "http://10.0.0.7/payload",
        "http://127.0.0.1:8000/payload",
        "http://localhost/payload",
        "https://sneaky.example/payload",  # one private address among public ones is enough
        "http://v6.example/payload",
    ],
)
def test_non_public_addresses_are_refused_by_default(url):
    with pytest.raises(InvalidJobRequest, match="non-public address"):
        check_url_allowed(url, [], HOSTS)


def test_public_hosts_are_allowed_when_no_allowlist_is_set():
    check_url_allowed("https://partner.example/payload", [], HOSTS)


@pytest.mark.parametrize(
    ("url", "allowlist"),
    [
        ("http://127.0.0.1:8000/payload", ["127.0.0.1"]),
        ("http://10.0.0.7/payload", ["10.0.0.0/8"]),
        ("http://localhost/payload", ["localhost"]),
        ("https://partner.example/api/v1/payload", ["https://partner.example/api/"]),
    ],
)
def test_an_allowlist_entry_allows_explicitly(url, allowlist):
    check_url_allowed(url, allowlist, HOSTS)


def test_with_an_allowlist_anything_else_is_refused_even_public_hosts():
    with pytest.raises(InvalidJobRequest, match="not in API_POLLER_URL_ALLOWLIST"):
        check_url_allowed("https://partner.example/payload", ["https://other.example/"], HOSTS)


def test_the_metadata_address_needs_its_own_entry():
    with pytest.raises(InvalidJobRequest):
        check_url_allowed("http://169.254.169.254/latest/", ["10.0.0.0/8"], HOSTS)


def test_a_url_prefix_entry_does_not_match_a_lookalike_host():
    with pytest.raises(InvalidJobRequest):
        check_url_allowed(
            "https://partner.example.evil.test/x",
            ["https://partner.example/"],
            resolver({"partner.example.evil.test": ["93.184.216.34"]}),
        )


def test_unresolvable_hosts_are_refused_with_a_message():
    with pytest.raises(InvalidJobRequest, match="does not resolve"):
        check_url_allowed("https://no-such-host.invalid/payload", [])


def test_allowlist_parsing_ignores_blanks():
    assert parse_allowlist(" 127.0.0.1, ,https://p.example/ ,") == ["127.0.0.1", "https://p.example/"]
