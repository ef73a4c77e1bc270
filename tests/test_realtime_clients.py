"""Reference clients against the gateway: socket.io-client@2 from npm (EIO=3) and
python-socketio 5 (EIO=4), over polling with the upgrade to websocket and websocket-only."""

from __future__ import annotations

import asyncio
import json
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio

from tests.support.eio import get_metrics, metric, wait_until

NODE_DIR = Path(__file__).parent / "node"
needs_node = pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_DIR / "node_modules" / "socket.io-client").is_dir(),
    reason="node and tests/node/node_modules (scripts/test installs them) are needed")

EVENT_KEYS = {"id", "type", "store", "entityId", "data", "timestamp"}


def assert_event(event: dict[str, Any], kind: str, store: str, entity: dict[str, Any]) -> None:
    """The contract's event shape (§4) for a write of `entity` in `store`."""
    expected_keys = EVENT_KEYS | ({"changes"} if kind == "entity.updated" else set())
    assert set(event) == expected_keys, event
    assert event["type"] == kind and event["store"] == store
    assert event["entityId"] == entity["_id"]
    assert isinstance(event["id"], str) and isinstance(event["timestamp"], int)
    assert event["data"]["_id"] == entity["_id"]


class NodePeer:
    """tests/node/peer.js as a subprocess; its JSON lines are read on a thread."""

    def __init__(self, **options: Any) -> None:
        self.proc = subprocess.Popen(["node", str(NODE_DIR / "peer.js"), json.dumps(options)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def expect(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        """The first line of `kind` not yet expected, in the order the peer printed them."""
        for line in self.seen:
            if line["kind"] == kind and not line.get("_taken"):
                line["_taken"] = True
                return line
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {kind!r} from the node peer; saw {self.seen}; "
                                     f"stderr: {self._stderr()}") from None
            self.seen.append(line)
            if line["kind"] == kind:
                line["_taken"] = True
                return line
            if line["kind"] in ("connect_error", "timeout"):
                raise AssertionError(f"node peer: {line} while waiting for {kind!r}")

    def _stderr(self) -> str:
        if self.proc.poll() is None:
            return "(running)"
        return self.proc.stderr.read() if self.proc.stderr else ""

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


def write_three(base: str, user: dict[str, Any], store: str) -> dict[str, Any]:
    """Create, update, delete one entity; returns it as created."""
    with httpx.Client(base_url=base, headers=user["auth"], timeout=10) as http:
        created = http.post(f"/api/v1/{store}", json={"n": 1, "drop": True})
        assert created.status_code == 201, created.text
        entity = created.json()
        assert http.patch(f"/api/v1/{store}/{entity['_id']}",
                          json={"n": 2, "drop": None}).status_code == 200
        assert http.delete(f"/api/v1/{store}/{entity['_id']}").status_code == 200
    return entity


def check_three(events: list[dict[str, Any]], store: str, entity: dict[str, Any]) -> None:
    kinds = ["entity.created", "entity.updated", "entity.deleted"]
    assert [e["type"] for e in events] == kinds
    for event, kind in zip(events, kinds):
        assert_event(event, kind, store, entity)
    assert events[1]["changes"] == {"n": 2, "drop": None}
    assert events[1]["data"]["n"] == 2 and "drop" not in events[1]["data"]
    assert events[2]["data"]["n"] == 2
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == 3


# -- socket.io-client@2, EIO=3 ------------------------------------------------------------------
@needs_node
def test_socketio_client_2_polling_upgrades_to_websocket_and_receives_changes(gateway, user):
    store = "nodeUpgrade"
    peer = NodePeer(url=gateway.url, cookie=f"sid={user['sid']}", subscribe=[{"store": store}],
                    transports=["polling", "websocket"], events=3)
    try:
        assert peer.expect("connect")["transport"] == "polling"
        assert peer.expect("upgrade")["transport"] == "websocket"
        assert peer.expect("ack")["answer"] == {"success": True}
        entity = write_three(gateway.url, user, store)
        events = [peer.expect("event") for _ in range(3)]
        assert all(line["transport"] == "websocket" for line in events)
        check_three([line["data"] for line in events], store, entity)
        peer.expect("done")
    finally:
        peer.close()


@needs_node
def test_socketio_client_2_websocket_only(gateway, user):
    store = "nodeWs"
    peer = NodePeer(url=gateway.url, cookie=f"sid={user['sid']}", transports=["websocket"],
                    subscribe=[{"store": store}], events=3)
    try:
        assert peer.expect("connect")["transport"] == "websocket"
        assert peer.expect("ack")["answer"] == {"success": True}
        entity = write_three(gateway.url, user, store)
        check_three([peer.expect("event")["data"] for _ in range(3)], store, entity)
    finally:
        peer.close()


@needs_node
@pytest.mark.parametrize("transports", [["polling", "websocket"], ["websocket"]])
def test_socketio_client_2_without_cookie_gets_connect_error(gateway, transports):
    for cookie in (None, "sid=forged"):
        peer = NodePeer(url=gateway.url, cookie=cookie, transports=transports,
                        subscribe=[{"store": "x"}])
        try:
            peer.expect("connect_error")
            assert not any(line["kind"] == "connect" for line in peer.seen)
        finally:
            peer.close()


# -- python-socketio 5, EIO=4 -------------------------------------------------------------------
async def sio_client(base: str, sid: str, transports: list[str],
                     store: str) -> tuple[socketio.AsyncClient, asyncio.Queue[dict[str, Any]]]:
    client = socketio.AsyncClient(reconnection=False)
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for name in ("entity.created", "entity.updated", "entity.deleted"):
        client.on(name, received.put_nowait)
    await client.connect(base, headers={"Cookie": f"sid={sid}"}, transports=transports,
                         socketio_path="socket.io", wait_timeout=5)
    assert await client.call("subscribe", {"store": store}, timeout=5) == {"success": True}
    return client, received


@pytest.mark.parametrize("transports", [["polling", "websocket"], ["websocket"]],
                         ids=["upgrade", "websocket-only"])
async def test_python_socketio_5_receives_changes(gateway, user, transports):
    store = "pyStore" + str(len(transports))
    client, received = await sio_client(gateway.url, user["sid"], transports, store)
    try:
        for _ in range(50):  # the upgrade runs in the background after connect
            if client.transport() == "websocket":
                break
            await asyncio.sleep(0.05)
        assert client.transport() == "websocket"
        entity = await asyncio.to_thread(write_three, gateway.url, user, store)
        events = [await asyncio.wait_for(received.get(), 5) for _ in range(3)]
        check_three(events, store, entity)
    finally:
        await client.disconnect()


async def test_python_socketio_5_polling_only(gateway, user):
    store = "pyPolling"
    client, received = await sio_client(gateway.url, user["sid"], ["polling"], store)
    try:
        assert client.transport() == "polling"
        entity = await asyncio.to_thread(write_three, gateway.url, user, store)
        check_three([await asyncio.wait_for(received.get(), 5) for _ in range(3)], store, entity)
    finally:
        await client.disconnect()


@pytest.mark.parametrize("transports", [["polling", "websocket"], ["websocket"]])
async def test_python_socketio_5_without_cookie_is_refused(gateway, transports):
    client = socketio.AsyncClient(reconnection=False)
    # python-engineio closes its HTTP session before reading a refusal's body, so the 401
    # (asserted exactly in test_realtime_raw) surfaces as either exception, depending on
    # whether the body arrived with the headers.
    with pytest.raises((socketio.exceptions.ConnectionError, RuntimeError)):
        await client.connect(gateway.url, transports=transports, socketio_path="socket.io",
                             wait_timeout=5)
    assert not client.connected


async def test_an_upgraded_connection_is_counted_under_websocket(gateway, user):
    name = "gateway_realtime_connections"
    before = get_metrics(gateway.url)
    client, _ = await sio_client(gateway.url, user["sid"], ["polling", "websocket"], "countStore")
    try:
        await wait_until(lambda: client.transport() == "websocket")
        await asyncio.sleep(0.1)
        during = get_metrics(gateway.url)
        assert metric(during, name, eio="4", transport="websocket") == \
            metric(before, name, eio="4", transport="websocket") + 1
        assert metric(during, name, eio="4", transport="polling") == \
            metric(before, name, eio="4", transport="polling")
    finally:
        await client.disconnect()
    await asyncio.sleep(0.3)
    after = get_metrics(gateway.url)
    for transport in ("websocket", "polling"):
        assert metric(after, name, eio="4", transport=transport) == \
            metric(before, name, eio="4", transport=transport)
