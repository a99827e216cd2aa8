"""Which partner URLs a job may fetch: the SSRF guard.

A job's URL comes from whoever can trigger a DAG run, and the fetch runs inside your network with
your credentials, so private, loopback, link-local (cloud metadata at 169.254.169.254) and other
non-public addresses are refused unless ``API_POLLER_URL_ALLOWLIST`` names them explicitly.
When the allowlist is non-empty, only URLs it matches are allowed at all.

Allowlist entries (comma-separated): a URL prefix (``https://partner.example/api/``), a host name
(``partner.example``), an IP address or a network in CIDR form (``10.1.0.0/16``).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from api_poller.core.errors import InvalidJobRequest

Resolver = Callable[[str], list[str]]


def resolve_host(host: str) -> list[str]:
    try:
        # sockaddr[0] is the address string for the IPv4/IPv6 families getaddrinfo returns here.
        return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None)})
    except socket.gaierror as error:
        raise InvalidJobRequest(f"url host {host!r} does not resolve: {error}") from None


def parse_allowlist(raw: str) -> list[str]:
    return [entry.strip() for entry in raw.split(",") if entry.strip()]


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    return ip.is_global and not ip.is_multicast


def _entry_matches(entry: str, url: str, host: str, addresses: Iterable[str]) -> bool:
    if "://" in entry:
        return url.startswith(entry)
    try:
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return host.lower() == entry.lower()
    return any(ipaddress.ip_address(address.split("%")[0]) in network for address in addresses)


def check_url_allowed(url: str, allowlist: list[str], resolve: Resolver = resolve_host) -> None:
    """Raise InvalidJobRequest unless the URL may be fetched under the allowlist."""
    host = urlsplit(url).hostname or ""
    addresses = resolve(host)
    if any(_entry_matches(entry, url, host, addresses) for entry in allowlist):
        return
    if allowlist:
        raise InvalidJobRequest(f"url {url!r} is not in API_POLLER_URL_ALLOWLIST")
    private = [address for address in addresses if not _is_public(address)]
    if private:
        raise InvalidJobRequest(
            f"url host {host!r} resolves to non-public address {private[0]}; "
            "add it to API_POLLER_URL_ALLOWLIST to allow it"
        )
