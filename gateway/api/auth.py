"""Authentication routes: cookie sessions, login tokens, API-key exchange, one-time tokens."""

from __future__ import annotations

import uuid
from email.utils import format_datetime
from datetime import datetime, timezone

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.api.body import read_json_object
from gateway.api.deps import address_of, context, principal
from gateway.auth.authenticator import SESSION_COOKIE
from gateway.auth.principal import FULL_SCOPE
from gateway.exceptions import Unauthorized


def _session_cookie(sid: str, expires_ms: int, secure: bool) -> str:
    expires = format_datetime(datetime.fromtimestamp(expires_ms / 1000, timezone.utc), usegmt=True)
    cookie = f"{SESSION_COOKIE}={sid}; Path=/; Expires={expires}; HttpOnly; SameSite=Lax"
    return cookie + "; Secure" if secure else cookie


def _is_https(request: Request) -> bool:
    if request.url.scheme == "https":
        return True
    # Behind a trusted TLS-terminating proxy the peer is the proxy; it says what the client used.
    ctx = context(request)
    return address_of(request) != (request.client.host if request.client else None) and \
        request.headers.get("x-forwarded-proto", "").lower() == "https" and \
        bool(ctx.settings.http.trusted_proxies)


async def login(request: Request) -> Response:
    ctx = context(request)
    address = address_of(request)
    await ctx.authenticator.check_ban(address)
    body = await read_json_object(request)
    user = await ctx.authenticator.login(body.get("login"), body.get("password"), address)
    sid, expires_ms = await ctx.sessions.create(user.id, password_hash=user.password_hash)
    response = JSONResponse({"success": True})
    response.headers.append("set-cookie", _session_cookie(sid, expires_ms, _is_https(request)))
    return response


async def logout(request: Request) -> Response:
    ctx = context(request)
    who = await principal(request)
    if who.session_digest:
        await ctx.sessions.revoke(who.session_digest, user_id=who.user_id)
    elif who.token_digest:
        await ctx.tokens.revoke(who.token_digest, user_id=who.user_id)
    # A browser may send other credentials beside its cookie (Authorization wins in
    # authenticate); logging out must still end the session the cookie names.
    sid = request.cookies.get(SESSION_COOKIE)
    if sid and not who.session_digest:
        found = await ctx.sessions.user_for(sid)
        if found is not None and found[0] == who.user_id:
            await ctx.sessions.revoke(found[1], user_id=who.user_id)
    response = JSONResponse({"success": True})
    response.headers.append(
        "set-cookie",
        f"{SESSION_COOKIE}=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Lax",
    )
    return response


async def login_token(request: Request) -> Response:
    ctx = context(request)
    address = address_of(request)
    await ctx.authenticator.check_ban(address)
    body = await read_json_object(request)
    user = await ctx.authenticator.login(body.get("login"), body.get("password"), address)
    token, issued, expires = await ctx.tokens.issue(
        user.id, kind="login", scope=FULL_SCOPE, ttl_s=ctx.settings.auth.token_ttl_s,
        password_hash=user.password_hash,
    )
    return JSONResponse(
        {"success": True, "type": "access", "token": token, "issuedAt": issued, "expiresAt": expires}
    )


async def apikey_exchange(request: Request) -> Response:
    """GET /auth/token: an API key in `Authorization` buys a 900 s bearer token."""
    ctx = context(request)
    address = address_of(request)
    await ctx.authenticator.check_ban(address)
    presented = request.headers.get("authorization", "").strip()
    for scheme in ("Bearer ", "ApiKey ", "Token "):
        if presented[: len(scheme)].lower() == scheme.lower():
            presented = presented[len(scheme):].strip()
    if not presented:
        raise Unauthorized("Send the API key in the Authorization header")
    apikey = await ctx.apikeys.verify(presented)
    if apikey is None:
        await ctx.guard.record_failure(address)
        raise Unauthorized("The API key is invalid or was deleted")
    ttl = ctx.settings.auth.api_token_ttl_s
    jti = str(uuid.uuid4())
    token, _, _ = await ctx.tokens.issue(
        apikey.user_id, kind="access", scope=frozenset(apikey.scope.split()), ttl_s=ttl,
        extra={"jti": jti, "key": apikey.id},
    )
    return JSONResponse({"accessToken": token, "tokenType": "bearer", "expiresIn": f"{ttl}s",
                         "scope": apikey.scope, "jti": jti})


async def one_time_token(request: Request) -> Response:
    ctx = context(request)
    who = await principal(request)
    password_hash = None
    if who.credential.kind == "basic":
        # Basic has no key of its own to outlive: the token must not outlive the password.
        user = await ctx.users.get(who.user_id)
        if user is None:
            raise Unauthorized("The user behind these credentials no longer exists")
        password_hash = user.password_hash
    token, _, expires = await ctx.tokens.issue(
        who.user_id, kind="once", scope=who.scope, ttl_s=ctx.settings.auth.one_time_token_ttl_s,
        issuer=who.credential, password_hash=password_hash,
    )
    return JSONResponse({"token": token, "expiresAt": expires})


async def token_info(request: Request) -> Response:
    who = await principal(request)
    return JSONResponse({"_userId": who.user_id})


routes = [
    Route("/api/v1/auth", login, methods=["POST"]),
    Route("/api/v1/auth", logout, methods=["DELETE"]),
    Route("/api/v1/auth/token", login_token, methods=["POST"]),
    Route("/auth/token", apikey_exchange, methods=["GET"]),
    Route("/api/v1/auth/one-time-token", one_time_token, methods=["POST"]),
    Route("/api/v1/tokenInfo", token_info, methods=["GET"]),
    Route("/v1/tokenInfo", token_info, methods=["GET"]),
]
