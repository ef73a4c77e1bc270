"""Hook retries, dead deliveries, manual retry, timeouts and metrics, on a gateway of their own
(its own Redis, so no other gateway's worker takes these jobs) with a short retry schedule."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.api import Api, unique
from tests.support.processes import GatewayProcess, RedisServer
from tests.support.sink import Sink

SCHEDULE = (0.2, 0.4)


@pytest.fixture(scope="module")
def fast(start_gateway: Callable[..., GatewayProcess]) -> Iterator[Api]:
    redis = RedisServer().start()
    process = start_gateway(env={"GATEWAY_REDIS_URL": redis.url,
                                 "GATEWAY_HOOK_RETRY_SCHEDULE": ",".join(map(str, SCHEDULE)),
                                 "GATEWAY_HOOK_TIMEOUT_S": "1"})
    client = Api(process.url)
    yield client
    client.close()
    process.stop()
    redis.stop()


@pytest.fixture()
def sink() -> Iterator[Sink]:
    server = Sink()
    yield server
    server.close()


def hook(api: Api, url: str, store: str) -> dict[str, Any]:
    response = api.http.post("/api/v1/hooks", headers=api.as_admin(),
                             json={"target_url": url, "event": "*", "store": store})
    assert response.status_code == 201, response.text
    return response.json()


def deliveries(api: Api, hook_id: str) -> list[dict[str, Any]]:
    response = api.http.get(f"/api/v1/hooks/{hook_id}/deliveries", headers=api.as_admin())
    assert response.status_code == 200, response.text
    return response.json()


def wait_status(api: Api, hook_id: str, status: str, timeout: float = 5) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        latest = deliveries(api, hook_id)
        if latest and latest[0]["status"] == status:
            return latest[0]
        assert time.monotonic() < deadline, f"no {status!r} delivery: {latest}"
        time.sleep(0.05)


def produce(api: Api, store: str) -> dict[str, Any]:
    response = api.http.post(f"/api/v1/{store}", json={"n": 1}, headers=api.as_admin())
    assert response.status_code == 201, response.text
    return response.json()


def test_retries_follow_the_schedule_then_succeed_with_the_same_id(fast: Api, sink: Sink) -> None:
    store = unique("retry")
    sink.respond("/flaky", 500, 503, 200)
    made = hook(fast, sink.url + "/flaky", store)
    produce(fast, store)
    first, second, third = sink.wait_for(3, "/flaky")
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == \
        third.headers["webhook-id"] == first.json()["id"]
    assert first.body == second.body == third.body
    assert second.at - first.at >= SCHEDULE[0] - 0.02
    assert third.at - second.at >= SCHEDULE[1] - 0.02
    delivery = wait_status(fast, made["id"], "succeeded")
    assert [a["statusCode"] for a in delivery["attempts"]] == [500, 503, 200]
    assert delivery["attempts"][0]["error"] == "HTTP 500"


def test_dead_after_the_schedule_then_manual_retry_delivers(fast: Api, sink: Sink) -> None:
    store = unique("dead")
    sink.respond("/down", 500)
    made = hook(fast, sink.url + "/down", store)
    produce(fast, store)
    sink.wait_for(1 + len(SCHEDULE), "/down")
    delivery = wait_status(fast, made["id"], "dead")
    assert len(delivery["attempts"]) == 1 + len(SCHEDULE)
    assert delivery["nextAttemptAt"] is None
    time.sleep(0.6)
    assert len(sink.received("/down")) == 1 + len(SCHEDULE)  # nothing after dead

    sink.respond("/down", 200)
    retried = fast.http.post(
        f"/api/v1/hooks/{made['id']}/deliveries/{delivery['id']}/retry", headers=fast.as_admin())
    assert retried.status_code == 202, retried.text
    requests = sink.wait_for(2 + len(SCHEDULE), "/down")
    assert {r.headers["webhook-id"] for r in requests} == {delivery["eventId"]}
    assert wait_status(fast, made["id"], "succeeded")["id"] == delivery["id"]


def test_a_hanging_target_times_out_without_blocking_others(fast: Api, sink: Sink) -> None:
    store = unique("hang")
    sink.delay("/hang", 60)
    hanging = hook(fast, sink.url + "/hang", store)
    hook(fast, sink.url + "/ok", store)
    started = time.monotonic()
    for _ in range(20):
        produce(fast, store)
    sink.wait_for(20, "/ok", timeout=5)
    assert time.monotonic() - started < 2.5, "the healthy target waited for the hanging one"
    failed = wait_status(fast, hanging["id"], "failed", timeout=5)
    assert failed["attempts"][0]["error"].startswith("timed out")
    assert failed["attempts"][0]["statusCode"] is None
    assert 900 <= failed["attempts"][0]["durationMs"] < 3000
    fast.http.delete(f"/api/v1/hooks/{hanging['id']}", headers=fast.as_admin())


def test_metrics_count_deliveries_by_result(fast: Api, sink: Sink) -> None:
    store = unique("metrics")
    hook(fast, sink.url + "/m", store)
    produce(fast, store)
    sink.wait_for(1, "/m")
    time.sleep(1.2)  # queue gauges are refreshed every second
    text = fast.http.get("/metrics").text
    assert 'gateway_hook_deliveries_total{result="succeeded"}' in text
    assert "gateway_hook_attempt_duration_seconds_count" in text
    assert "gateway_hook_queue_depth" in text and "gateway_hook_oldest_pending_seconds" in text
