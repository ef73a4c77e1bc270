"""Dynamic subscriptions: a process receives the events of the stores its connections watch,
and only those (one pub/sub channel per store), without missing any from a subscribe's ack on."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.api import FAST_LIMITS, Api, unique
from tests.support.eio import Client, get_metrics, metric


@pytest.fixture(scope="module")
def gateway_url(start_gateway) -> str:
    return start_gateway(env=FAST_LIMITS).url


def received(base: str) -> float:
    return metric(get_metrics(base), "gateway_realtime_events_received_total")


async def test_a_process_receives_only_the_stores_its_connections_watch(gateway_url: str) -> None:
    api = Api(gateway_url)
    user = api.create_user()
    watched, unwatched = unique("watched"), unique("unwatched")
    client = await Client.connect(gateway_url, headers=user["auth"])
    assert (await client.subscribe(store=watched))["success"]
    before = received(gateway_url)
    for _ in range(10):
        api.http.post(f"/api/v1/{unwatched}", json={"n": 1}, headers=user["auth"])
    for _ in range(5):
        api.http.post(f"/api/v1/{watched}", json={"n": 1}, headers=user["auth"])
    events = [await client.next_event() for _ in range(5)]
    assert {event["store"] for _, event in events} == {watched}
    await asyncio.sleep(0.3)
    assert received(gateway_url) - before == 5  # the 10 of the unwatched store never came
    await client.close()
    api.close()


async def test_the_first_subscriber_of_a_store_misses_nothing_written_after_its_ack(
        gateway_url: str) -> None:
    api = Api(gateway_url)
    user = api.create_user()
    for _ in range(5):
        store = unique("fresh")  # a store this process has never watched
        client = await Client.connect(gateway_url, headers=user["auth"])
        assert (await client.subscribe(store=store))["success"]
        made = api.http.post(f"/api/v1/{store}", json={"n": 1}, headers=user["auth"]).json()
        _, event = await client.next_event(timeout=5)
        assert event["entityId"] == made["_id"]
        await client.close()
    api.close()
