"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.store.redis import check_ready


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Contract §7: 200 when Redis answers, else 503 — behind Sentinel, while the sentinels
    name no master that is up (a failover under way), 503 too (`check_ready`)."""
    redis = request.app.state.ctx.redis
    try:
        await asyncio.wait_for(check_ready(redis), timeout=2)
    except (RedisError, OSError, asyncio.TimeoutError):
        return JSONResponse({"status": "unavailable", "redis": "down"}, status_code=503)
    return JSONResponse({"status": "ok", "redis": "up"})


async def metrics(request: Request) -> Response:
    registry = request.app.state.ctx.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
