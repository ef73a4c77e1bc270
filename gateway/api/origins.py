"""The browser-origin policy, shared by the HTTP middleware and the websocket fast path."""

from __future__ import annotations


def origin_allowed(origin: str, host: str, allowed: frozenset[str]) -> bool:
    """The gateway's own origin (same host, any scheme) or one of GATEWAY_ALLOWED_ORIGINS.

    Cookies ride along with any cross-site websocket; refusing foreign origins at the
    handshake is what stops another site from opening a connection as the user.
    """
    normalized = origin.rstrip("/").lower()
    if normalized in allowed:
        return True
    host = host.lower()
    return bool(host) and normalized.split("://", 1)[-1] == host
