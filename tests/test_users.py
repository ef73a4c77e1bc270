"""Contract §3: POST /api/v1/users (admin only), users/me, and the readonly role."""

from __future__ import annotations

import re

import pytest

from tests.support.api import basic, unique, unique_address
from tests.support.asserts import assert_envelope


def test_admin_creates_a_user_who_can_log_in(api):
    login = unique("new")
    response = api.http.post("/api/v1/users", headers=api.as_admin(), json={
        "login": login, "password": "pw-abcdef", "groups": ["staff"], "roles": ["publisher"]})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"_id", "login", "groups", "roles"}  # never the password or its hash
    assert re.fullmatch(r"[0-9a-f]{24}", body["_id"])
    assert body == {"_id": body["_id"], "login": login, "groups": ["staff"], "roles": ["publisher"]}
    me = api.http.get("/api/v1/users/me", headers=basic(login, "pw-abcdef"))
    assert me.json() == body


def test_groups_and_roles_default_to_empty(api):
    login = unique("plain")
    response = api.http.post("/api/v1/users", headers=api.as_admin(),
                             json={"login": login, "password": "pw-abcdef"})
    assert response.status_code == 201
    assert response.json()["groups"] == [] and response.json()["roles"] == []


def test_an_existing_login_is_409(api):
    user = api.create_user()
    response = api.http.post("/api/v1/users", headers=api.as_admin(),
                             json={"login": user["login"], "password": "another-pw"})
    assert_envelope(response, 409)
    # The original password still works: nothing was overwritten.
    assert api.http.get("/api/v1/users/me", headers=user["auth"]).status_code == 200


def test_a_non_admin_may_not_create_users(api):
    user = api.create_user()
    response = api.http.post("/api/v1/users", headers=user["auth"],
                             json={"login": unique("x"), "password": "pw-abcdef"})
    assert_envelope(response, 403)
    assert_envelope(api.http.post("/api/v1/users", json={"login": unique("x"), "password": "p"}), 401)


def test_an_admin_created_through_the_api_may_create_users(api):
    boss = api.create_user(roles=["admin"])
    response = api.http.post("/api/v1/users", headers=boss["auth"],
                             json={"login": unique("x"), "password": "pw-abcdef"})
    assert response.status_code == 201


BAD = [
    ("missing login", {"password": "pw"}),
    ("missing password", {"login": "L"}),
    ("empty password", {"login": "L", "password": ""}),
    ("login a number", {"login": 7, "password": "pw"}),
    ("login with a colon", {"login": "a:b", "password": "pw"}),
    ("login with a space", {"login": "a b", "password": "pw"}),
    ("unknown role", {"login": "L", "password": "pw", "roles": ["superuser"]}),
    ("roles a string", {"login": "L", "password": "pw", "roles": "admin"}),
    ("groups not strings", {"login": "L", "password": "pw", "groups": [1, 2]}),
    ("groups an object", {"login": "L", "password": "pw", "groups": {"a": 1}}),
    ("empty group", {"login": "L", "password": "pw", "groups": [""]}),
]


@pytest.mark.parametrize("name,body", BAD, ids=[b[0] for b in BAD])
def test_bad_user_bodies_are_400(api, name, body):
    if body.get("login") == "L":
        body = {**body, "login": unique("bad")}
    assert_envelope(api.http.post("/api/v1/users", headers=api.as_admin(), json=body), 400)


@pytest.mark.parametrize("content", [b"[]", b"{nope", b"", b"42"])
def test_malformed_user_bodies_are_400(api, content):
    response = api.http.post("/api/v1/users", content=content,
                             headers={**api.as_admin(), "Content-Type": "application/json"})
    assert_envelope(response, 400)


def test_an_oversized_user_body_is_413(api):
    body = {"login": unique("big"), "password": "x" * (1024 * 1024 + 1)}
    assert_envelope(api.http.post("/api/v1/users", headers=api.as_admin(), json=body), 413)


def test_a_readonly_user_reads_but_every_write_is_403(api):
    user = api.create_user(roles=["readonly"])
    assert api.http.get("/api/v1/users/me", headers=user["auth"]).status_code == 200
    assert api.http.get("/api/v1/apikeys", headers=user["auth"]).status_code == 200
    body = assert_envelope(api.http.post("/api/v1/apikeys", headers=user["auth"], json={}), 403)
    assert "read-only" in body["message"]
    assert_envelope(api.http.delete("/api/v1/apikeys/whatever", headers=user["auth"]), 403)
    # Logging in and out are not writes to the data.
    login = api.http.post("/api/v1/auth", json={"login": user["login"], "password": user["password"]},
                          headers={"X-Forwarded-For": unique_address()})
    assert login.status_code == 200


def test_the_password_is_stored_only_as_a_slow_salted_hash(api, redis_client):
    a = api.create_user(password="same-password")
    b = api.create_user(password="same-password")
    stored = redis_client.hgetall("gw:users")
    import msgpack
    records = {r["_id"]: r for r in (msgpack.unpackb(v, raw=False) for v in stored.values())}
    hash_a, hash_b = records[a["_id"]]["password"], records[b["_id"]]["password"]
    assert hash_a.startswith("$argon2id$") and hash_b.startswith("$argon2id$")
    assert hash_a != hash_b  # salted
    assert b"same-password" not in b"".join(stored.values())
