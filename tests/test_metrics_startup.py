"""A fresh gateway's /metrics already has every series a dashboard needs, at 0 (contract §7)."""

from __future__ import annotations

import re
from typing import Any

import httpx

SERIES_AT_ZERO = [
    *(f'gateway_realtime_connections{{eio="{eio}",transport="{transport}"}}'
      for eio in ("3", "4") for transport in ("websocket", "polling")),
    *(f'gateway_hook_deliveries_total{{result="{result}"}}'
      for result in ("succeeded", "failed", "dead", "gone")),
    *(f'gateway_events_published_total{{type="{kind}"}}'
      for kind in ("entity.created", "entity.updated", "entity.deleted")),
    "gateway_realtime_messages_delivered_total",
    "gateway_realtime_events_received_total",
    "gateway_realtime_slow_consumer_disconnects_total",
]


def test_a_fresh_process_shows_every_labelled_series_at_zero(start_gateway: Any) -> None:
    fresh = start_gateway()  # its own process: nothing has connected, published or delivered
    text = httpx.get(fresh.url + "/metrics", timeout=5).text
    samples = dict(re.findall(r"^(gateway_\S+) (\S+)$", text, re.MULTILINE))
    missing = [series for series in SERIES_AT_ZERO if series not in samples]
    assert not missing, f"absent from a fresh /metrics: {missing}"
    assert all(float(samples[series]) == 0 for series in SERIES_AT_ZERO), samples
