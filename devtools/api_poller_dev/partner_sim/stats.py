"""The counters ``GET /stats`` shows."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

# The fault kinds, in precedence order (at most one applies to a request);
# also the keys of ``faults_injected`` in ``/stats``.
FAULT_KINDS = ("drop", "hang", "rate_limit", "server_error", "truncate")


@dataclass
class SimulatorStats:
    """Counters of data-endpoint traffic (not ``/health``, ``/stats``, ``/admin``, ``/oauth/token``).

    Faults are counted when decided, even if the client gives up before the
    answer; ``errors_injected`` counts the injected 5xx (``server_error``).
    ``by_path`` counts requests per data endpoint (``sum == requests``);
    ``pages_served`` counts, per data endpoint, the complete 200 pages by the ids
    they held (``"first-last"``, ``"empty"``), so a test can tell which pages a run
    fetched. The token endpoint has its own ``token_requests`` / ``tokens_issued``.
    """

    requests: int = 0
    errors_injected: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0  # lets client tests check their concurrency cap
    faults_injected: Counter[str] = field(default_factory=Counter)
    by_path: Counter[str] = field(default_factory=Counter)
    pages_served: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    token_requests: int = 0
    tokens_issued: int = 0

    def count_request(self, path: str) -> None:
        self.requests += 1
        self.by_path[path] += 1

    def count_page(self, path: str, ids: tuple[int, int] | None) -> None:
        self.pages_served[path]["empty" if ids is None else f"{ids[0]}-{ids[1]}"] += 1

    def reset(self) -> None:
        """Zero every counter; requests still in flight stay counted as such."""
        in_flight = self.in_flight
        vars(self).update(vars(SimulatorStats(in_flight=in_flight, max_in_flight=in_flight)))

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors_injected": self.errors_injected,
            "by_status": {str(code): n for code, n in sorted(self.by_status.items())},
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "faults_injected": {kind: self.faults_injected[kind] for kind in FAULT_KINDS},
            "by_path": dict(sorted(self.by_path.items())),
            "pages_served": {path: dict(pages) for path, pages in sorted(self.pages_served.items())},
            "token_requests": self.token_requests,
            "tokens_issued": self.tokens_issued,
        }
