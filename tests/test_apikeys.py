"""Contract §3: API keys (create, list, delete) and their exchange at GET /auth/token."""

from __future__ import annotations

import uuid

import pytest

from tests.support.api import unique_address
from tests.support.asserts import assert_envelope


def create_key(api, user, **body):
    response = api.http.post("/api/v1/apikeys", headers=user["auth"], json=body)
    assert response.status_code == 201, response.text
    return response.json()


def exchange(api, key, address=None):
    headers = {"Authorization": key}
    if address:
        headers["X-Forwarded-For"] = address
    return api.http.get("/auth/token", headers=headers)


def test_create_shows_the_key_once_and_list_never_does(api):
    user = api.create_user()
    created = create_key(api, user)
    assert {"id", "key", "scope"} <= set(created)
    assert created["scope"] == "read write"  # the default
    assert isinstance(created["key"], str) and len(created["key"]) >= 40
    listed = api.http.get("/api/v1/apikeys", headers=user["auth"])
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()] == [created["id"]]
    assert listed.json()[0]["scope"] == "read write"
    assert "key" not in listed.json()[0]
    assert created["key"].rsplit("_", 1)[-1] not in listed.text


def test_create_without_a_body_uses_the_default_scope(api):
    user = api.create_user()
    response = api.http.post("/api/v1/apikeys", headers=user["auth"])
    assert response.status_code == 201, response.text
    assert response.json()["scope"] == "read write"


def test_list_shows_only_the_callers_keys(api):
    alice, bob = api.create_user(), api.create_user()
    mine = create_key(api, alice)
    create_key(api, bob)
    ids = [item["id"] for item in api.http.get("/api/v1/apikeys", headers=alice["auth"]).json()]
    assert ids == [mine["id"]]


def test_exchange_gives_a_900s_bearer_token_of_the_exact_shape(api):
    user = api.create_user()
    key = create_key(api, user)["key"]
    response = exchange(api, key)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"accessToken", "tokenType", "expiresIn", "scope", "jti"}
    assert body["tokenType"] == "bearer"
    assert body["expiresIn"] == "900s"
    assert body["scope"] == "read write"
    assert str(uuid.UUID(body["jti"])) == body["jti"]
    bearer = {"Authorization": f"Bearer {body['accessToken']}"}
    assert api.http.get("/api/v1/tokenInfo", headers=bearer).json() == {"_userId": user["_id"]}
    # Every exchange is a new token with a new jti.
    again = exchange(api, key).json()
    assert again["jti"] != body["jti"] and again["accessToken"] != body["accessToken"]


def test_exchange_accepts_the_key_after_a_bearer_scheme_too(api):
    user = api.create_user()
    key = create_key(api, user)["key"]
    assert exchange(api, f"Bearer {key}").status_code == 200


def test_a_read_key_gives_a_read_token_that_may_not_write(api):
    user = api.create_user()
    created = create_key(api, user, scope="read")
    assert created["scope"] == "read"
    body = exchange(api, created["key"]).json()
    assert body["scope"] == "read"
    bearer = {"Authorization": f"Bearer {body['accessToken']}"}
    assert api.http.get("/api/v1/users/me", headers=bearer).status_code == 200
    assert api.http.get("/api/v1/apikeys", headers=bearer).status_code == 200
    # A read token must not mint a key with more power than its own, nor delete keys.
    assert_envelope(api.http.post("/api/v1/apikeys", headers=bearer, json={}), 403)
    assert_envelope(api.http.post("/api/v1/apikeys", headers=bearer, json={"scope": "read"}), 403)
    assert_envelope(api.http.delete(f"/api/v1/apikeys/{created['id']}", headers=bearer), 403)
    # Nor escape its scope through a one-time token.
    once = api.http.post("/api/v1/auth/one-time-token", headers=bearer).json()["token"]
    assert_envelope(api.http.post("/api/v1/apikeys", json={},
                                  headers={"Authorization": f"Bearer {once}"}), 403)


@pytest.mark.parametrize("header", ["gwk_nothing_here", "not-a-key", "gwk_", ""])
def test_an_invalid_key_is_401(api, header):
    response = exchange(api, header, address=unique_address())
    assert_envelope(response, 401)


def test_a_real_key_id_with_a_wrong_secret_is_401(api):
    user = api.create_user()
    key = create_key(api, user)["key"]
    forged = key[: key.rindex("_") + 1] + "A" * 43
    assert_envelope(exchange(api, forged, address=unique_address()), 401)


def test_the_key_itself_is_not_a_bearer_token(api):
    user = api.create_user()
    key = create_key(api, user)["key"]
    assert_envelope(api.http.get("/api/v1/users/me", headers={"Authorization": f"Bearer {key}"}), 401)


def test_delete_removes_the_key_and_revokes_its_tokens(api):
    user = api.create_user()
    created = create_key(api, user)
    token = exchange(api, created["key"]).json()["accessToken"]
    response = api.http.delete(f"/api/v1/apikeys/{created['id']}", headers=user["auth"])
    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert api.http.get("/api/v1/apikeys", headers=user["auth"]).json() == []
    assert_envelope(exchange(api, created["key"], address=unique_address()), 401)
    # A deleted (say, leaked) key's tokens stop working at once, not 900 s later.
    assert_envelope(api.http.get("/api/v1/users/me",
                                 headers={"Authorization": f"Bearer {token}"}), 401)
    assert_envelope(api.http.delete(f"/api/v1/apikeys/{created['id']}", headers=user["auth"]), 404)


def test_another_users_key_is_404_and_survives(api):
    alice, mallory = api.create_user(), api.create_user()
    created = create_key(api, alice)
    assert_envelope(api.http.delete(f"/api/v1/apikeys/{created['id']}",
                                    headers=mallory["auth"]), 404)
    assert exchange(api, created["key"]).status_code == 200


def test_an_unknown_key_id_is_404(api):
    user = api.create_user()
    assert_envelope(api.http.delete("/api/v1/apikeys/nope", headers=user["auth"]), 404)


@pytest.mark.parametrize("body", [{"scope": "admin"}, {"scope": 5}, {"scope": ["read"]},
                                  {"scope": ""}, {"scope": "write"}])
def test_a_bad_scope_is_400(api, body):
    user = api.create_user()
    assert_envelope(api.http.post("/api/v1/apikeys", headers=user["auth"], json=body), 400)


@pytest.mark.parametrize("content", [b"[]", b"{", b'"read"'])
def test_bad_bodies_are_400(api, content):
    user = api.create_user()
    response = api.http.post("/api/v1/apikeys", content=content,
                             headers={**user["auth"], "Content-Type": "application/json"})
    assert_envelope(response, 400)


def test_apikeys_need_credentials(api):
    assert_envelope(api.http.post("/api/v1/apikeys", json={}), 401)
    assert_envelope(api.http.get("/api/v1/apikeys"), 401)
    assert_envelope(api.http.delete("/api/v1/apikeys/x"), 401)


def test_a_one_time_token_may_create_an_api_key_once(api):
    """The check made again after the body (deps.confirmed) asks after the token's issuer,
    since the one-time token itself was spent by the first check."""
    user = api.create_user()
    once = api.http.post("/api/v1/auth/one-time-token", headers=user["auth"]).json()["token"]
    bearer = {"Authorization": f"Bearer {once}"}
    created = api.http.post("/api/v1/apikeys", json={"scope": "read"}, headers=bearer)
    assert created.status_code == 201, created.text
    assert api.http.post("/api/v1/apikeys", json={}, headers=bearer).status_code == 401
