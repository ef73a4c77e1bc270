"""Contract §2 on a real gateway: bad input is a 4xx with the envelope — never a 500, never a
hang — and changes nothing in Redis (issue 8, rows 10 to 13).

- Row 10: credentials that cannot be decoded are 401 on every route and on the realtime
  handshake, over polling and over a raw websocket (the bytes E9 E9 in `Authorization`).
- Row 11: lone surrogates, escaped (`"\\ud800"`) or as raw bytes (ED A0 80), in every body.
- Row 12: the malformed bodies of contract §2 on POST /api/v1/apikeys and every other body route.
- Row 13: names are matched whole: `orders\\n` is not a store, `alice\\n` not a login, `x.y\\n` not
  an event type.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from tests.support.api import ADMIN, Api, basic, unique, unique_address
from tests.support.asserts import assert_envelope
from tests.support.redis_state import snapshot

STORE = "badinput"


def b64(raw: bytes) -> bytes:
    return base64.b64encode(raw)


def state(redis_client: redis.Redis, *stores: str) -> dict[str, Any]:
    """What a refused request must leave alone: the stores' entities, index and history, and
    every user, login, API key and hook."""
    found: dict[str, Any] = {store: snapshot(redis_client, store) for store in (STORE, *stores)}
    for name in ("gw:users", "gw:user-logins", "gw:apikeys", "gw:hooks"):
        found[name] = redis_client.hgetall(name)
    found["gw:hooks:count"] = redis_client.get("gw:hooks:count")
    return found


@pytest.fixture(scope="module")
def owner(client: Api) -> dict[str, Any]:
    return client.create_user(groups=["badinput"])


@pytest.fixture(scope="module")
def entity(client: Api, owner: dict[str, Any]) -> dict[str, Any]:
    response = client.http.post(f"/api/v1/{STORE}", json={"name": "kept"}, headers=owner["auth"])
    assert response.status_code == 201, response.text
    return dict(response.json())


@pytest.fixture()
def unchanged(redis_client: redis.Redis) -> Any:
    """Call with extra store names; at the end of the test, Redis must be as it was."""
    before: list[tuple[tuple[str, ...], dict[str, Any]]] = []

    def watch(*stores: str) -> None:
        before.append((stores, state(redis_client, *stores)))

    yield watch
    for stores, seen in before:
        assert state(redis_client, *stores) == seen


# -- row 10: credentials that cannot be decoded -------------------------------------------------
UNDECODABLE = [
    pytest.param(b"Basic \xe9\xe9", id="basic-non-ascii"),
    pytest.param(b"Basic " + b64(b"alice:pw") + b"\xff", id="basic-trailing-byte"),
    pytest.param(b"Basic " + b64(b"\xed\xa0\x80:pw"), id="basic-lone-surrogate"),
    pytest.param(b"Basic " + b64(b"alice:\xff"), id="basic-not-utf8"),
    pytest.param(b"Basic " + b64(b":pw"), id="basic-empty-login"),
    pytest.param(b"Basic " + b64(b"alice:"), id="basic-empty-password"),
    pytest.param(b"Basic " + b64(b"alice"), id="basic-no-colon"),
    pytest.param(b"Basic !!!", id="basic-not-base64"),
    pytest.param(b"Bearer \xe9\xe9", id="bearer-non-ascii"),
    pytest.param(b"\xe9\xe9", id="no-scheme"),
]
ROUTES = [("GET", "/api/v1/users/me"), ("GET", "/api/v1/tokenInfo"),
          ("POST", f"/api/v1/{STORE}"), ("GET", f"/api/v1/{STORE}"), ("POST", "/api/v1/apikeys"),
          ("POST", "/api/v1/events"), ("POST", "/api/v1/hooks"), ("DELETE", "/api/v1/auth"),
          ("POST", "/api/v1/auth/one-time-token")]


@pytest.mark.parametrize("authorization", UNDECODABLE)
def test_undecodable_credentials_are_401_on_every_route(client: Api, unchanged: Any,
                                                        authorization: bytes) -> None:
    unchanged()
    for method, path in ROUTES:
        response = client.http.request(
            method, path, content=b'{"name": "x"}',
            headers={"Authorization": authorization, "X-Forwarded-For": unique_address()})
        body = assert_envelope(response, 401)
        assert "credentials" in body["message"] or "token" in body["message"] or \
            "Authorization" in body["message"], (method, path, body)


def test_a_session_cookie_of_odd_bytes_is_401(client: Api) -> None:
    for cookie in (b"sid=\xe9\xe9", b"sid=\xed\xa0\x80", b'sid="\\355\\240\\200"'):
        response = client.http.get("/api/v1/users/me", headers={"Cookie": cookie})
        assert_envelope(response, 401)


@pytest.mark.parametrize("eio", [3, 4])
@pytest.mark.parametrize("authorization", [b"Basic \xe9\xe9", b"Basic " + b64(b"\xff:\xff"),
                                           b"Bearer \xe9\xe9"])
def test_undecodable_credentials_are_401_on_the_polling_handshake(
        client: Api, eio: int, authorization: bytes) -> None:
    response = client.http.get(f"/socket.io/?EIO={eio}&transport=polling",
                               headers={"Authorization": authorization})
    assert_envelope(response, 401)


async def raw_websocket_handshake(base_url: str, eio: int, authorization: bytes,
                                  timeout_s: float = 5.0) -> httpx.Response:
    """Send an upgrade request with these header bytes as they are; read the HTTP answer."""
    url = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(
            f"GET /socket.io/?EIO={eio}&transport=websocket HTTP/1.1\r\n"
            f"Host: {url.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            .encode() + b"Authorization: " + authorization + b"\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines if line]
        length = int(dict((k.lower(), v) for k, v in headers).get("content-length", "0"))
        content = await asyncio.wait_for(reader.readexactly(length), timeout_s)
        return httpx.Response(int(status_line.split(" ")[1]), headers=headers, content=content)
    finally:
        writer.close()


@pytest.mark.parametrize("eio", [3, 4])
@pytest.mark.parametrize("authorization", [b"Basic \xe9\xe9", b"Basic " + b64(b"\xff:\xff"),
                                           b"Bearer \xe9\xe9"])
async def test_undecodable_credentials_are_401_on_the_websocket_handshake_at_once(
        client: Api, eio: int, authorization: bytes) -> None:
    """Issue 8 row 10: the handshake used to get no answer at all."""
    response = await raw_websocket_handshake(client.base_url, eio, authorization)
    assert_envelope(response, 401)


# -- rows 11 and 12: one body parser, and what it refuses ---------------------------------------
def _deep(depth: int) -> bytes:
    return b'{"name": ' + b"[" * depth + b"1" + b"]" * depth + b"}"


# (body, words the message must hold). Each is a JSON object at the top, so that the route's
# own checks would accept it if the parser did not refuse it.
BAD_BODIES = [
    pytest.param(b'{"name": "\\ud800"}', "surrogate", id="escaped-lone-surrogate"),
    pytest.param(b'{"name": "a\\udfffb"}', "surrogate", id="escaped-low-surrogate"),
    pytest.param(b'{"\\ud800": "x"}', "surrogate", id="surrogate-key"),
    pytest.param(b'{"name": "\xed\xa0\x80"}', "UTF-8", id="raw-lone-surrogate"),
    pytest.param(b'{"name": "\xff"}', "UTF-8", id="invalid-utf8"),
    pytest.param(b'{"name": NaN}', "NaN", id="nan"),
    pytest.param(b'{"name": Infinity}', "Infinity", id="infinity"),
    pytest.param(b'{"name": -Infinity}', "Infinity", id="minus-infinity"),
    pytest.param(_deep(64), "nested deeper than 64", id="65-levels"),
    pytest.param(_deep(2000), "nested deeper than 64", id="2000-levels"),
    pytest.param(b'{"name": [[{"a": [', "not valid JSON", id="unclosed"),
    pytest.param(b'{"name": ' + b"[" * 2000, "nested deeper than 64", id="unclosed-2000-levels"),
    pytest.param(b'{"name": ' + b"7" * 5000 + b"}", "digits", id="5000-digit-integer"),
    pytest.param(b'{"name": 0.' + b"7" * 5000 + b"}", "digits", id="5000-digit-float"),
]


def _bodies_for(fields: dict[str, Any]) -> Callable[[bytes], bytes]:
    """Bodies shaped for a route: "name" becomes the route's first field, where the route
    looks, and its other fields follow with valid values."""
    (first, _), *rest = fields.items()
    tail = b"".join(b", " + json.dumps(k).encode() + b": " + json.dumps(v).encode()
                    for k, v in rest)

    def shape(bad: bytes) -> bytes:
        bad = bad.replace(b'"name"', json.dumps(first).encode(), 1)
        return bad[:-1] + tail + b"}" if bad.endswith(b"}") else bad
    return shape


@pytest.mark.parametrize(("body", "words"), BAD_BODIES)
def test_apikeys_refuse_every_malformed_body_and_create_no_key(
        client: Api, owner: dict[str, Any], unchanged: Any, body: bytes, words: str) -> None:
    """Issue 8 row 12: a bare json.loads here answered 500, or 201 with NaN or bad UTF-8."""
    unchanged()
    response = client.http.post("/api/v1/apikeys", content=body, headers=owner["auth"])
    assert words in assert_envelope(response, 400)["message"]


def _routes(owner: dict[str, Any], entity: dict[str, Any], victim_id: str) -> list[Any]:
    """(method, path, credentials, fields of a body the route would accept)."""
    admin = basic(*ADMIN)
    target = "http://127.0.0.1:9/hook"
    return [
        ("POST", f"/api/v1/{STORE}", owner["auth"], {"name": "x"}),
        ("PATCH", f"/api/v1/{STORE}/{entity['_id']}", owner["auth"], {"name": "x"}),
        ("PUT", f"/api/v1/{STORE}/{entity['_id']}", owner["auth"], {"name": "x"}),
        ("POST", "/api/v1/auth", {}, {"login": owner["login"], "password": owner["password"]}),
        ("POST", "/api/v1/auth", {}, {"password": owner["password"], "login": owner["login"]}),
        ("POST", "/api/v1/auth/token", {}, {"login": owner["login"],
                                            "password": owner["password"]}),
        ("POST", "/api/v1/users", admin, {"login": unique("bad"), "password": "pw-123456"}),
        ("POST", "/api/v1/users", admin, {"password": "pw-123456", "login": unique("bad")}),
        ("POST", "/api/v1/users", admin, {"groups": ["g"], "login": unique("bad"),
                                          "password": "pw-123456"}),
        ("PATCH", f"/api/v1/users/{victim_id}", admin, {"password": "pw-123456"}),
        ("POST", "/api/v1/events", admin, {"data": {}, "type": "x.y", "store": STORE}),
        ("POST", "/api/v1/hooks", owner["auth"], {"target_url": target, "event": "*"}),
        ("POST", "/api/v1/hooks", owner["auth"], {"event": "*", "target_url": target}),
        ("POST", "/api/v1/apikeys", owner["auth"], {"scope": "read"}),
    ]


@pytest.fixture(scope="module")
def victim(client: Api) -> dict[str, Any]:
    """A user whose password a PATCH would change, if the parser let a body through."""
    return client.create_user()


@pytest.mark.parametrize(("body", "words"), BAD_BODIES)
def test_every_body_route_refuses_the_malformed_body_with_400_and_changes_nothing(
        client: Api, owner: dict[str, Any], entity: dict[str, Any], victim: dict[str, Any],
        unchanged: Any, body: bytes, words: str) -> None:
    """Issue 8 rows 11 and 12: surrogates answered 500 on POST/PATCH/PUT, /auth and /users."""
    unchanged()
    for method, path, auth, fields in _routes(owner, entity, victim["_id"]):
        shaped = _bodies_for(fields)(body)
        headers = {**auth, "X-Forwarded-For": unique_address()}
        response = client.http.request(method, path, content=shaped, headers=headers)
        message = assert_envelope(response, 400)["message"]
        assert words in message, (method, path, shaped[:60], message)


def test_the_same_routes_accept_the_well_formed_bodies(
        client: Api, owner: dict[str, Any], entity: dict[str, Any]) -> None:
    """The refusals above are the parser's, not the routes': the fields themselves are fine."""
    good = _bodies_for({"name": "x"})(b'{"name": ' + b"[" * 63 + b'"\\ud83d\\ude00"' +
                                      b"]" * 63 + b"}")
    response = client.http.post(f"/api/v1/{STORE}", content=good, headers=owner["auth"])
    assert response.status_code == 201, response.text
    created = response.json()
    assert json.dumps(created["name"]).count("[") == 63
    response = client.http.post("/api/v1/apikeys", headers=owner["auth"])
    assert response.status_code == 201, response.text


# -- row 13: names are matched whole -------------------------------------------------------------
@pytest.mark.parametrize(("path", "methods"), [
    (f"/api/v1/{STORE}%0A", ("POST", "GET")),
    ("/api/v1/" + "a" * 64 + "%0A", ("POST", "GET")),
    # GET only: Starlette matches its own fixed routes with `$` too, so POST /api/v1/auth%0A
    # reaches the login route rather than the store routes.
    ("/api/v1/auth%0A", ("GET",)),
    ("/api/v1/events%0A", ("GET",)),
])
def test_a_store_name_with_a_final_newline_is_400_and_stores_nothing(
        client: Api, owner: dict[str, Any], unchanged: Any, path: str,
        methods: tuple[str, ...]) -> None:
    name = path.removeprefix("/api/v1/").replace("%0A", "\n")
    unchanged(name)
    for method in methods:
        response = client.http.request(method, path, json={"name": "x"}, headers=owner["auth"])
        assert "store name" in assert_envelope(response, 400)["message"], (method, path)


def test_an_entity_id_with_a_final_newline_is_400(client: Api, owner: dict[str, Any],
                                                  entity: dict[str, Any], unchanged: Any) -> None:
    unchanged()
    path = f"/api/v1/{STORE}/{entity['_id']}%0A"
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        response = client.http.request(method, path, json={"name": "y"}, headers=owner["auth"])
        assert "entity id" in assert_envelope(response, 400)["message"], method


def test_the_longest_store_name_without_the_newline_is_a_store(client: Api,
                                                                owner: dict[str, Any]) -> None:
    response = client.http.post("/api/v1/" + "a" * 64, json={"x": 1}, headers=owner["auth"])
    assert response.status_code == 201, response.text


def test_a_login_with_a_final_newline_is_400_and_creates_no_user(client: Api,
                                                                  unchanged: Any) -> None:
    login = unique("alice")
    unchanged()
    for bad in (login + "\n", login + "\r\n", login + ":x\n"):
        response = client.http.post("/api/v1/users", json={"login": bad, "password": "pw-123456"},
                                    headers=basic(*ADMIN))
        assert "'login'" in assert_envelope(response, 400)["message"], repr(bad)


@pytest.mark.parametrize("fields", [
    {"type": "x.y\n"}, {"store": f"{STORE}\n"}, {"store": "events\n"},
    {"entityId": "0123456789abcdef01234567\n"},
], ids=["type", "store", "reserved-store", "entity-id"])
def test_published_event_names_are_matched_whole(client: Api, unchanged: Any,
                                                 fields: dict[str, str]) -> None:
    unchanged(f"{STORE}\n", "events\n")
    body = {"type": "x.y", "store": STORE, "data": {"a": 1}, **fields}
    response = client.http.post("/api/v1/events", json=body, headers=basic(*ADMIN))
    field = next(iter(fields))
    assert f"'{field}'" in assert_envelope(response, 400)["message"]


@pytest.mark.parametrize("fields", [
    {"event": "x.y\n"}, {"event": "entity.*\n"}, {"event": "*\n"}, {"store": f"{STORE}\n"},
], ids=["type", "pattern", "star", "store"])
def test_hook_names_are_matched_whole(client: Api, owner: dict[str, Any], unchanged: Any,
                                      fields: dict[str, str]) -> None:
    unchanged()
    body = {"target_url": "http://127.0.0.1:9/hook", "event": "x.y", **fields}
    response = client.http.post("/api/v1/hooks", json=body, headers=owner["auth"])
    field = next(iter(fields))
    assert f"'{field}'" in assert_envelope(response, 400)["message"]


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/api/v1/auth%0A"), ("POST", "/api/v1/users%0A"), ("GET", "/api/v1/users/me%0A"),
    ("POST", "/api/v1/auth/token%0A"), ("GET", "/api/v1/tokenInfo%0A"), ("POST", "/api/v1/apikeys%00"),
])
def test_fixed_routes_are_matched_whole(client: Api, owner: dict[str, Any], unchanged: Any,
                                        method: str, path: str) -> None:
    """A path with a control character names no route (Starlette's `$` would allow a final
    newline), so no login, user or key comes of it."""
    unchanged()
    body = {"login": unique("nl"), "password": "pw-123456"}
    response = client.http.request(method, path, json=body, headers=basic(*ADMIN))
    assert "control character" in assert_envelope(response, 400)["message"]


async def test_a_subscription_store_name_is_matched_whole(client: Api, owner: dict[str, Any]) -> None:
    from tests.support.eio import Client, login

    realtime = await Client.connect(client.base_url, headers={"Cookie": f"sid={login(client, owner)}"})
    try:
        for spec in ({"store": "ok\n"}, {"store": "auth"}, {"store": "a" * 64 + "\n"},
                     {"store": "ok", "id": "0123456789abcdef01234567\n"}):
            ack = await realtime.subscribe(**spec)
            assert ack["success"] is False and ack["code"] == "400", (spec, ack)
        assert (await realtime.subscribe(store="ok"))["success"] is True
    finally:
        await realtime.close()
