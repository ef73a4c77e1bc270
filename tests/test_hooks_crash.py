"""At least once (contract §6): a `gateway worker` killed with SIGKILL mid-delivery loses no
delivery — a new worker reclaims its jobs and sends them with the same webhook-id — and one
stopped with SIGTERM finishes what it started without duplicates."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator

import pytest

from tests.support.api import Api, unique
from tests.support.processes import GatewayProcess, RedisServer, wait_for
from tests.support.sink import Sink

TIMEOUT_S = "1.5"  # so the visibility timeout (hook timeout + 3 s) is short


@pytest.fixture(scope="module")
def cluster(start_gateway: Callable[..., GatewayProcess]) -> Iterator[tuple[Api, dict[str, str]]]:
    """A gateway that delivers nothing itself, on a Redis of its own."""
    redis = RedisServer().start()
    env = {"GATEWAY_REDIS_URL": redis.url, "GATEWAY_HOOK_TIMEOUT_S": TIMEOUT_S}
    serve = start_gateway(env={**env, "GATEWAY_HOOKS_WORKER": "off"})
    api = Api(serve.url)
    yield api, env
    api.close()
    serve.stop()
    redis.stop()


@pytest.fixture()
def start_worker(cluster, start_gateway: Callable[..., GatewayProcess],
                 ) -> Iterator[Callable[[], GatewayProcess]]:
    """Start `gateway worker` processes; those still running are stopped after the test."""
    started: list[GatewayProcess] = []

    def start() -> GatewayProcess:
        process = start_gateway(env=cluster[1], command=("worker",))
        started.append(process)
        wait_for(lambda: "hook worker started" in process.logs(), timeout=15,
                 what="the hook worker to start")
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture()
def sink() -> Iterator[Sink]:
    server = Sink()
    yield server
    server.close()


def subscribe_and_publish(api: Api, sink: Sink, count: int) -> tuple[str, list[str]]:
    store = unique("crash")
    made = api.http.post("/api/v1/hooks", headers=api.as_admin(),
                         json={"target_url": sink.url + "/slow", "event": "*", "store": store})
    assert made.status_code == 201, made.text
    event_ids = []
    for n in range(count):
        published = api.http.post("/api/v1/events", headers=api.as_admin(),
                                  json={"type": "order.paid", "store": store, "data": {"n": n}})
        assert published.status_code == 202, published.text
        event_ids.append(published.json()["id"])
    return made.json()["id"], event_ids


def delivered_ids(sink: Sink) -> list[str]:
    return [r.json()["id"] for r in sink.received("/slow")]


def final_statuses(api: Api, hook_id: str) -> dict[str, str]:
    log = api.http.get(f"/api/v1/hooks/{hook_id}/deliveries", headers=api.as_admin()).json()
    return {d["eventId"]: d["status"] for d in log}


def test_sigkill_mid_delivery_loses_nothing(cluster, start_worker, sink: Sink) -> None:
    api = cluster[0]
    sink.delay("/slow", 1.0)
    first = start_worker()
    hook_id, event_ids = subscribe_and_publish(api, sink, 12)
    sink.wait_for(1, "/slow")  # attempts are in flight, held by the slow sink
    first.kill()
    start_worker()
    wait_for(lambda: set(delivered_ids(sink)) >= set(event_ids), timeout=25,
             what="every event delivered after the kill")
    for request in sink.received("/slow"):
        assert request.headers["webhook-id"] == request.json()["id"]
    assert set(delivered_ids(sink)) == set(event_ids)
    wait_for(lambda: set(final_statuses(api, hook_id).values()) == {"succeeded"}, timeout=5,
             what="every delivery recorded as succeeded")


def test_sigterm_finishes_attempts_in_flight(cluster, start_worker, sink: Sink) -> None:
    """What a stopping worker started, it finishes and records; what it had not started, another
    worker delivers: every event exactly once."""
    api = cluster[0]
    sink.delay("/slow", 0.5)
    hook_id, event_ids = subscribe_and_publish(api, sink, 6)
    worker = start_worker()
    sink.wait_for(1, "/slow")
    assert worker.stop(signal.SIGTERM) == 0
    assert "hook worker stopped" in worker.logs()
    statuses = final_statuses(api, hook_id)
    assert all(statuses[event_id] == "succeeded" for event_id in delivered_ids(sink))
    start_worker()
    wait_for(lambda: set(delivered_ids(sink)) >= set(event_ids), timeout=10,
             what="the remaining events delivered")
    assert sorted(delivered_ids(sink)) == sorted(event_ids)
