"""Fixtures: one real redis-server for the session, real gateway processes on free ports.

Set GATEWAY_TEST_REDIS_URL to use a Redis you already run (its data is flushed).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from tests.support.api import FAST_LIMITS, Api
from tests.support.eio import login
from tests.support.processes import GatewayProcess, RedisServer


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    given = os.environ.get("GATEWAY_TEST_REDIS_URL")
    if given:
        redis.Redis.from_url(given).flushdb()
        yield given
        return
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def start_gateway(redis_url: str) -> Iterator[Callable[..., GatewayProcess]]:
    """Start a gateway with extra environment; all are stopped at the end of the session."""
    started: list[GatewayProcess] = []

    def start(env: dict[str, str] | None = None, command: tuple[str, ...] = ("serve",),
              wait: bool = True) -> GatewayProcess:
        process = GatewayProcess({"GATEWAY_REDIS_URL": redis_url, **(env or {})}, command)
        started.append(process)
        return process.start(wait=wait)

    yield start
    for process in started:  # signal them all first: they shut down side by side
        if process.proc and process.proc.poll() is None:
            process.proc.terminate()
    for process in started:
        process.stop()


@pytest.fixture(scope="session")
def gateway(start_gateway: Callable[..., GatewayProcess]) -> GatewayProcess:
    """The shared gateway with default settings."""
    return start_gateway()


@pytest.fixture()
def api(gateway: GatewayProcess) -> Iterator[Api]:
    client = Api(gateway.url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def client(start_gateway: Callable[..., GatewayProcess]) -> Iterator[Api]:
    """A gateway of the requesting module's own, with rate limits out of the way."""
    api = Api(start_gateway(env=FAST_LIMITS).url)
    yield api
    api.close()


@pytest.fixture(scope="module")
def user(gateway: GatewayProcess) -> Iterator[dict[str, Any]]:
    """A user of the shared gateway with a cookie session of its own (`sid`)."""
    api = Api(gateway.url)
    made = api.create_user()
    made["sid"] = login(api, made)
    yield made
    api.close()
