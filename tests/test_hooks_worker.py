"""A standalone `gateway worker`: its own /metrics (GATEWAY_WORKER_METRICS_PORT), removal of dead
consumers from the delivery group, and the bounded delivery log (GATEWAY__HOOK_LOG_MAX, an
internal knob, lowers the bound of 1000 so a test reaches it)."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import redis

from tests.support.api import Api, unique
from tests.support.processes import GatewayProcess, RedisServer, free_port, wait_for
from tests.support.sink import Sink


def test_worker_serves_metrics_and_removes_dead_consumers(
        start_gateway: Callable[..., GatewayProcess]) -> None:
    server = RedisServer().start()
    client = redis.Redis.from_url(server.url)
    try:
        client.xgroup_create("gw:hooks:jobs", "delivery", id="0", mkstream=True)
        client.execute_command("XGROUP", "CREATECONSUMER", "gw:hooks:jobs", "delivery", "ghost")
        # A consumer still holding a job is not removed, however idle: the job would be lost.
        client.xadd("gw:hooks:jobs", {"d": "nothing.here"})
        client.xreadgroup("delivery", "holder", {"gw:hooks:jobs": ">"}, count=1)
        port = free_port()
        worker = start_gateway(env={"GATEWAY_REDIS_URL": server.url,
                                    "GATEWAY_WORKER_METRICS_PORT": str(port),
                                    "GATEWAY__HOOK_DEAD_CONSUMER_S": "2",
                                    "GATEWAY_HOOK_TIMEOUT_S": "30"}, command=("worker",))
        wait_for(lambda: "hook worker started" in worker.logs(), timeout=15)

        def consumers() -> dict[str, int]:
            return {c["name"].decode(): c["pending"]
                    for c in client.xinfo_consumers("gw:hooks:jobs", "delivery")}

        wait_for(lambda: "ghost" not in consumers(), timeout=6, what="the ghost removed")
        assert consumers().get("holder") == 1
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert "gateway_hook_queue_depth" in text and "gateway_hook_oldest_pending_seconds" in text
        assert "gateway_hook_deliveries_total" in text
    finally:
        client.close()
        server.stop()


def test_the_log_keeps_the_newest_deliveries_and_trims_none_under_way(
        start_gateway: Callable[..., GatewayProcess]) -> None:
    server = RedisServer().start()
    client = redis.Redis.from_url(server.url)
    sink = Sink()
    try:
        process = start_gateway(env={"GATEWAY_REDIS_URL": server.url,
                                     "GATEWAY__HOOK_LOG_MAX": "5"})
        api = Api(process.url)
        store = unique("bound")
        sink.delay("/bound", 0.3)  # every delivery is still under way when the log passes 5
        made = api.http.post("/api/v1/hooks", headers=api.as_admin(),
                             json={"target_url": sink.url + "/bound", "event": "*",
                                   "store": store})
        assert made.status_code == 201, made.text
        hook_id = made.json()["id"]
        event_ids = []
        for n in range(12):
            published = api.http.post("/api/v1/events", headers=api.as_admin(),
                                      json={"type": "order.paid", "store": store, "data": {"n": n}})
            assert published.status_code == 202, published.text
            event_ids.append(published.json()["id"])
        received = sink.wait_for(12, "/bound", timeout=10)
        assert sorted(r.json()["id"] for r in received) == sorted(event_ids)

        def log() -> list[dict]:
            return api.http.get(f"/api/v1/hooks/{hook_id}/deliveries",
                                headers=api.as_admin()).json()

        wait_for(lambda: [d["status"] for d in log()] == ["succeeded"] * 5, timeout=5,
                 what="the 5 newest deliveries logged as succeeded")
        assert [d["eventId"] for d in log()] == event_ids[::-1][:5]
        time.sleep(0.2)
        # The trimmed ones left nothing behind once their outcome was recorded.
        assert len(list(client.scan_iter("gw:hook-delivery:*"))) == 5
        assert len(list(client.scan_iter("gw:hook-attempts:*"))) == 5
        api.close()
    finally:
        sink.close()
        client.close()
        server.stop()
