"""POST /api/v1/events: backends publish events produced elsewhere (admin or `publisher`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.api.body import read_json_object
from gateway.api.deps import context, principal
from gateway.events.pipeline import build_event
from gateway.exceptions import BadRequest, Forbidden
from gateway.names import STORE_RULE, valid_event_type, valid_object_id, valid_store


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
    if not valid_event_type(kind):
        raise BadRequest("'type' must be an event type such as 'entity.updated' or 'order.shipped'")
    if not valid_store(store):
        raise BadRequest(f"'store' must be a store name ({STORE_RULE})")
    if entity_id is not None and not valid_object_id(entity_id):
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
