"""An HTTP client for tests, and helpers that make users through the real API."""

from __future__ import annotations

import base64
import itertools
import os
from typing import Any

import httpx

ADMIN = ("admin", "admin-password")
# Rate limits out of the way, for a module's own gateway that makes many requests as one user.
FAST_LIMITS = {"GATEWAY_RATE_LIMIT_PER_SECOND": "100000", "GATEWAY_RATE_LIMIT_PER_MINUTE": "1000000"}
_counter = itertools.count()


def basic(login: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()}


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid()}x{next(_counter)}"


def unique_address() -> str:
    """A client address of its own (via trusted X-Forwarded-For), so bans stay per test."""
    n = next(_counter) + os.getpid() * 7
    return f"198.18.{(n >> 8) & 255}.{n & 255}"


class Api:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=10)

    def close(self) -> None:
        self.http.close()

    def as_admin(self) -> dict[str, str]:
        return basic(*ADMIN)

    def create_user(self, login: str | None = None, password: str = "pw-123456",
                    groups: list[str] | None = None, roles: list[str] | None = None) -> dict[str, Any]:
        login = login or unique("user")
        body: dict[str, Any] = {"login": login, "password": password}
        if groups is not None:
            body["groups"] = groups
        if roles is not None:
            body["roles"] = roles
        response = self.http.post("/api/v1/users", json=body, headers=self.as_admin())
        assert response.status_code == 201, response.text
        user = response.json()
        user["password"] = password
        user["auth"] = basic(login, password)
        return user
