"""POST /api/v1/events: backends publish events produced elsewhere (admin or `publisher`)."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway import ids
from gateway.api.body import read_json_object
from gateway.api.deps import context, principal
from gateway.api.entities import RESERVED, STORE
from gateway.events.pipeline import build_event
from gateway.exceptions import BadRequest, Forbidden

EVENT_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,127}$")


async def publish(request: Request) -> Response:
    ctx = context(request)
    who = await principal(request)
    if not (who.is_admin or "publisher" in who.roles):
        raise Forbidden("Only an admin or a user with the 'publisher' role may publish events")
    if not who.may_write:
        raise Forbidden("This token's scope is 'read': it may not publish")
    body = await read_json_object(request, ctx.settings.http.max_body_bytes)
    kind, store, entity_id, data = (body.get("type"), body.get("store"), body.get("entityId"),
                                    body.get("data"))
    if not isinstance(kind, str) or not EVENT_TYPE.match(kind):
        raise BadRequest("'type' must be an event type such as 'entity.updated' or 'order.shipped'")
    if not isinstance(store, str) or not STORE.match(store) or store in RESERVED:
        raise BadRequest("'store' must be a store name (a letter, then up to 63 letters, digits, "
                         "'_' or '-'; not a reserved name)")
    if entity_id is not None and not ids.is_object_id(entity_id):
        raise BadRequest("'entityId' must be an entity id (24 lowercase hex characters) or absent")
    if not isinstance(data, dict):
        raise BadRequest("'data' must be a JSON object")
    unknown = sorted(set(body) - {"type", "store", "entityId", "data"})
    if unknown:
        raise BadRequest(f"Unknown fields {unknown}; an event has type, store, entityId and data")
    committed = await ctx.events.commit(
        "publish", build_event(kind, store, entity_id, data), store=store)
    return JSONResponse({"id": committed.event_id}, status_code=202)


routes = [Route("/api/v1/events", publish, methods=["POST"])]
