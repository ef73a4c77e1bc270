"""Assertions on the contract's shapes (§2): the error envelope."""

from __future__ import annotations

import httpx

TAGS = {
    400: ["error_bad_request"],
    401: ["error_unauthorized"],
    403: ["error_credentials", "error_forbidden"],
    404: ["error_not_found"],
    409: ["error_conflict"],
    413: ["error_too_large"],
    429: ["error_rate_limited"],
    500: ["error_internal"],
}


def assert_envelope(response: httpx.Response, status: int) -> dict:
    """The response is `status` with exactly the error envelope, and a message in words."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"success", "code", "message", "tags"}, body
    assert body["success"] is False
    assert body["code"] == str(status)
    assert body["tags"] == TAGS[status]
    assert isinstance(body["message"], str) and len(body["message"]) > 3
    return body
