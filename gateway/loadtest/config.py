"""What one load-test run does, parsed once from the command line and passed down explicitly."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Target:
    """Where the clients connect: `http://host:port` plus the Socket.IO path."""

    host: str
    port: int
    path: str = "/socket.io/"

    @classmethod
    def from_url(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "ws"):
            raise ValueError(f"--url must be http://host:port (got {url!r}); TLS is not supported")
        if not parts.hostname:
            raise ValueError(f"--url has no host: {url!r}")
        return cls(parts.hostname, parts.port or 80)

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """How each realtime client behaves; shared by every worker process."""

    target: Target
    eio: int = 3
    # "gateway": cookie auth and a `subscribe` to `store`; "peer": plain connect, no subscribe.
    mode: str = "gateway"
    store: str = "bench"
    cookie: str = ""
    # Seconds one client may take from TCP connect to subscribed.
    connect_timeout_s: float = 30.0
    # Clients connecting at once in one worker process.
    connect_concurrency: int = 200


@dataclass(frozen=True, slots=True)
class RunConfig:
    """The whole run: clients, events and how they are produced, what to write."""

    url: str
    login: str
    password: str
    clients: int
    events: int
    # Events per second; 0 = as fast as the publisher goes (`--concurrency` requests in flight).
    rate: float = 10.0
    eio: int = 3
    store: str = "bench"
    procs: int = 1
    publish: str = "rest"
    target: str = "gateway"
    server_pid: int | None = None
    # Bytes of padding in each message's data, to make the payload about 100 bytes.
    payload_pad: int = 60
    publish_concurrency: int = 8
    connect_timeout_s: float = 30.0
    connect_concurrency: int = 200
    # Seconds to wait after the last publish for deliveries still in flight.
    drain_timeout_s: float = 30.0
    # Seconds to hold the connections idle (heartbeats on) before publishing.
    hold_s: float = 0.0
    json_path: str | None = None
    plot_path: str | None = None
    progress: bool = True
    redis_url: str | None = None
    # Niceness added to the client processes (see worker.WorkerSpec.nice).
    worker_nice: int = 10
