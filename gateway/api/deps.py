"""What every /api/v1 route starts with: who is asking, and may they ask now."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection, Request

from gateway.auth.client_address import client_address
from gateway.auth.principal import Principal
from gateway.exceptions import Forbidden, Unauthorized

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
    return _may_write(await principal(request))


async def admin(request: Request) -> Principal:
    return _is_admin(await principal(request))


async def confirmed(request: Request, who: Principal) -> Principal:
    """Check the caller again, after its body arrived: a credential that ended while the
    client held its body back is refused, with no second count against the rate limit.

    Routes that mint users or credentials call it, so that a stolen session can't outlive a
    password reset by keeping a request open.
    """
    ctx = context(request)
    if who.via == "once":  # spent by the first check: ask after the credential that issued it
        if not await ctx.tokens.alive(who.credential):
            raise Unauthorized("The credential that issued this one-time token has ended")
        return who
    again = await ctx.authenticator.authenticate(
        headers=request.headers, cookies=request.cookies, address=address_of(request))
    if again.user_id != who.user_id:
        raise Unauthorized("The credentials changed during the request")
    if who.is_admin:
        _is_admin(again)
    if who.may_write:
        _may_write(again)
    return again


def _may_write(who: Principal) -> Principal:
    if "readonly" in who.roles:
        raise Forbidden("This user is read-only")
    if not who.may_write:
        raise Forbidden("This token's scope is 'read': it may not write")
    return who


def _is_admin(who: Principal) -> Principal:
    if not who.is_admin:
        raise Forbidden("Only an admin may do this")
    return who
