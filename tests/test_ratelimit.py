"""Contract §2: per-user rate limits — headers, 429 with Retry-After, both windows, recovery."""

from __future__ import annotations

import time

import pytest

from tests.support.api import Api
from tests.support.asserts import assert_envelope

PER_SECOND, PER_MINUTE = 5, 20


@pytest.fixture(scope="module")
def limited(start_gateway):
    return start_gateway({"GATEWAY_RATE_LIMIT_PER_SECOND": str(PER_SECOND),
                          "GATEWAY_RATE_LIMIT_PER_MINUTE": str(PER_MINUTE),
                          "GATEWAY_HOOKS_WORKER": "off"})


@pytest.fixture()
def lapi(limited, api):
    """The limited gateway; its users are made through the default one (same Redis), since
    the admin who makes them is shared by every test and would soon be over these limits."""
    client = Api(limited.url)
    client.create_user = api.create_user  # type: ignore[method-assign]
    yield client
    client.close()


def bearer_for(api, user) -> dict[str, str]:
    """A login token: getting it is not rate limited, and it costs no argon2 per request."""
    response = api.http.post("/api/v1/auth/token",
                             json={"login": user["login"], "password": user["password"]})
    return {"Authorization": f"Bearer {response.json()['token']}"}


def test_every_authenticated_response_counts_down_and_the_next_is_429(lapi):
    user = lapi.create_user()
    auth = bearer_for(lapi, user)
    remaining = []
    # Successes and authenticated errors alike carry the headers and count.
    for path in ["/api/v1/users/me", "/api/v1/tokenInfo", "/api/v1/apikeys", "/api/v1/users/me"]:
        response = lapi.http.get(path, headers=auth)
        assert response.status_code == 200
        remaining.append(int(response.headers["X-Ratelimit-Remaining"]))
        assert 0 < int(response.headers["X-Ratelimit-Reset"]) <= 60
    not_found = lapi.http.delete("/api/v1/apikeys/none", headers=auth)
    assert_envelope(not_found, 404)
    remaining.append(int(not_found.headers["X-Ratelimit-Remaining"]))
    assert remaining == [4, 3, 2, 1, 0]

    limited = lapi.http.get("/api/v1/users/me", headers=auth)
    assert_envelope(limited, 429)
    assert limited.headers["X-Ratelimit-Remaining"] == "0"
    assert "X-Ratelimit-Reset" in limited.headers
    assert limited.headers["Retry-After"] == "1"

    time.sleep(int(limited.headers["Retry-After"]) + 0.05)
    recovered = lapi.http.get("/api/v1/users/me", headers=auth)
    assert recovered.status_code == 200
    assert "Retry-After" not in recovered.headers


def test_the_limit_is_per_user(lapi):
    alice, bob = lapi.create_user(), lapi.create_user()
    alice_auth, bob_auth = bearer_for(lapi, alice), bearer_for(lapi, bob)
    for _ in range(PER_SECOND):
        lapi.http.get("/api/v1/tokenInfo", headers=alice_auth)
    assert lapi.http.get("/api/v1/tokenInfo", headers=alice_auth).status_code == 429
    response = lapi.http.get("/api/v1/tokenInfo", headers=bob_auth)
    assert response.status_code == 200
    assert response.headers["X-Ratelimit-Remaining"] == str(PER_SECOND - 1)


def test_the_limit_holds_whatever_the_credential(lapi):
    """Basic, a token and a session of one user share one budget."""
    user = lapi.create_user()
    session = lapi.http.post("/api/v1/auth", json={"login": user["login"],
                                                   "password": user["password"]})
    cookie = {"Cookie": f"sid={session.cookies['sid']}"}
    lapi.http.cookies.clear()
    for headers in [user["auth"], bearer_for(lapi, user), cookie] * 2:
        last = lapi.http.get("/api/v1/tokenInfo", headers=headers)
    assert_envelope(last, 429)


def test_the_minute_window(lapi):
    user = lapi.create_user()
    auth = bearer_for(lapi, user)
    statuses = []
    for second in range(PER_MINUTE // PER_SECOND):
        if second:
            time.sleep(1.05)
        statuses += [lapi.http.get("/api/v1/tokenInfo", headers=auth).status_code
                     for _ in range(PER_SECOND)]
    assert statuses == [200] * PER_MINUTE
    time.sleep(1.05)  # the second window is free again; the minute's is not
    response = lapi.http.get("/api/v1/tokenInfo", headers=auth)
    assert_envelope(response, 429)
    assert 50 <= int(response.headers["Retry-After"]) <= 60
    assert 50 <= int(response.headers["X-Ratelimit-Reset"]) <= 60
    assert response.headers["X-Ratelimit-Remaining"] == "0"
    assert "per" in response.json()["message"] or "a minute" in response.json()["message"]


def test_refused_requests_do_not_count(lapi):
    """Hammering while limited must not push recovery further away."""
    user = lapi.create_user()
    auth = bearer_for(lapi, user)
    for _ in range(PER_SECOND):
        lapi.http.get("/api/v1/tokenInfo", headers=auth)
    for _ in range(10):
        assert lapi.http.get("/api/v1/tokenInfo", headers=auth).status_code == 429
    time.sleep(1.05)
    response = lapi.http.get("/api/v1/tokenInfo", headers=auth)
    assert response.status_code == 200
    # 5 + 1 counted in the minute, not 16.
    assert response.headers["X-Ratelimit-Remaining"] == str(PER_SECOND - 1)


def test_unauthenticated_responses_carry_no_rate_limit_headers(lapi):
    response = lapi.http.get("/api/v1/users/me")
    assert_envelope(response, 401)
    assert "X-Ratelimit-Remaining" not in response.headers
