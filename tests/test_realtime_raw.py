"""Contract §5 on the wire: exact Engine.IO frames over a raw websocket, the heartbeat of each
version, the handshake's refusals (401/400/403) on both transports, garbage input, /metrics and
a clean SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.api import Api
from tests.support.asserts import assert_envelope
from tests.support.eio import (
    Client,
    closed_within,
    cookie,
    decode_v3_payload,
    get_metrics,
    handshake,
    login,
    metric,
    open_polling,
    open_ws,
    poll,
    polling_path,
    recv,
)
from tests.support.processes import GatewayProcess

ALLOWED = "https://app.example.com"


@pytest.fixture(scope="module")
def quick(start_gateway: Any) -> GatewayProcess:
    """A gateway with a fast heartbeat and one allowed browser origin."""
    return start_gateway({"GATEWAY_PING_INTERVAL_MS": "300", "GATEWAY_PING_TIMEOUT_MS": "200",
                          "GATEWAY_ALLOWED_ORIGINS": ALLOWED})


@pytest.fixture(scope="module")
def quick_sid(quick: GatewayProcess, user: dict[str, Any]) -> str:
    api = Api(quick.url)  # same Redis: the user exists; a session of its own is still fresh
    try:
        return login(api, user)
    finally:
        api.close()


# -- the open packet and the heartbeat -------------------------------------------------------
async def test_eio3_first_frames_are_the_open_packet_then_40(gateway, user):
    ws = await open_ws(gateway.url, eio=3, headers=cookie(user["sid"]))
    first = await recv(ws)
    assert isinstance(first, str)
    sid = json.loads(first[1:])["sid"]
    assert first == ('0{"sid":"%s","upgrades":[],"pingInterval":25000,"pingTimeout":60000}' % sid)
    assert await recv(ws) == "40"
    await ws.send("2")
    assert await recv(ws) == "3"
    await ws.send("2probe")
    assert await recv(ws) == "3probe"
    await ws.close()


async def test_open_packet_numbers_follow_the_settings(quick, quick_sid):
    ws = await open_ws(quick.url, eio=3, headers=cookie(quick_sid))
    opened = await handshake(ws, eio=3)
    assert (opened["pingInterval"], opened["pingTimeout"]) == (300, 200)
    await ws.close()


async def test_eio3_silent_client_is_closed_after_interval_plus_timeout(quick, quick_sid):
    ws = await open_ws(quick.url, eio=3, headers=cookie(quick_sid))
    await handshake(ws, eio=3)
    started = time.monotonic()
    await asyncio.sleep(0.35)
    assert ws.close_code is None, "closed before pingInterval + pingTimeout"
    await closed_within(ws, 2.0)
    assert 0.45 <= time.monotonic() - started <= 1.6


async def test_eio3_client_that_keeps_pinging_stays(quick, quick_sid):
    ws = await open_ws(quick.url, eio=3, headers=cookie(quick_sid))
    await handshake(ws, eio=3)
    for _ in range(8):  # 1.6 s, three times pingInterval + pingTimeout
        await asyncio.sleep(0.2)
        await ws.send("2")
        assert await recv(ws, 1) == "3"
    assert ws.close_code is None
    await ws.close()


async def test_eio4_server_pings_and_a_client_that_answers_stays(quick, quick_sid):
    ws = await open_ws(quick.url, eio=4, headers=cookie(quick_sid))
    opened = await handshake(ws, eio=4)
    assert opened["pingInterval"] == 300 and opened["pingTimeout"] == 200
    assert opened["upgrades"] == []
    pings = 0
    deadline = time.monotonic() + 1.6
    while time.monotonic() < deadline:
        frame = await recv(ws, 1)
        assert frame == "2"
        pings += 1
        await ws.send("3")
    assert pings >= 3
    assert ws.close_code is None
    await ws.close()


async def test_eio4_client_that_does_not_answer_is_closed_after_ping_timeout(quick, quick_sid):
    ws = await open_ws(quick.url, eio=4, headers=cookie(quick_sid))
    await handshake(ws, eio=4)
    started = time.monotonic()
    assert await recv(ws, 1) == "2"
    pinged = time.monotonic()
    await closed_within(ws, 2.0)
    assert pinged - started <= 0.6
    assert 0.15 <= time.monotonic() - pinged <= 1.0


# -- garbage ----------------------------------------------------------------------------------
GARBAGE: list[str | bytes] = [b"\x00\xff\xfe junk \x80", "9", "4{bad", "", "42[", "42{\"a\":1}",
                              "4" + "x" * (2 * 1024 * 1024), "0", "5", "6"]


@pytest.mark.parametrize("junk", GARBAGE, ids=lambda j: repr(j[:12]))
async def test_garbage_frames_close_or_are_ignored_and_the_process_lives_on(gateway, user, junk):
    ws = await open_ws(gateway.url, eio=3, headers=cookie(user["sid"]))
    await handshake(ws, eio=3)
    frames: list[str | bytes] = []
    try:
        # The server may refuse a huge frame before it has all arrived: the send fails then.
        await ws.send(junk)
        await ws.send("2")
        while not frames or frames[-1] != "3":
            frames.append(await recv(ws, 2))
        outcome = "ignored"
    except ConnectionClosed:
        outcome = "closed"
    # Either the session shrugged it off and still answers pings, or it closed the socket;
    # if it said anything before closing, it was the Socket.IO/Engine.IO close packets.
    assert outcome == "ignored" or all(f in ("41", "1") for f in frames), (outcome, frames)
    await ws.close()
    # The process still serves everyone else.
    other = await Client.connect(gateway.url, eio=3, headers=cookie(user["sid"]))
    assert await other.subscribe(store="garbageProbe") == {"success": True}
    await other.close()
    assert httpx.get(gateway.url + "/healthz").status_code == 200


# -- handshake refusals -------------------------------------------------------------------------
async def ws_refusal(url: str, *, eio: Any = 3, headers: dict[str, str] | None = None,
                     **extra: str) -> httpx.Response:
    with pytest.raises(InvalidStatus) as refused:
        ws = await open_ws(url, eio=eio, headers=headers, **extra)
        await ws.close()
    response = refused.value.response
    return httpx.Response(response.status_code, headers=dict(response.headers.raw_items()),
                          content=bytes(response.body or b""))


@pytest.mark.parametrize("eio", [3, 4])
async def test_no_credentials_is_401_with_the_envelope_on_both_transports(gateway, eio):
    assert_envelope(await ws_refusal(gateway.url, eio=eio), 401)
    assert_envelope(httpx.get(gateway.url + polling_path(eio)), 401)
    assert_envelope(await ws_refusal(gateway.url, eio=eio, headers=cookie("not-a-session")), 401)
    assert_envelope(httpx.get(gateway.url + polling_path(eio), headers=cookie("nope")), 401)


@pytest.mark.parametrize("eio", [5, None, "x"])
async def test_bad_eio_is_400(gateway, user, eio):
    assert_envelope(await ws_refusal(gateway.url, eio=eio, headers=cookie(user["sid"])), 400)
    assert_envelope(httpx.get(gateway.url + polling_path(eio), headers=cookie(user["sid"])), 400)


async def test_unknown_sid_is_400(gateway, user):
    headers = cookie(user["sid"])
    assert_envelope(httpx.get(gateway.url + polling_path(3, sid="nope"), headers=headers), 400)
    assert_envelope(httpx.post(gateway.url + polling_path(3, sid="nope"), headers=headers,
                               content="1:2"), 400)
    assert_envelope(await ws_refusal(gateway.url, eio=3, headers=headers, sid="nope"), 400)


async def test_one_time_token_opens_exactly_one_connection(gateway, user):
    token = httpx.post(gateway.url + "/api/v1/auth/one-time-token", headers=user["auth"]).json()["token"]
    ws = await open_ws(gateway.url, eio=3, token=token)
    await handshake(ws, eio=3)
    await ws.close()
    assert_envelope(await ws_refusal(gateway.url, eio=3, token=token), 401)
    token = httpx.post(gateway.url + "/api/v1/auth/one-time-token", headers=user["auth"]).json()["token"]
    first = httpx.get(gateway.url + polling_path(3, token=token))
    assert first.status_code == 200 and '0{"sid"' in first.text, first.text
    assert_envelope(httpx.get(gateway.url + polling_path(3, token=token)), 401)


async def test_bearer_token_authenticates_the_handshake(gateway, user):
    token = httpx.post(gateway.url + "/api/v1/auth/token",
                       json={"login": user["login"], "password": user["password"]}).json()["token"]
    client = await Client.connect(gateway.url, eio=4, headers={"Authorization": f"Bearer {token}"})
    assert await client.subscribe(store="bearerStore") == {"success": True}
    await client.close()
    assert_envelope(await ws_refusal(gateway.url, eio=3,
                                     headers={"Authorization": "Bearer nonsense"}), 401)


async def test_polling_handshake_answers_open_packet_then_40(gateway, user):
    response = httpx.get(gateway.url + polling_path(3), headers=cookie(user["sid"]))
    assert response.status_code == 200
    packets = decode_v3_payload(response.text)
    opened = json.loads(packets[0][1:])
    assert packets[0][0] == "0" and opened["upgrades"] == ["websocket"]
    assert packets[1:] == ["40"]


async def test_foreign_origin_is_403_on_both_transports(quick, quick_sid):
    headers = {**cookie(quick_sid), "Origin": "https://evil.example.net"}
    assert_envelope(await ws_refusal(quick.url, eio=3, headers=headers), 403)
    assert_envelope(httpx.get(quick.url + polling_path(3), headers=headers), 403)


async def test_allowed_and_own_origins_pass(quick, quick_sid):
    for origin in (ALLOWED, quick.url):
        headers = {**cookie(quick_sid), "Origin": origin}
        ws = await open_ws(quick.url, eio=3, headers=headers)
        await handshake(ws, eio=3)
        await ws.close()
        response = httpx.get(quick.url + polling_path(3), headers=headers)
        assert response.status_code == 200, response.text


# -- /metrics -----------------------------------------------------------------------------------
async def test_metrics_count_connections_by_version_and_transport_and_deliveries(gateway, user):
    before = get_metrics(gateway.url)
    ws3 = await Client.connect(gateway.url, eio=3, headers=cookie(user["sid"]))
    ws4 = await Client.connect(gateway.url, eio=4, headers=cookie(user["sid"]))
    polled = httpx.get(gateway.url + polling_path(4), headers=cookie(user["sid"]))
    assert polled.status_code == 200
    during = get_metrics(gateway.url)
    for eio, transport in (("3", "websocket"), ("4", "websocket"), ("4", "polling")):
        name = "gateway_realtime_connections"
        assert metric(during, name, eio=eio, transport=transport) == \
            metric(before, name, eio=eio, transport=transport) + 1, (eio, transport)
    store = "metricStore"
    assert await ws3.subscribe(store=store) == {"success": True}
    assert await ws4.subscribe(store=store) == {"success": True}
    created = httpx.post(gateway.url + f"/api/v1/{store}", json={"n": 1}, headers=user["auth"])
    assert created.status_code == 201
    await ws3.next_event()
    await ws4.next_event()
    after = get_metrics(gateway.url)
    delivered = "gateway_realtime_messages_delivered_total"
    received = "gateway_realtime_events_received_total"
    assert metric(after, delivered) >= metric(before, delivered) + 2
    assert metric(after, received) >= metric(before, received) + 1
    await ws3.close()
    await ws4.close()
    await asyncio.sleep(0.3)
    closed = get_metrics(gateway.url)
    for eio in ("3", "4"):
        assert metric(closed, "gateway_realtime_connections", eio=eio, transport="websocket") == \
            metric(before, "gateway_realtime_connections", eio=eio, transport="websocket")


# -- SIGTERM ------------------------------------------------------------------------------------
async def test_sigterm_drops_connections_without_a_close_packet_and_exits_zero(start_gateway, user):
    doomed = start_gateway()
    api = Api(doomed.url)
    sid = login(api, user)
    api.close()
    clients = []
    for eio in (3, 4):
        ws = await open_ws(doomed.url, eio=eio, headers=cookie(sid))
        await handshake(ws, eio=eio)
        clients.append(ws)
    http = httpx.AsyncClient(timeout=5)
    polling_sid = await open_polling(http, doomed.url, cookie(sid))
    waiting_poll = asyncio.create_task(poll(http, doomed.url, polling_sid, cookie(sid)))
    await asyncio.sleep(0.1)
    assert doomed.proc is not None
    started = time.monotonic()
    doomed.proc.send_signal(signal.SIGTERM)
    # A lost connection at the Engine.IO level (contract §5): the websocket closes as "going
    # away" and the pending poll returns a noop. No `41`, which tells socket.io clients to stay
    # away, and no Engine.IO close `1` either: python-socketio 5 takes that as "server
    # disconnect" and does not reconnect (test_realtime_shutdown.py).
    for ws in clients:
        frames = await closed_within(ws, 5)
        assert "41" not in frames and "1" not in frames, frames
        assert ws.close_code == 1001, ws.close_code
    assert await asyncio.wait_for(waiting_poll, 5) == ["6"]
    await http.aclose()
    code = await asyncio.get_running_loop().run_in_executor(None, doomed.proc.wait, 10)
    assert code == 0, doomed.logs()
    assert time.monotonic() - started < 6


# -- polling specifics ----------------------------------------------------------------------------
@pytest.mark.parametrize("body, content_type", [
    ("abc", "text/plain"), ("5:hello", "text/plain"), ("99:2", "text/plain"),
    ("1:9", "text/plain"), (b"\xff\xfe\x00junk", "application/octet-stream"),
    (b"\xff\xfe", "text/plain"),
], ids=["no-length", "short", "overlong", "bad-type", "binary-junk", "not-utf8"])
async def test_garbage_polling_posts_are_refused_and_the_process_lives_on(gateway, user, body,
                                                                          content_type):
    async with httpx.AsyncClient(timeout=5) as http:
        sid = await open_polling(http, gateway.url, cookie(user["sid"]))
        response = await http.post(gateway.url + polling_path(3, sid=sid), content=body,
                                   headers={**cookie(user["sid"]), "Content-Type": content_type})
        assert response.status_code in (200, 400), response.text
        if response.status_code == 400:
            assert_envelope(response, 400)
        fresh = await open_polling(http, gateway.url, cookie(user["sid"]))
        ping = await http.post(gateway.url + polling_path(3, sid=fresh), content="1:2",
                               headers=cookie(user["sid"]))
        assert ping.status_code == 200
        assert await poll(http, gateway.url, fresh, cookie(user["sid"])) == ["3"]


async def test_a_silent_polling_session_is_closed_after_interval_plus_timeout(quick, quick_sid):
    async with httpx.AsyncClient(timeout=5) as http:
        sid = await open_polling(http, quick.url, cookie(quick_sid))
        await asyncio.sleep(1.2)  # no GET, no POST: nothing arrives from this client
        response = await http.get(quick.url + polling_path(3, sid=sid), headers=cookie(quick_sid))
        assert_envelope(response, 400)


async def test_websocket_with_the_sid_of_a_websocket_session_is_400(gateway, user):
    ws = await open_ws(gateway.url, eio=3, headers=cookie(user["sid"]))
    sid = (await handshake(ws, eio=3))["sid"]
    assert_envelope(await ws_refusal(gateway.url, eio=3, headers=cookie(user["sid"]), sid=sid),
                    400)
    await ws.send("2")
    assert await recv(ws) == "3"  # the session is untouched
    await ws.close()


async def test_raw_polling_to_websocket_upgrade(gateway, user):
    """EIO=3: `2probe`/`3probe` on the new websocket, the waiting GET answered with a noop,
    `5` completes the upgrade, then packets flow over the websocket and polling is over."""
    headers = cookie(user["sid"])
    async with httpx.AsyncClient(timeout=5) as http:
        sid = await open_polling(http, gateway.url, headers)
        waiting = asyncio.create_task(poll(http, gateway.url, sid, headers))
        await asyncio.sleep(0.1)
        ws = await open_ws(gateway.url, eio=3, headers=headers, sid=sid)
        await ws.send("2probe")
        assert await recv(ws) == "3probe"
        assert await asyncio.wait_for(waiting, 2) == ["6"]
        await ws.send("5")
        await ws.send('421["subscribe",{"store":"rawUpgrade"}]')
        assert await recv(ws) == '431[{"success":true}]'
        await ws.send("2")
        assert await recv(ws) == "3"
        late = await http.get(gateway.url + polling_path(3, sid=sid), headers=headers)
        assert_envelope(late, 400)
        await ws.close()
