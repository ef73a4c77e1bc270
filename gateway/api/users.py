"""Users and API keys."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.api.body import (
    optional_str_list, read_json_object, read_optional_json_object, require_str,
)
from gateway.api.deps import confirmed, admin, context, principal, writer
from gateway.exceptions import BadRequest, Conflict, NotFound
from gateway.hooks.store import Hooks
from gateway.names import LOGIN as LOGIN  # re-exported: the CLI checks logins with it
from gateway.names import LOGIN_RULE, valid_login
from gateway.store.redis import Redis
from gateway.store.users import LoginTaken, User, Users

ROLES = frozenset({"admin", "readonly", "publisher"})
SCOPES = {"read": "read", "read write": "read write", "write read": "read write"}


def validate_login(login: str) -> str:
    if not valid_login(login):
        raise BadRequest(f"'login' must be {LOGIN_RULE}: {login[:80]!r} is not one")
    return login


async def me(request: Request) -> Response:
    who = await principal(request)
    user = await context(request).users.get(who.user_id)
    if user is None:
        raise NotFound("This user no longer exists")
    return JSONResponse(user.public())


# Routes that mint users or credentials check the caller again once the body is in
# (`deps.confirmed`): a credential that ended while the client held its body back must not be
# let through by the check made before (tests/test_realtime_races.py).
async def create_user(request: Request) -> Response:
    who = await admin(request)
    body = await read_json_object(request)
    await confirmed(request, who)
    login = validate_login(require_str(body, "login") or "")
    password = require_str(body, "password") or ""
    groups = validate_groups(optional_str_list(body, "groups") or [])
    roles = validate_roles(optional_str_list(body, "roles") or [])
    try:
        user = await context(request).users.create(login, password, groups=groups, roles=roles)
    except LoginTaken:
        raise Conflict(f"A user with login {login!r} already exists") from None
    return JSONResponse(user.public(), status_code=201)


# -- user administration (admin only) ---------------------------------------------------------
PATCHABLE = ("password", "groups", "roles", "disabled")


def validate_groups(groups: list[str]) -> list[str]:
    if not all(groups):
        raise BadRequest("'groups' must be non-empty strings")
    return groups


def validate_roles(roles: list[str]) -> list[str]:
    unknown = set(roles) - ROLES
    if unknown:
        raise BadRequest(f"Unknown roles {sorted(unknown)}; roles are {sorted(ROLES)}")
    return roles


async def _user_or_404(request: Request) -> User:
    user_id = request.path_params["user_id"]
    user = await context(request).users.fetch(user_id)
    if user is None:
        raise NotFound(f"No user with id {user_id[:80]!r}")
    return user


async def list_users(request: Request) -> Response:
    await admin(request)
    return JSONResponse([user.admin_view() for user in await context(request).users.list_all()])


async def get_user(request: Request) -> Response:
    await admin(request)
    return JSONResponse((await _user_or_404(request)).admin_view())


async def update_user(request: Request) -> Response:
    """A new password or `disabled: true` ends every session, token and API key of the user."""
    who = await admin(request)
    body = await read_json_object(request)
    who = await confirmed(request, who)  # as create_user
    unknown = sorted(set(body) - set(PATCHABLE))
    if unknown:
        raise BadRequest(f"Unknown or unchangeable fields {unknown}; "
                         f"a PATCH may set {', '.join(PATCHABLE)}")
    if not body:
        raise BadRequest(f"Nothing to change: send any of {', '.join(PATCHABLE)}")
    password = require_str(body, "password") if "password" in body else None
    groups = validate_groups(_str_list(body, "groups")) if "groups" in body else None
    roles = validate_roles(_str_list(body, "roles")) if "roles" in body else None
    disabled = body.get("disabled")
    if "disabled" in body and not isinstance(disabled, bool):
        raise BadRequest("'disabled' must be true or false")
    user = await _user_or_404(request)
    if disabled and user.id == who.user_id:
        raise Conflict("An admin can't disable their own account; ask another admin")
    updated = await context(request).users.update(user.id, password=password, groups=groups,
                                                  roles=roles, disabled=disabled)
    if updated is None:
        raise NotFound(f"No user with id {user.id!r}")
    return JSONResponse(updated.admin_view())


def _str_list(body: dict[str, Any], name: str) -> list[str]:
    value = optional_str_list(body, name)
    if value is None:  # present but null
        raise BadRequest(f"'{name}' must be an array of strings")
    return value


async def delete_user(request: Request) -> Response:
    """The user's sessions, tokens and API keys end with it; so do its hooks. Its entities stay:
    they belong to whoever else may read them, and admins can still reach them."""
    who = await admin(request)
    user = await _user_or_404(request)
    if user.id == who.user_id:
        raise Conflict("An admin can't delete their own account; ask another admin")
    if await remove_user(context(request).redis, context(request).users, user.id) is None:
        raise NotFound(f"No user with id {user.id!r}")
    return JSONResponse({"success": True})


async def remove_user(redis: Redis, users: Users, user_id: str) -> User | None:
    """Delete a user (revoking everything, freeing the login) and then the user's hooks, which
    would never deliver again: their owner can read nothing. None if there was no such user."""
    user = await users.delete(user_id)
    if user is not None:
        hooks = Hooks(redis)
        for hook in await hooks.list(user.id):
            await hooks.delete(hook)
    return user


def parse_scope(value: object) -> str:
    if value is None:
        return "read write"
    if not isinstance(value, str) or " ".join(value.split()) not in SCOPES:
        raise BadRequest("'scope' must be \"read\" or \"read write\"")
    return SCOPES[" ".join(value.split())]


async def create_apikey(request: Request) -> Response:
    # A write: a read-scoped token must not mint itself a "read write" key.
    who = await writer(request)
    body = await read_optional_json_object(request)
    who = await confirmed(request, who)  # as create_user
    scope = parse_scope(body.get("scope"))
    apikey, secret = await context(request).apikeys.create(who.user_id, scope)
    return JSONResponse({"id": apikey.id, "key": secret, "scope": apikey.scope,
                         "createdAt": apikey.created_at}, status_code=201)


async def list_apikeys(request: Request) -> Response:
    who = await principal(request)
    keys = await context(request).apikeys.list_for(None if who.is_admin else who.user_id)
    return JSONResponse([key.public() for key in keys])


async def delete_apikey(request: Request) -> Response:
    who = await writer(request)
    apikeys = context(request).apikeys
    apikey = await apikeys.get(request.path_params["key_id"])
    if apikey is None or (apikey.user_id != who.user_id and not who.is_admin):
        raise NotFound("No such API key")
    await apikeys.delete(apikey)
    return JSONResponse({"success": True})


routes = [
    Route("/api/v1/users/me", me, methods=["GET"]),
    Route("/api/v1/users", create_user, methods=["POST"]),
    Route("/api/v1/users", list_users, methods=["GET"]),
    Route("/api/v1/users/{user_id}", get_user, methods=["GET"]),
    Route("/api/v1/users/{user_id}", update_user, methods=["PATCH"]),
    Route("/api/v1/users/{user_id}", delete_user, methods=["DELETE"]),
    Route("/api/v1/apikeys", create_apikey, methods=["POST"]),
    Route("/api/v1/apikeys", list_apikeys, methods=["GET"]),
    Route("/api/v1/apikeys/{key_id}", delete_apikey, methods=["DELETE"]),
]
