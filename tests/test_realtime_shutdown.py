"""A deploy doesn't disconnect users (contract §5): SIGTERM ends realtime connections at the
Engine.IO level, and socket.io-client 2.x and python-socketio 5 reconnect by themselves to the
next process and, subscribing with `since`, miss nothing written meanwhile.

The two processes share one Redis; the clients reach them through a TCP forwarder of the
test's own (one address, as behind a load balancer), switched from A to B just before A gets
its SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio

from tests.support.api import FAST_LIMITS, Api, unique
from tests.support.eio import login, wait_until

NODE_DIR = Path(__file__).parent / "node"
needs_node = pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_DIR / "node_modules" / "socket.io-client").is_dir(),
    reason="node and tests/node/node_modules (scripts/test installs them) are needed")


class Forwarder:
    """Accepts TCP connections and pipes each to `target` (a port), chosen at connect time."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> Forwarder:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        for task in (asyncio.create_task(self._pipe(reader, up_writer)),
                     asyncio.create_task(self._pipe(up_reader, writer))):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:  # one side ended: end the other, as a load balancer would
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class NodeClient:
    """tests/node/reconnect.js: socket.io-client 2 that resubscribes with `since` on connect."""

    def __init__(self, **options: Any) -> None:
        self.proc = subprocess.Popen(["node", str(NODE_DIR / "reconnect.js"), json.dumps(options)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [line for line in list(self.lines) if line["kind"] == kind]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


class PythonClient:
    """python-socketio 5 (EIO=4) doing the same: reconnects by itself, resubscribes with `since`."""

    def __init__(self, store: str) -> None:
        self.store = store
        self.sio = socketio.AsyncClient(reconnection=True, reconnection_delay=0.1,
                                        reconnection_delay_max=0.5, randomization_factor=0)
        self.last_id: str | None = None
        self.events: list[dict[str, Any]] = []
        self.acks: list[tuple[dict[str, Any], Any]] = []
        self.connects = 0
        self.disconnects: list[str] = []
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("entity.created", self._on_event)

    async def _on_connect(self) -> None:
        self.connects += 1
        request: dict[str, Any] = {"store": self.store}
        if self.last_id is not None:
            request["since"] = self.last_id
        await self.sio.emit("subscribe", request,
                            callback=lambda answer: self.acks.append((request, answer)))

    async def _on_disconnect(self, reason: Any = None) -> None:
        self.disconnects.append(str(reason))

    async def _on_event(self, event: dict[str, Any]) -> None:
        self.last_id = event["id"]
        self.events.append(event)


async def _write_until(stop: asyncio.Event, base: str, auth: dict[str, str], store: str,
                       written: list[tuple[float, str]]) -> None:
    async with httpx.AsyncClient(base_url=base, headers=auth, timeout=10) as http:
        n = 0
        while not stop.is_set():
            response = await http.post(f"/api/v1/{store}", json={"n": n})
            assert response.status_code == 201, response.text
            written.append((time.monotonic(), response.json()["_id"]))
            n += 1
            await asyncio.sleep(0.02)


@needs_node
async def test_sigterm_lets_both_clients_reconnect_to_the_next_process_and_recover(start_gateway):
    first, second = (start_gateway(env=FAST_LIMITS, wait=False) for _ in range(2))
    await wait_until(lambda: _ready(first.url) and _ready(second.url), timeout=30, interval=0.2)
    api = Api(first.url)
    user = api.create_user()
    sid = login(api, user)  # the browser-like node client's cookie
    # python-socketio is not a browser: it sends a bearer token (contract §5). (A Cookie header
    # would not survive its reconnect: python-engineio moves it into aiohttp's cookie jar, which
    # takes no cookies for an IP address.)
    issued = api.http.post("/api/v1/auth/token",
                           json={"login": user["login"], "password": user["password"]})
    assert issued.status_code == 200, issued.text
    bearer = {"Authorization": f"Bearer {issued.json()['token']}"}
    api.close()
    store = unique("deploy")
    forwarder = await Forwarder(first.port).start()
    node = NodeClient(url=forwarder.url, cookie=f"sid={sid}", store=store)
    python = PythonClient(store)
    stop_writing = asyncio.Event()
    written: list[tuple[float, str]] = []
    writer: asyncio.Task[None] | None = None
    try:
        await python.sio.connect(forwarder.url, headers=bearer,
                                 socketio_path="socket.io", wait_timeout=5)
        await wait_until(lambda: node.of("ack") and python.acks, timeout=10)
        assert node.of("ack")[0]["answer"] == {"success": True}
        assert python.acks[0][1] == {"success": True}

        writer = asyncio.create_task(_write_until(stop_writing, second.url, user["auth"], store,
                                                  written))
        await wait_until(lambda: len(node.of("event")) >= 5 and len(python.events) >= 5)

        forwarder.target = second.port  # whoever connects from now on reaches the next process
        assert first.proc is not None
        sigterm_at = time.monotonic()
        first.proc.send_signal(signal.SIGTERM)

        # Both come back by themselves and resubscribe from the last event they saw.
        try:
            await wait_until(lambda: len(node.of("ack")) >= 2 and len(python.acks) >= 2,
                             timeout=15, interval=0.05)
        except TimeoutError:
            raise AssertionError(
                f"not back: node {[l for l in node.lines if l['kind'] != 'event']}, python "
                f"connects={python.connects} disconnects={python.disconnects} "
                f"acks={python.acks}\nlogs {first.log_path} {second.log_path}") from None
        back_at = time.monotonic()
        for request, answer in (node.of("ack")[1]["request"], node.of("ack")[1]["answer"]), \
                python.acks[1]:
            assert "since" in request, request
            assert answer == {"success": True, "recovered": True}, answer
        await asyncio.sleep(0.3)
        stop_writing.set()
        await writer
        wanted = [entity_id for _, entity_id in written]
        assert any(sigterm_at <= at <= back_at for at, _ in written), "no write in the gap"

        def node_ids() -> list[str]:
            return [line["entityId"] for line in node.of("event")]

        def python_ids() -> list[str]:
            return [event["entityId"] for event in python.events]

        await wait_until(lambda: set(wanted) <= set(node_ids()) and
                         set(wanted) <= set(python_ids()), timeout=10)
        await asyncio.sleep(0.2)  # nothing more may arrive: no duplicates
        assert node_ids() == wanted  # every one, once, in order
        assert python_ids() == wanted

        # A lost connection, not a kick: no `41` ("io server disconnect" / "server disconnect").
        assert [line["reason"] for line in node.of("disconnect")] in (
            ["transport close"], ["transport error"]), node.lines
        assert python.connects == 2 and "server disconnect" not in python.disconnects, \
            python.disconnects
        code = await asyncio.get_running_loop().run_in_executor(None, first.proc.wait, 15)
        assert code == 0, first.logs()
    finally:
        stop_writing.set()
        if writer is not None:
            with contextlib.suppress(Exception):
                await writer
        node.close()
        with contextlib.suppress(Exception):
            await python.sio.disconnect()
        await forwarder.close()


def _ready(base: str) -> bool:
    try:
        return httpx.get(base + "/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
