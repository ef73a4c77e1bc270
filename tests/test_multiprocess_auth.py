"""Two gateway processes on one Redis act as one: sessions, rate limits and bans are shared."""

from __future__ import annotations

import pytest

from tests.support.api import Api, unique_address
from tests.support.asserts import assert_envelope
from tests.support.processes import wait_for

ENV = {"GATEWAY_HOOKS_WORKER": "off", "GATEWAY_RATE_LIMIT_PER_SECOND": "6", "GATEWAY_RATE_LIMIT_PER_MINUTE": "100",
       "GATEWAY_AUTH_BAN_ATTEMPTS": "3", "GATEWAY_AUTH_BAN_WINDOW_S": "10",
       "GATEWAY_AUTH_BAN_S": "5"}


@pytest.fixture(scope="module")
def pair(start_gateway, gateway):
    first, second = start_gateway(ENV, wait=False), start_gateway(ENV, wait=False)
    for process in (first, second):  # started side by side, then waited for
        wait_for(process._healthy, timeout=30, what=f"gateway on port {process.port}")
    a, b = Api(first.url), Api(second.url)
    # Users are made through the default gateway: the shared admin would soon be over the
    # small limits set here.
    a.create_user = b.create_user = Api(gateway.url).create_user  # type: ignore[method-assign]
    yield a, b
    a.close()
    b.close()


def test_a_session_from_one_process_works_on_the_other_and_logout_is_everywhere(pair):
    a, b = pair
    user = a.create_user()
    login = a.http.post("/api/v1/auth", json={"login": user["login"], "password": user["password"]},
                        headers={"X-Forwarded-For": unique_address()})
    cookie = {"Cookie": f"sid={login.cookies['sid']}"}
    a.http.cookies.clear()
    assert b.http.get("/api/v1/users/me", headers=cookie).json()["_id"] == user["_id"]
    assert b.http.delete("/api/v1/auth", headers=cookie).status_code == 200
    assert_envelope(a.http.get("/api/v1/users/me", headers=cookie), 401)


def test_tokens_from_one_process_work_on_the_other(pair):
    a, b = pair
    user = a.create_user()
    key = a.http.post("/api/v1/apikeys", headers=user["auth"]).json()["key"]
    token = b.http.get("/auth/token", headers={"Authorization": key}).json()["accessToken"]
    assert a.http.get("/api/v1/tokenInfo", headers={"Authorization": f"Bearer {token}"}).json() == {
        "_userId": user["_id"]}
    once = a.http.post("/api/v1/auth/one-time-token", headers=user["auth"]).json()["token"]
    assert b.http.get("/api/v1/tokenInfo", headers={"Authorization": f"Bearer {once}"}).status_code == 200
    assert_envelope(a.http.get("/api/v1/tokenInfo", headers={"Authorization": f"Bearer {once}"}), 401)


def test_rate_limits_are_shared_across_processes(pair):
    a, b = pair
    user = a.create_user()
    token = a.http.post("/api/v1/auth/token",
                        json={"login": user["login"], "password": user["password"]}).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    remaining = [int(api.http.get("/api/v1/tokenInfo", headers=auth).headers["X-Ratelimit-Remaining"])
                 for api in (a, b, a, b, a, b)]
    assert remaining == [5, 4, 3, 2, 1, 0]
    assert_envelope(a.http.get("/api/v1/tokenInfo", headers=auth), 429)
    assert_envelope(b.http.get("/api/v1/tokenInfo", headers=auth), 429)


def test_a_ban_earned_on_one_process_holds_on_the_other(pair):
    a, b = pair
    user = a.create_user()
    address = unique_address()
    here = {"X-Forwarded-For": address}
    for api in (a, b, a):  # the failures are counted together too
        response = api.http.post("/api/v1/auth", headers=here,
                                 json={"login": user["login"], "password": "wrong"})
        assert_envelope(response, 401)
    for api in (a, b):
        assert_envelope(api.http.post("/api/v1/auth", headers=here,
                                      json={"login": user["login"], "password": user["password"]}),
                        403)
        assert_envelope(api.http.get("/api/v1/users/me", headers={**user["auth"], **here}), 403)
