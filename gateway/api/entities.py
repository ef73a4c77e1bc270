"""Entity routes: /api/v1/{store} and /api/v1/{store}/{id} (contract §4)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.api.body import read_json_object
from gateway.api.deps import context, principal, writer
from gateway.api.query import parse_list_query
from gateway.auth.principal import Principal
from gateway.exceptions import BadRequest, Conflict, Forbidden, NotFound
from gateway.events.pipeline import Committed, WriteConflict
# STORE and RESERVED are re-exported for realtime.connection until it imports gateway.names.
from gateway.names import RESERVED as RESERVED, STORE as STORE, valid_object_id
from gateway.permissions import may_read, may_write
from gateway.store.entities import SYSTEM_FIELDS, EntityGone

_MISSING = object()


def store_name(request: Request) -> str:
    store: str = request.path_params["store"]
    if STORE.fullmatch(store) is None:
        raise BadRequest("A store name starts with a letter and has up to 64 letters, digits, "
                         f"'_' or '-': {store[:80]!r} is not one")
    if store in RESERVED:
        raise BadRequest(f"{store!r} is a reserved name, not a store")
    return store


def entity_id(request: Request) -> str:
    value: str = request.path_params["entity_id"]
    if not valid_object_id(value):
        raise BadRequest(f"{value[:80]!r} is not an entity id (24 lowercase hex characters)")
    return value


def _id_list(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadRequest(f"'{name}' must be an array of user or group ids (strings)")
    return value


def _new_entity(body: dict[str, Any], who: Principal) -> dict[str, Any]:
    if "_id" in body:
        raise BadRequest("'_id' is assigned by the server; leave it out")
    if not who.is_admin:
        for name in ("owner", "group"):
            if name in body:
                raise BadRequest(f"'{name}' is set by the server; only an admin may give it")
    owner = body.get("owner", who.user_id)
    group = body.get("group", who.groups[0] if who.groups else None)
    if not isinstance(owner, str):
        raise BadRequest("'owner' must be a user id (string)")
    if group is not None and not isinstance(group, str):
        raise BadRequest("'group' must be a group id (string) or null")
    fields = {k: v for k, v in body.items() if k not in SYSTEM_FIELDS}
    return {"owner": owner, "group": group, "access": _id_list(body, "access"),
            "branch": _id_list(body, "branch"), **fields}


def _respond_conflict(exc: WriteConflict) -> Conflict:
    return Conflict(f"The entity is being changed too often to apply this write: {exc.reason}")


async def create(request: Request) -> Response:
    who = await writer(request)
    store = store_name(request)
    body = await read_json_object(request, context(request).settings.http.max_body_bytes)
    committed = await context(request).entities.create(store, _new_entity(body, who))
    return JSONResponse(committed.event["data"], status_code=201)


async def list_entities(request: Request) -> Response:
    who = await principal(request)
    store = store_name(request)
    query = parse_list_query(request.query_params)
    entities = context(request).entities
    if query.meta:
        return JSONResponse(await entities.meta(store, query.bounds, who))
    items = await entities.page(store, query.bounds, who, offset=query.offset, limit=query.limit)
    if query.only is not None:
        fields = ("_id", *query.only)
        items = [{name: item[name] for name in fields if name in item} for item in items]
    return JSONResponse(items)


async def read(request: Request) -> Response:
    who = await principal(request)
    store, key = store_name(request), entity_id(request)
    entity = await context(request).entities.get(store, key)
    if entity is None or not may_read(who, entity):
        raise NotFound(f"No entity {key} in {store!r} that you may read")
    return JSONResponse(entity)


def _check_writable(who: Principal, current: dict[str, Any], store: str, key: str) -> None:
    if not may_read(who, current):
        raise NotFound(f"No entity {key} in {store!r} that you may read")
    if not may_write(who, current):
        raise Forbidden("You may read this entity but not change it")


async def _change(request: Request, compute: Any) -> Committed:
    store, key = store_name(request), entity_id(request)
    try:
        committed = await context(request).entities.change(store, key, compute)
    except EntityGone:
        raise NotFound(f"No entity {key} in {store!r} that you may read") from None
    except WriteConflict as exc:
        raise _respond_conflict(exc) from None
    return committed


async def patch(request: Request) -> Response:
    who = await writer(request)
    store, key = store_name(request), entity_id(request)
    body = await read_json_object(request, context(request).settings.http.max_body_bytes)
    given = [name for name in SYSTEM_FIELDS if name in body]
    if given:
        raise BadRequest(f"PATCH may not change system fields: {', '.join(given)}")

    def compute(current: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        _check_writable(who, current, store, key)
        updated = dict(current)
        changes: dict[str, Any] = {}
        for name, value in body.items():
            if value is None:
                if name in updated:
                    del updated[name]
                    changes[name] = None
            elif updated.get(name, _MISSING) != value:
                updated[name] = value
                changes[name] = value
        return updated, changes

    committed = await _change(request, compute)
    return JSONResponse(committed.event["data"])


async def put(request: Request) -> Response:
    who = await writer(request)
    store, key = store_name(request), entity_id(request)
    body = await read_json_object(request, context(request).settings.http.max_body_bytes)

    def compute(current: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        _check_writable(who, current, store, key)
        for name in SYSTEM_FIELDS:
            # A body fetched with GET carries the system fields: they may come back unchanged.
            if name in body and body[name] != current.get(name):
                raise BadRequest(f"PUT may not change the system field '{name}'")
        updated = {name: current[name] for name in SYSTEM_FIELDS if name in current}
        updated.update({k: v for k, v in body.items() if k not in SYSTEM_FIELDS})
        changes = {name: updated.get(name) for name in set(current) | set(updated)
                   if name not in SYSTEM_FIELDS and current.get(name, _MISSING)
                   != updated.get(name, _MISSING)}
        return updated, changes

    committed = await _change(request, compute)
    return JSONResponse(committed.event["data"])


async def delete(request: Request) -> Response:
    who = await writer(request)
    store, key = store_name(request), entity_id(request)

    def compute(current: dict[str, Any]) -> None:
        _check_writable(who, current, store, key)
        return None

    await _change(request, compute)
    return JSONResponse({"success": True})


routes = [
    Route("/api/v1/{store}", create, methods=["POST"]),
    Route("/api/v1/{store}", list_entities, methods=["GET"]),
    Route("/api/v1/{store}/{entity_id}", read, methods=["GET"]),
    Route("/api/v1/{store}/{entity_id}", patch, methods=["PATCH"]),
    Route("/api/v1/{store}/{entity_id}", put, methods=["PUT"]),
    Route("/api/v1/{store}/{entity_id}", delete, methods=["DELETE"]),
]
