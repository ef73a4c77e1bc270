"""What every /api/v1 route starts with: who is asking, and may they ask now."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection, Request

from gateway.auth.client_address import client_address
from gateway.auth.principal import Principal
from gateway.exceptions import Forbidden

if TYPE_CHECKING:
    from gateway.app import AppContext


def context(request: HTTPConnection) -> AppContext:
    ctx: AppContext = request.app.state.ctx  # set by the app's lifespan
    return ctx


def address_of(request: HTTPConnection) -> str:
    ctx = context(request)
    peer = request.client.host if request.client else None
    return client_address(peer, request.headers.get("x-forwarded-for"),
                          ctx.settings.http.trusted_proxies)


async def principal(request: Request) -> Principal:
    """Authenticate the request and count it against the user's rate limit.

    The rate-limit headers go on every authenticated response, the 429 included.
    """
    ctx = context(request)
    who = await ctx.authenticator.authenticate(
        headers=request.headers, cookies=request.cookies, address=address_of(request)
    )
    decision = await ctx.ratelimiter.enforce(who.user_id)  # a 429 carries its own headers
    request.state.response_headers = decision.headers()
    request.state.principal = who
    return who


async def writer(request: Request) -> Principal:
    """A principal allowed to write at all (not `readonly`, not a read-scoped token)."""
    who = await principal(request)
    if "readonly" in who.roles:
        raise Forbidden("This user is read-only")
    if not who.may_write:
        raise Forbidden("This token's scope is 'read': it may not write")
    return who


async def admin(request: Request) -> Principal:
    who = await principal(request)
    if not who.is_admin:
        raise Forbidden("Only an admin may do this")
    return who
