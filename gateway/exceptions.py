"""The gateway's exceptions.

    GatewayError
    ├── ConfigError            a setting or start-up condition is wrong; the CLI prints it and exits
    ├── StoreUnavailable       Redis did not answer (translated once, in gateway.store.redis)
    └── ApiError               carries its HTTP answer; one handler renders the envelope
        ├── BadRequest         400 error_bad_request
        ├── Unauthorized       401 error_unauthorized
        ├── Forbidden          403 error_credentials + error_forbidden
        ├── NotFound           404 error_not_found
        ├── Conflict           409 error_conflict
        ├── PayloadTooLarge    413 error_too_large
        ├── RateLimited        429 error_rate_limited (+ Retry-After)
        └── Unavailable        503 error_unavailable

The protocol layer (gateway.protocol) has its own tree: it imports nothing from here.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """A setting or a start-up condition is wrong; the message says which and why."""


class StoreUnavailable(GatewayError):
    """Redis could not be reached or did not answer in time."""


class ApiError(GatewayError):
    status: int = 500
    tags: tuple[str, ...] = ("error_internal",)
    default_message = "Internal Server Error"

    def __init__(self, message: str | None = None, *, headers: dict[str, str] | None = None):
        self.message = message or self.default_message
        self.headers = headers or {}
        super().__init__(self.message)


class BadRequest(ApiError):
    status = 400
    tags = ("error_bad_request",)
    default_message = "Bad Request"


class Unauthorized(ApiError):
    status = 401
    tags = ("error_unauthorized",)
    default_message = "Unauthorized: send the sid cookie, a Bearer token or Basic credentials"


class Forbidden(ApiError):
    status = 403
    tags = ("error_credentials", "error_forbidden")
    default_message = "Forbidden"


class NotFound(ApiError):
    status = 404
    tags = ("error_not_found",)
    default_message = "Not Found"


class Conflict(ApiError):
    status = 409
    tags = ("error_conflict",)
    default_message = "Conflict"


class PayloadTooLarge(ApiError):
    status = 413
    tags = ("error_too_large",)
    default_message = "Request body is larger than 1 MiB"


class RateLimited(ApiError):
    status = 429
    tags = ("error_rate_limited",)
    default_message = "Too many requests"


class Unavailable(ApiError):
    status = 503
    tags = ("error_unavailable",)
    default_message = "Service unavailable: Redis is not answering"
