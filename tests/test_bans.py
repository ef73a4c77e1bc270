"""Contract §2: the failed-login ban, per client address, and X-Forwarded-For trust."""

from __future__ import annotations

import time
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from tests.support.api import Api, basic, unique_address
from tests.support.asserts import assert_envelope

BAN_S = 2.0
BAN_ENV = {"GATEWAY_HOOKS_WORKER": "off", "GATEWAY_AUTH_BAN_ATTEMPTS": "3", "GATEWAY_AUTH_BAN_WINDOW_S": "2",
           "GATEWAY_AUTH_BAN_S": str(BAN_S)}


def other_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


@pytest.fixture(scope="module")
def banning(start_gateway):
    return start_gateway(BAN_ENV)


@pytest.fixture()
def bapi(banning, api):
    client = Api(banning.url)
    client.create_user = api.create_user  # type: ignore[method-assign]  # same Redis
    yield client
    client.close()


def fail_login(api, user, address) -> None:
    response = api.http.post("/api/v1/auth", json={"login": user["login"], "password": "wrong!"},
                             headers={"X-Forwarded-For": address})
    assert_envelope(response, 401)


def good_login(api, user, address):
    response = api.http.post("/api/v1/auth", headers={"X-Forwarded-For": address},
                             json={"login": user["login"], "password": user["password"]})
    api.http.cookies.clear()
    return response


def test_three_failures_ban_the_address_for_every_request_until_it_expires(bapi):
    user = bapi.create_user()
    token = bapi.http.post("/api/v1/auth/token", headers={"X-Forwarded-For": unique_address()},
                           json={"login": user["login"], "password": user["password"]}).json()["token"]
    key = bapi.http.post("/api/v1/apikeys", headers=user["auth"]).json()["key"]
    address = unique_address()
    for _ in range(3):
        fail_login(bapi, user, address)

    here = {"X-Forwarded-For": address}
    banned = good_login(bapi, user, address)
    body = assert_envelope(banned, 403)
    assert "set-cookie" not in banned.headers
    assert "failed logins" in body["message"]
    assert 1 <= int(banned.headers["Retry-After"]) <= BAN_S
    # Correct credentials of every kind, and no credentials at all.
    assert_envelope(bapi.http.get("/api/v1/users/me", headers={**user["auth"], **here}), 403)
    assert_envelope(bapi.http.get("/api/v1/users/me",
                                  headers={"Authorization": f"Bearer {token}", **here}), 403)
    assert_envelope(bapi.http.get("/auth/token", headers={"Authorization": key, **here}), 403)
    assert_envelope(bapi.http.post("/api/v1/auth/token", headers=here,
                                   json={"login": user["login"], "password": user["password"]}), 403)
    assert_envelope(bapi.http.get("/api/v1/tokenInfo", headers=here), 403)

    # Other addresses are unaffected, for the same user.
    assert good_login(bapi, user, unique_address()).status_code == 200

    time.sleep(BAN_S + 0.1)
    assert good_login(bapi, user, address).status_code == 200
    assert bapi.http.get("/api/v1/users/me", headers={**user["auth"], **here}).status_code == 200


def test_fewer_failures_than_the_limit_do_not_ban(bapi):
    user = bapi.create_user()
    address = unique_address()
    for _ in range(2):
        fail_login(bapi, user, address)
    assert good_login(bapi, user, address).status_code == 200


def test_failures_older_than_the_window_are_forgotten(bapi):
    user = bapi.create_user()
    address = unique_address()
    fail_login(bapi, user, address)
    fail_login(bapi, user, address)
    time.sleep(2.1)  # GATEWAY_AUTH_BAN_WINDOW_S
    fail_login(bapi, user, address)
    assert good_login(bapi, user, address).status_code == 200


def test_failures_count_across_login_routes_basic_and_api_keys(bapi):
    user = bapi.create_user()
    address = unique_address()
    here = {"X-Forwarded-For": address}
    bapi.http.post("/api/v1/auth/token", headers=here,
                   json={"login": user["login"], "password": "nope"})
    bapi.http.get("/api/v1/users/me", headers={**basic(user["login"], "nope"), **here})
    assert_envelope(bapi.http.get("/auth/token", headers={"Authorization": "gwk_x_y", **here}), 401)
    assert_envelope(good_login(bapi, user, address), 403)


def test_a_client_cannot_dodge_the_ban_by_prepending_forwarded_addresses(bapi):
    """Only the hops our trusted proxies added count; a client's own X-Forwarded-For is ignored."""
    user = bapi.create_user()
    address = unique_address()
    for n in range(3):
        response = bapi.http.post(
            "/api/v1/auth", json={"login": user["login"], "password": "wrong"},
            headers={"X-Forwarded-For": f"203.0.113.{n}, {address}"})
        assert_envelope(response, 401)
    spoofed = bapi.http.post("/api/v1/auth", json={"login": user["login"],
                                                   "password": user["password"]},
                             headers={"X-Forwarded-For": f"203.0.113.99, {address}"})
    assert_envelope(spoofed, 403)


def test_x_forwarded_for_is_ignored_without_trusted_proxies(start_gateway, redis_url):
    # Its own Redis database: this test bans 127.0.0.1 itself, which must not leak to others.
    url = other_db(redis_url, 5)
    redis.Redis.from_url(url).flushdb()
    gateway = start_gateway({**BAN_ENV, "GATEWAY_REDIS_URL": url, "GATEWAY_TRUSTED_PROXIES": ""})
    api = Api(gateway.url)
    try:
        user = api.create_user()
        for _ in range(3):
            fail_login(api, user, unique_address())  # a different claimed address each time
        # The peer, 127.0.0.1, was banned whatever the header claims.
        assert_envelope(good_login(api, user, unique_address()), 403)
        assert_envelope(api.http.get("/api/v1/users/me", headers=user["auth"]), 403)
        time.sleep(BAN_S + 0.1)
        assert good_login(api, user, unique_address()).status_code == 200
    finally:
        api.close()
        gateway.stop()
