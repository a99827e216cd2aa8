"""The OAuth2 access tokens a simulator has issued, each valid until its expiry."""

from __future__ import annotations

import secrets
from collections.abc import Callable

Clock = Callable[[], float]


class TokenStore:
    """Issued tokens and when they expire, on ``clock`` (seconds; injectable for tests)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._expires_at: dict[str, float] = {}

    def issue(self, ttl_seconds: float) -> str:
        token = secrets.token_urlsafe(24)
        self._expires_at[token] = self._clock() + ttl_seconds
        return token

    def is_valid(self, token: str) -> bool:
        expires_at = self._expires_at.get(token)
        return expires_at is not None and self._clock() < expires_at

    def expire_all(self) -> int:
        """Make every token issued so far expired; returns how many were still valid."""
        now = self._clock()
        live = [token for token, expires_at in self._expires_at.items() if now < expires_at]
        for token in live:
            self._expires_at[token] = now
        return len(live)
