"""`python -m gateway.conformance`: what the public engine.io-protocol (v3, main) and
socket.io-protocol (main) test suites check, asserted on the wire against a real server process.

pingInterval 300 ms, pingTimeout 200 ms, as the suites expect; see docs/conformance.md.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.processes import ROOT, free_port, wait_for

PING_INTERVAL, PING_TIMEOUT = 300, 200
HANDSHAKE_KEYS = {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gateway.conformance", "--port", str(port)],
                            cwd=ROOT)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/engine.io/?EIO=4&transport=polling").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(answers, timeout=15, what="the conformance server")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
async def http(base: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        yield client


def ws_url(base: str, path: str, eio: int, **extra: str) -> str:
    query = "&".join([f"EIO={eio}", "transport=websocket", *(f"{k}={v}" for k, v in extra.items())])
    return base.replace("http://", "ws://") + f"/{path}/?{query}"


async def recv(ws: ClientConnection, timeout: float = 2.0) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), timeout)


async def closed_within(ws: ClientConnection, timeout: float = 2.0) -> None:
    """The server closes the socket; frames sent before the close are skipped."""
    with pytest.raises(ConnectionClosed):
        while True:
            await recv(ws, timeout)


async def open_polling(http: httpx.AsyncClient, path: str, eio: int, **extra: str) -> str:
    response = await http.get(f"/{path}/", params={"EIO": eio, "transport": "polling", **extra})
    assert response.status_code == 200
    text = response.text
    if eio == 3:
        length, _, text = text.partition(":")
        assert int(length) == len(text)
    return str(json.loads(text[1:])["sid"])


def poll_params(eio: int, sid: str) -> dict[str, Any]:
    return {"EIO": eio, "transport": "polling", "sid": sid}


async def push(http: httpx.AsyncClient, eio: int, sid: str, body: str,
               path: str = "engine.io") -> httpx.Response:
    return await http.post(f"/{path}/", params=poll_params(eio, sid), content=body)


async def poll(http: httpx.AsyncClient, eio: int, sid: str,
               path: str = "engine.io") -> httpx.Response:
    return await http.get(f"/{path}/", params=poll_params(eio, sid))


# -- handshake ------------------------------------------------------------------------------------


async def test_v3_polling_handshake_is_one_length_prefixed_open_packet(
        http: httpx.AsyncClient) -> None:
    response = await http.get("/engine.io/", params={"EIO": 3, "transport": "polling", "b64": 1})
    length, _, packet = response.text.partition(":")
    assert int(length) == len(packet) and packet.startswith("0")
    value = json.loads(packet[1:])
    assert value["upgrades"] == ["websocket"]
    assert (value["pingInterval"], value["pingTimeout"]) == (PING_INTERVAL, PING_TIMEOUT)
    assert value.get("maxPayload") in (None, 1_000_000)


@pytest.mark.parametrize("path", ["engine.io", "socket.io"])
async def test_v4_polling_handshake_has_exactly_the_five_keys(http: httpx.AsyncClient,
                                                               path: str) -> None:
    response = await http.get(f"/{path}/", params={"EIO": 4, "transport": "polling"})
    assert response.status_code == 200 and response.text.startswith("0")
    value = json.loads(response.text[1:])
    assert set(value) == HANDSHAKE_KEYS
    assert value["upgrades"] == ["websocket"] and value["maxPayload"] == 1_000_000
    assert (value["pingInterval"], value["pingTimeout"]) == (PING_INTERVAL, PING_TIMEOUT)


@pytest.mark.parametrize("eio", [3, 4])
async def test_websocket_handshake_offers_no_upgrades(base: str, eio: int) -> None:
    async with connect(ws_url(base, "engine.io", eio)) as ws:
        frame = await recv(ws)
        assert isinstance(frame, str) and frame.startswith("0")
        value = json.loads(frame[1:])
        assert value["upgrades"] == [] and value["pingInterval"] == PING_INTERVAL


@pytest.mark.parametrize("params", [
    {"transport": "polling"}, {"EIO": "abc", "transport": "polling"},
    {"EIO": 5, "transport": "polling"},
    {"EIO": 4}, {"EIO": 4, "transport": "abc"}, {"EIO": 3, "transport": "websocket"},
    {"EIO": 4, "transport": "polling", "sid": "unknown"},
])
async def test_bad_http_requests_are_400(http: httpx.AsyncClient, params: dict[str, Any]) -> None:
    for path in ("engine.io", "socket.io"):
        response = await http.get(f"/{path}/", params=params)
        assert response.status_code == 400, (path, params)
        assert set(response.json()) == {"code", "message"}


@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_a_handshake_must_be_a_get(http: httpx.AsyncClient, method: str) -> None:
    response = await http.request(method, "/engine.io/", params={"EIO": 4, "transport": "polling"})
    assert response.status_code == 400


@pytest.mark.parametrize("query", ["transport=websocket", "EIO=abc&transport=websocket", "EIO=4",
                                   "EIO=4&transport=abc", "EIO=4&transport=websocket&sid=nope"])
async def test_bad_websocket_requests_are_refused_with_400(base: str, query: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(base.replace("http://", "ws://") + f"/engine.io/?{query}"):
            pass
    assert refused.value.response.status_code == 400


# -- Engine.IO echo -------------------------------------------------------------------------------


@pytest.mark.parametrize(("eio", "body", "echo"), [
    (3, "6:4hello", "6:4hello"),
    (3, "6:4test16:4test26:4test3", "6:4test16:4test26:4test3"),
    (3, "6:4hello10:b4AQIDBA==", "6:4hello10:b4AQIDBA=="),
    (4, "4hello", "4hello"),
    (4, "4test1\x1e4test2\x1e4test3", "4test1\x1e4test2\x1e4test3"),
    (4, "4hello\x1ebAQIDBA==", "4hello\x1ebAQIDBA=="),
])
async def test_polling_echo_keeps_the_payload_framing(http: httpx.AsyncClient, eio: int, body: str,
                                                      echo: str) -> None:
    sid = await open_polling(http, "engine.io", eio, **({"b64": "1"} if eio == 3 else {}))
    pushed = await push(http, eio, sid, body)
    assert (pushed.status_code, pushed.text) == (200, "ok")
    polled = await poll(http, eio, sid)  # no b64: remembered
    assert (polled.status_code, polled.text) == (200, echo)


async def test_v3_polling_echo_is_binary_framed_without_b64(http: httpx.AsyncClient) -> None:
    sid = await open_polling(http, "engine.io", 3)
    await push(http, 3, sid, "6:4hello10:b4AQIDBA==")
    polled = await poll(http, 3, sid)
    assert polled.content == bytes([0, 6, 255, 52, 104, 101, 108, 108, 111,
                                    1, 5, 255, 4, 1, 2, 3, 4])


@pytest.mark.parametrize(("eio", "binary"), [(3, bytes([4, 1, 2, 3, 4])), (4, bytes([1, 2, 3, 4]))])
async def test_websocket_echo_of_text_and_binary(base: str, eio: int, binary: bytes) -> None:
    async with connect(ws_url(base, "engine.io", eio)) as ws:
        await recv(ws)
        await ws.send("4hello")
        assert await recv(ws) == "4hello"
        await ws.send(binary)
        assert await recv(ws) == binary


@pytest.mark.parametrize("eio", [3, 4])
async def test_invalid_polling_payload_is_400_and_ends_the_session(http: httpx.AsyncClient,
                                                                   eio: int) -> None:
    sid = await open_polling(http, "engine.io", eio)
    pushed = await push(http, eio, sid, "abc" if eio == 3 else "")
    assert pushed.status_code == 400
    assert (await poll(http, eio, sid)).status_code == 400


@pytest.mark.parametrize("eio", [3, 4])
async def test_invalid_websocket_packet_closes_the_socket(base: str, eio: int) -> None:
    async with connect(ws_url(base, "engine.io", eio)) as ws:
        await recv(ws)
        await ws.send("abc")
        await closed_within(ws, 1)


# -- heartbeat ------------------------------------------------------------------------------------


async def test_v3_client_pings_are_answered_over_polling(http: httpx.AsyncClient) -> None:
    sid = await open_polling(http, "engine.io", 3, b64="1")
    for _ in range(3):
        assert (await push(http, 3, sid, "1:2")).text == "ok"
        assert (await poll(http, 3, sid)).text == "1:3"


async def test_v3_silent_polling_session_is_gone_after_interval_plus_timeout(
        http: httpx.AsyncClient) -> None:
    sid = await open_polling(http, "engine.io", 3, b64="1")
    await asyncio.sleep((PING_INTERVAL + PING_TIMEOUT) / 1000)
    assert (await push(http, 3, sid, "1:2")).status_code == 400


async def test_v4_server_pings_over_polling_and_a_missed_pong_ends_it(
        http: httpx.AsyncClient) -> None:
    sid = await open_polling(http, "engine.io", 4)
    for _ in range(2):
        assert (await poll(http, 4, sid)).text == "2"
        assert (await push(http, 4, sid, "3")).text == "ok"
    silent = await open_polling(http, "engine.io", 4)
    await asyncio.sleep((PING_INTERVAL + PING_TIMEOUT) / 1000)
    assert (await poll(http, 4, silent)).status_code == 400


@pytest.mark.parametrize("eio", [3, 4])
async def test_websocket_heartbeat_and_timeout(base: str, eio: int) -> None:
    async with connect(ws_url(base, "engine.io", eio)) as ws:
        await recv(ws)
        for _ in range(3):
            if eio == 3:
                await ws.send("2")
                assert await recv(ws) == "3"
            else:
                assert await recv(ws, 0.5) == "2"
                await ws.send("3")
    async with connect(ws_url(base, "engine.io", eio)) as silent:
        started = asyncio.get_running_loop().time()
        await closed_within(silent)
        elapsed = asyncio.get_running_loop().time() - started
        assert 0.45 <= elapsed < 0.8


# -- close ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("eio", "close", "noop"), [(3, "1:1", "1:6"), (4, "1", "6")])
async def test_client_close_over_polling_releases_the_pending_get(
        http: httpx.AsyncClient, eio: int, close: str, noop: str) -> None:
    sid = await open_polling(http, "engine.io", eio, b64="1")
    pending = asyncio.create_task(poll(http, eio, sid))
    await asyncio.sleep(0.05)
    await push(http, eio, sid, close)
    assert (await pending).text == noop
    assert (await poll(http, eio, sid)).status_code == 400


async def test_duplicate_polls_close_the_session(http: httpx.AsyncClient) -> None:
    sid = await open_polling(http, "engine.io", 4)
    first = asyncio.create_task(poll(http, 4, sid))
    await asyncio.sleep(0.05)
    second = await poll(http, 4, sid)
    assert second.status_code == 400
    assert ((await first).status_code, (await first).text) == (200, "1")
    assert (await poll(http, 4, sid)).status_code == 400


@pytest.mark.parametrize("eio", [3, 4])
async def test_client_close_over_websocket(base: str, eio: int) -> None:
    async with connect(ws_url(base, "engine.io", eio)) as ws:
        await recv(ws)
        await ws.send("1")
        await closed_within(ws, 1)


# -- upgrade --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("eio", "noop"), [(3, "1:6"), (4, "6")])
async def test_upgrade_from_polling_to_websocket(http: httpx.AsyncClient, base: str, eio: int,
                                                 noop: str) -> None:
    sid = await open_polling(http, "engine.io", eio, b64="1")
    async with connect(ws_url(base, "engine.io", eio, sid=sid)) as ws:
        await ws.send("2probe")
        assert await recv(ws) == "3probe"
        assert (await poll(http, eio, sid)).text == noop
        await ws.send("5")
        await ws.send("4hello")
        assert await recv(ws) == "4hello"
        # polling is over, and the sid cannot be upgraded twice
        assert (await poll(http, eio, sid)).status_code == 400
        async with connect(ws_url(base, "engine.io", eio, sid=sid)) as again:
            await closed_within(again, 1)
        await ws.send("4still here")
        assert await recv(ws) == "4still here"


async def test_a_get_racing_the_upgrade_is_refused(http: httpx.AsyncClient, base: str) -> None:
    """socket.io-protocol sends 2probe and 5 back to back, then polls: that GET gets 400."""
    sid = await open_polling(http, "socket.io", 4)
    async with connect(ws_url(base, "socket.io", 4, sid=sid)) as ws:
        await ws.send("2probe")
        await ws.send("5")
        assert (await poll(http, 4, sid, "socket.io")).status_code == 400


# -- Socket.IO ------------------------------------------------------------------------------------


async def sio_socket(base: str, connect_packet: str | None = "40") -> ClientConnection:
    ws = await connect(ws_url(base, "socket.io", 4))
    await recv(ws)  # Engine.IO handshake
    if connect_packet is not None:
        await ws.send(connect_packet)
    return ws


async def frames(ws: ClientConnection, count: int) -> list[str | bytes]:
    """The next `count` frames, pings left out."""
    out: list[str | bytes] = []
    while len(out) < count:
        frame = await recv(ws)
        if frame != "2":
            out.append(frame)
    return out


@pytest.mark.parametrize(("packet", "prefix", "auth"), [
    ("40", "40", '42["auth",{}]'),
    ('40{"token":"123"}', "40", '42["auth",{"token":"123"}]'),
    ("40/custom,", "40/custom,", '42/custom,["auth",{}]'),
    ('40/custom,{"token":"abc"}', "40/custom,", '42/custom,["auth",{"token":"abc"}]'),
])
async def test_connect_answers_sid_then_echoes_auth(base: str, packet: str, prefix: str,
                                                    auth: str) -> None:
    ws = await sio_socket(base, packet)
    reply, auth_event = await frames(ws, 2)
    assert isinstance(reply, str) and reply.startswith(prefix)
    assert set(json.loads(reply[len(prefix):])) == {"sid"}
    assert auth_event == auth
    await ws.close()


async def test_unknown_namespace_is_refused(base: str) -> None:
    ws = await sio_socket(base, "40/random")
    assert await frames(ws, 1) == ['44/random,{"message":"Invalid namespace"}']
    await ws.close()


@pytest.mark.parametrize("packet", [None, "4abc", "42{}", '42abc["message-with-ack",1]'])
async def test_no_or_bad_handshake_and_bad_packets_close_the_connection(base: str,
                                                                        packet: str | None) -> None:
    ws = await sio_socket(base, None)
    if packet is not None:
        if packet.startswith("42"):
            await ws.send("40")
            await frames(ws, 2)
        await ws.send(packet)
    await closed_within(ws)


async def test_a_client_that_joins_no_namespace_is_closed_after_the_connect_timeout(
        base: str) -> None:
    ws = await sio_socket(base, None)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ConnectionClosed):
        while True:
            if await recv(ws) == "2":
                await ws.send("3")  # heartbeat kept: only the connect timeout (1 s) can end it
    assert 0.95 <= asyncio.get_running_loop().time() - started < 1.5


async def test_leaving_namespaces(base: str) -> None:
    ws = await sio_socket(base)
    await frames(ws, 2)
    await ws.send("40/custom")
    await frames(ws, 2)
    await ws.send("41/custom")
    await ws.send('42["message","message to main namespace"]')
    assert await frames(ws, 1) == ['42["message-back","message to main namespace"]']
    await ws.send("41")
    assert await recv(ws, 0.5) == "2"  # still connected at the Engine.IO level
    await ws.close()


@pytest.mark.parametrize(("sent", "expected"), [
    ('42["message",1,"2",{"3":[true]}]', '42["message-back",1,"2",{"3":[true]}]'),
    ('42456["message-with-ack",1,"2",{"3":[false]}]', '43456[1,"2",{"3":[false]}]'),
])
async def test_events_and_acks(base: str, sent: str, expected: str) -> None:
    ws = await sio_socket(base)
    await frames(ws, 2)
    await ws.send(sent)
    assert await frames(ws, 1) == [expected]
    await ws.close()


@pytest.mark.parametrize(("sent", "expected"), [
    ('452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
     '452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'),
    ('452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
     '462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'),
])
async def test_binary_events_and_acks(base: str, sent: str, expected: str) -> None:
    ws = await sio_socket(base)
    await frames(ws, 2)
    await ws.send(sent)
    await ws.send(bytes([1, 2, 3]))
    await ws.send(bytes([4, 5, 6]))
    assert await frames(ws, 3) == [expected, bytes([1, 2, 3]), bytes([4, 5, 6])]
    await ws.close()


def v3_packets(payload: str) -> list[str]:
    """Split a v3 text payload (``<length>:<packet>`` repeated)."""
    packets = []
    while payload:
        length, _, rest = payload.partition(":")
        packets.append(rest[:int(length)])
        payload = rest[int(length):]
    return packets


async def test_socketio_v3_joins_root_implicitly_and_echoes_over_polling(
        http: httpx.AsyncClient) -> None:
    response = await http.get("/socket.io/", params={"EIO": 3, "transport": "polling", "b64": 1})
    opened, connected, auth = v3_packets(response.text)
    assert (connected, auth) == ("40", '42["auth",{}]')
    sid = json.loads(opened[1:])["sid"]
    event = '42["message",1,"2",{"3":[true]}]'
    body = f"{len(event)}:{event}"
    assert (await push(http, 3, sid, body, "socket.io")).text == "ok"
    polled = await poll(http, 3, sid, "socket.io")
    assert v3_packets(polled.text) == ['42["message-back",1,"2",{"3":[true]}]']
