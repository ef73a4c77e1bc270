"""REST hook routes: /api/v1/hooks (contract §6).

Hooks are owner-scoped: another user's hook answers 404, as if it did not exist; an admin sees
and manages every hook. The secret is shown once, in the answer to the creation.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.api.body import read_json_object
from gateway.api.deps import context, principal, writer
from gateway.auth.principal import Principal
from gateway.exceptions import BadRequest, NotFound
from gateway.hooks.queue import LOG_SIZE, DeliveryQueue
from gateway.hooks.resolver import resolve
from gateway.hooks.ssrf import TargetRefused, parse_target
from gateway.hooks.store import Hook, Hooks
from gateway.names import STORE_RULE, valid_event_pattern, valid_object_id, valid_store

FIELDS = {"target_url", "event", "store"}


def _hooks(request: Request) -> Hooks:
    return context(request).hooks


def _queue(request: Request) -> DeliveryQueue:
    return context(request).hook_queue


async def _own_hook(request: Request, who: Principal) -> Hook:
    hook_id = request.path_params["hook_id"]
    hook = await _hooks(request).get(hook_id) if valid_object_id(hook_id) else None
    if hook is None or not (who.is_admin or hook.owner == who.user_id):
        raise NotFound(f"No hook {hook_id[:80]!r}")
    return hook


def _validate(body: dict[str, Any]) -> tuple[str, str | None]:
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise BadRequest(f"Unknown fields {unknown}; a hook has target_url, event and store")
    event = body.get("event")
    if not valid_event_pattern(event):
        raise BadRequest("'event' must be an event type such as 'entity.created', "
                         "a prefix pattern such as 'entity.*', or '*'")
    store = body.get("store")
    if store is not None and not valid_store(store):
        raise BadRequest(f"'store' must be a store name ({STORE_RULE}), or absent for every store")
    return event, store


async def create(request: Request) -> Response:
    ctx = context(request)
    who = await writer(request)
    body = await read_json_object(request, ctx.settings.http.max_body_bytes)
    event, store = _validate(body)
    try:
        target = parse_target(body.get("target_url"))
        await resolve(target, allow_private=ctx.settings.hooks.allow_private)
    except TargetRefused as exc:
        raise BadRequest(f"'target_url' is refused: {exc}") from None
    hook = await _hooks(request).create(owner=who.user_id, target_url=target.url, event=event,
                                        store=store)
    return JSONResponse(hook.record(), status_code=201)


async def list_hooks(request: Request) -> Response:
    who = await principal(request)
    hooks = await _hooks(request).list(None if who.is_admin else who.user_id)
    return JSONResponse([hook.public() for hook in hooks])


async def read(request: Request) -> Response:
    who = await principal(request)
    return JSONResponse((await _own_hook(request, who)).public())


async def delete(request: Request) -> Response:
    who = await writer(request)
    hook = await _own_hook(request, who)
    if not await _hooks(request).delete(hook):
        raise NotFound(f"No hook {hook.id!r}")
    return JSONResponse({"success": True})


def _int_param(request: Request, name: str, default: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"'{name}' must be a whole number") from None
    if not 0 <= value <= maximum:
        raise BadRequest(f"'{name}' must be from 0 to {maximum}")
    return value


async def deliveries(request: Request) -> Response:
    who = await principal(request)
    hook = await _own_hook(request, who)
    limit = _int_param(request, "limit", 100, LOG_SIZE)
    offset = _int_param(request, "offset", 0, LOG_SIZE)
    return JSONResponse(await _queue(request).log(hook.id, offset=offset, limit=limit))


async def retry(request: Request) -> Response:
    who = await writer(request)
    hook = await _own_hook(request, who)
    delivery_id = request.path_params["delivery_id"]
    queue = _queue(request)
    delivery = await queue.delivery(delivery_id)
    if delivery is None or delivery["hook"].decode() != hook.id or not await queue.retry(
            delivery_id):
        raise NotFound(f"No delivery {delivery_id[:80]!r} for hook {hook.id}")
    return JSONResponse({"success": True, "id": delivery_id}, status_code=202)


routes = [
    Route("/api/v1/hooks", create, methods=["POST"]),
    Route("/api/v1/hooks", list_hooks, methods=["GET"]),
    Route("/api/v1/hooks/{hook_id}", read, methods=["GET"]),
    Route("/api/v1/hooks/{hook_id}", delete, methods=["DELETE"]),
    Route("/api/v1/hooks/{hook_id}/deliveries", deliveries, methods=["GET"]),
    Route("/api/v1/hooks/{hook_id}/deliveries/{delivery_id}/retry", retry, methods=["POST"]),
]
