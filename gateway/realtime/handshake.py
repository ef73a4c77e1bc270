"""Who may open a realtime connection: the one check both transports' handshakes run.

The websocket fast path (`fastws.py`) and polling (`endpoint.py`) parse their requests their
own way, then both call `admit`: credentials first (401, or 403 for a banned address), then
the user's rate limits, shared with their REST calls (contract §2: a handshake over the limit
is refused with 429, the envelope and Retry-After).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from gateway.auth.principal import Principal
from gateway.ratelimit import Decision

if TYPE_CHECKING:
    from gateway.app import AppContext


async def admit(ctx: AppContext, *, headers: Mapping[str, str], cookies: Mapping[str, str],
                address: str, query_token: str | None) -> tuple[Principal, Decision]:
    """The handshake's principal, counted as one request against its limits.

    Raises:
        ApiError: 401 (no or bad credentials), 403 (a banned address), 429 (over the limit,
            with the rate-limit headers).
    """
    principal = await ctx.authenticator.authenticate(
        headers=headers, cookies=cookies, address=address, query_token=query_token)
    decision = await ctx.ratelimiter.enforce(principal.user_id)
    return principal, decision
