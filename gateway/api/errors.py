"""The error envelope, rendered in one place for every route and middleware."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.exceptions import ApiError, StoreUnavailable, Unavailable

log = logging.getLogger(__name__)

_TAGS_BY_STATUS = {
    400: ("error_bad_request",),
    401: ("error_unauthorized",),
    403: ("error_credentials", "error_forbidden"),
    404: ("error_not_found",),
    405: ("error_method_not_allowed",),
    409: ("error_conflict",),
    413: ("error_too_large",),
    429: ("error_rate_limited",),
    503: ("error_unavailable",),
}


def envelope(status: int, message: str, tags: tuple[str, ...] | None = None,
             headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = {
        "success": False,
        "code": str(status),
        "message": message,
        "tags": list(tags or _TAGS_BY_STATUS.get(status, ("error_internal",))),
    }
    return JSONResponse(body, status_code=status, headers=headers)


def render(error: ApiError) -> JSONResponse:
    return envelope(error.status, error.message, error.tags, error.headers)


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return render(exc)


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return envelope(exc.status_code, exc.detail, headers=exc.headers)


async def unavailable_handler(request: Request, exc: Exception) -> Response:
    # Redis errors are translated here, once, for every route.
    log.warning("redis unavailable", extra={"error": repr(exc), "path": request.url.path})
    return render(Unavailable())


async def internal_error_handler(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", extra={"path": request.url.path})
    return envelope(500, "Internal Server Error")


EXCEPTION_HANDLERS = {
    ApiError: api_error_handler,
    HTTPException: http_exception_handler,
    # Only "Redis is not answering" is a 503; a command Redis refused is our bug, a 500.
    RedisConnectionError: unavailable_handler,
    RedisTimeoutError: unavailable_handler,
    StoreUnavailable: unavailable_handler,
    ConnectionError: unavailable_handler,
    Exception: internal_error_handler,
}
