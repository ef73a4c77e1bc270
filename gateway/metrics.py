"""Prometheus metrics: one registry per app, every metric declared here with its meaning.

Every labelled series whose label values are known in advance is created at 0 when the process
starts (contract §7): a dashboard or alert sees `gateway_realtime_connections{eio="4",
transport="polling"} 0` rather than no data, and `rate()`/`increase()` count the first
event after start-up, which a series born at 1 would hide. HTTP requests are labelled by route
and status as they happen; their label space is too wide to spell out.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

EIO_VERSIONS = ("3", "4")
TRANSPORTS = ("websocket", "polling")
EVENT_TYPES = ("entity.created", "entity.updated", "entity.deleted")  # and published ones
HOOK_RESULTS = ("succeeded", "failed", "dead", "gone")  # what a settled attempt comes to


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.http_requests = Counter(
            "gateway_http_requests_total", "HTTP requests answered, by route, method and status",
            ["route", "method", "status"], registry=registry)
        self.http_latency = Histogram(
            "gateway_http_request_duration_seconds", "Time to answer an HTTP request",
            ["route"], registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self.events_published = Counter(
            "gateway_events_published_total", "Events committed with their write, by type",
            ["type"], registry=registry)
        # Realtime
        self.connections = Gauge(
            "gateway_realtime_connections", "Open realtime connections, by EIO version and transport",
            ["eio", "transport"], registry=registry)
        self.events_received = Counter(
            "gateway_realtime_events_received_total", "Events received from Redis pub/sub",
            registry=registry)
        self.messages_delivered = Counter(
            "gateway_realtime_messages_delivered_total", "Event messages written to clients",
            registry=registry)
        self.slow_disconnects = Counter(
            "gateway_realtime_slow_consumer_disconnects_total",
            "Connections closed because they could not keep up", registry=registry)
        self.delivery_latency = Histogram(
            "gateway_realtime_delivery_latency_seconds",
            "From the event's commit to its write to a client's transport", registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5))
        # Hooks
        self.hook_deliveries = Counter(
            "gateway_hook_deliveries_total", "Hook delivery attempts, by result",
            ["result"], registry=registry)
        self.hook_attempt_latency = Histogram(
            "gateway_hook_attempt_duration_seconds", "Duration of one hook delivery attempt",
            registry=registry, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.hook_queue_depth = Gauge(
            "gateway_hook_queue_depth", "Hook deliveries waiting (queued or scheduled for retry)",
            registry=registry)
        self.hook_oldest_pending = Gauge(
            "gateway_hook_oldest_pending_seconds", "Age of the oldest hook delivery waiting",
            registry=registry)
        self._declare_known_series()

    def _declare_known_series(self) -> None:
        for eio in EIO_VERSIONS:
            for transport in TRANSPORTS:
                self.connections.labels(eio, transport)
        for kind in EVENT_TYPES:
            self.events_published.labels(kind)
        for result in HOOK_RESULTS:
            self.hook_deliveries.labels(result)
