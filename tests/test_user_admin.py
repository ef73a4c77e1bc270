"""Contract §1 and §3: user administration — GET /api/v1/users, GET/PATCH/DELETE
/api/v1/users/{id}, and `gateway users list|update|delete`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.api import basic, unique, unique_address
from tests.support.asserts import assert_envelope
from tests.support.processes import ROOT

ADMIN_VIEW = {"_id", "login", "groups", "roles", "disabled", "createdAt"}


def users_url(user: dict | str | None = None) -> str:
    if user is None:
        return "/api/v1/users"
    return f"/api/v1/users/{user if isinstance(user, str) else user['_id']}"


def elsewhere(auth: dict[str, str]) -> dict[str, str]:
    """Credentials sent from an address of their own: a refused one counts towards a ban."""
    return {**auth, "X-Forwarded-For": unique_address()}


def login_status(client, user, password=None) -> int:
    response = client.http.post("/api/v1/auth", headers={"X-Forwarded-For": unique_address()},
                                json={"login": user["login"], "password": password or user["password"]})
    client.http.cookies.clear()
    return response.status_code


# --- GET /api/v1/users, GET /api/v1/users/{id} --------------------------------------------

def test_an_admin_lists_every_user_without_passwords(client):
    made = [client.create_user(groups=["g1"], roles=["publisher"]), client.create_user()]
    response = client.http.get(users_url(), headers=client.as_admin())
    assert response.status_code == 200
    listed = {user["_id"]: user for user in response.json()}
    for user in made:
        assert set(listed[user["_id"]]) == ADMIN_VIEW
        assert listed[user["_id"]]["login"] == user["login"]
        assert listed[user["_id"]]["disabled"] is False
    assert listed[made[0]["_id"]]["groups"] == ["g1"]
    assert listed[made[0]["_id"]]["roles"] == ["publisher"]
    assert "admin" in {user["login"] for user in response.json()}
    assert "password" not in response.text and "argon2" not in response.text
    created = [user["createdAt"] for user in response.json()]
    assert created == sorted(created)  # oldest first


def test_an_admin_reads_one_user(client):
    user = client.create_user(groups=["staff"])
    response = client.http.get(users_url(user), headers=client.as_admin())
    assert response.status_code == 200
    body = response.json()
    assert set(body) == ADMIN_VIEW
    assert (body["_id"], body["login"], body["groups"], body["roles"], body["disabled"]) == (
        user["_id"], user["login"], ["staff"], [], False)


@pytest.mark.parametrize(("user_id", "status"), [
    ("0" * 24, 404), ("nope", 404), ("x" * 300, 404),
    ("nope%0A", 400),  # a control character in a path is malformed input, whatever the route
])
def test_an_unknown_user_id_is_404_on_every_method(client, user_id, status):
    admin = client.as_admin()
    assert_envelope(client.http.get(users_url(user_id), headers=admin), status)
    assert_envelope(client.http.patch(users_url(user_id), headers=admin,
                                      json={"groups": ["a"]}), status)
    assert_envelope(client.http.delete(users_url(user_id), headers=admin), status)


def test_only_admins_may_administer_users(client):
    user, other = client.create_user(), client.create_user()
    for who in (user, other):
        assert_envelope(client.http.get(users_url(), headers=who["auth"]), 403)
        assert_envelope(client.http.get(users_url(user), headers=who["auth"]), 403)
        assert_envelope(client.http.patch(users_url(user), headers=who["auth"],
                                          json={"roles": ["admin"]}), 403)
        assert_envelope(client.http.delete(users_url(other), headers=who["auth"]), 403)
    for method in ("GET", "PATCH", "DELETE"):
        assert_envelope(client.http.request(method, users_url(user)), 401)
    assert_envelope(client.http.get(users_url()), 401)
    # Nothing changed: both still log in, with no new role.
    me = client.http.get("/api/v1/users/me", headers=user["auth"]).json()
    assert me["roles"] == []
    assert client.http.get("/api/v1/users/me", headers=other["auth"]).status_code == 200


def test_a_publisher_or_readonly_user_is_no_admin(client):
    for roles in (["publisher"], ["readonly"]):
        user = client.create_user(roles=roles)
        assert_envelope(client.http.get(users_url(), headers=user["auth"]), 403)


def test_users_me_stays_the_four_public_fields(client):
    user = client.create_user()
    me = client.http.get("/api/v1/users/me", headers=user["auth"]).json()
    assert set(me) == {"_id", "login", "groups", "roles"}


# --- PATCH /api/v1/users/{id} ---------------------------------------------------------------

def test_patch_groups_and_roles_applies_at_once_and_keeps_credentials(client):
    user = client.create_user(groups=["old"])
    token = client.http.post("/api/v1/auth/token", json={
        "login": user["login"], "password": user["password"]}).json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    response = client.http.patch(users_url(user), headers=client.as_admin(),
                                 json={"groups": ["new", "eu"], "roles": ["publisher"]})
    assert response.status_code == 200, response.text
    assert "X-Ratelimit-Remaining" in response.headers
    body = response.json()
    assert set(body) == ADMIN_VIEW
    assert (body["groups"], body["roles"], body["disabled"]) == (["new", "eu"], ["publisher"], False)
    for auth in (bearer, user["auth"]):
        me = client.http.get("/api/v1/users/me", headers=auth)
        assert me.status_code == 200
        assert (me.json()["groups"], me.json()["roles"]) == (["new", "eu"], ["publisher"])
    # The new role works: a publisher may publish.
    published = client.http.post("/api/v1/events", headers=bearer, json={
        "type": "x.y", "store": unique("pub"), "data": {"a": 1}})
    assert published.status_code == 202, published.text


def test_patch_only_what_is_given(client):
    user = client.create_user(groups=["g"], roles=["publisher"])
    assert client.http.patch(users_url(user), headers=client.as_admin(),
                             json={"roles": []}).json()["groups"] == ["g"]
    body = client.http.get(users_url(user), headers=client.as_admin()).json()
    assert (body["groups"], body["roles"]) == (["g"], [])
    assert client.http.get("/api/v1/users/me", headers=user["auth"]).status_code == 200


def test_patch_password_replaces_the_password(client):
    user = client.create_user()
    response = client.http.patch(users_url(user), headers=client.as_admin(),
                                 json={"password": "brand-new-pw"})
    assert response.status_code == 200
    assert "brand-new-pw" not in response.text and "password" not in response.json()
    assert_envelope(client.http.get("/api/v1/users/me", headers=elsewhere(user["auth"])), 401)
    assert client.http.get("/api/v1/users/me",
                           headers=basic(user["login"], "brand-new-pw")).status_code == 200
    assert login_status(client, user) == 401
    assert login_status(client, user, "brand-new-pw") == 200


def test_a_disabled_user_cannot_authenticate_at_all_until_enabled(client):
    user = client.create_user()
    key = client.http.post("/api/v1/apikeys", headers=user["auth"]).json()["key"]
    response = client.http.patch(users_url(user), headers=client.as_admin(), json={"disabled": True})
    assert response.status_code == 200 and response.json()["disabled"] is True
    address = {"X-Forwarded-For": unique_address()}
    for _ in range(4):  # the right password on a disabled account is no failed login: no ban
        body = assert_envelope(client.http.get("/api/v1/users/me",
                                               headers={**user["auth"], **address}), 401)
        assert "disabled" in body["message"]
    for path in ("/api/v1/auth", "/api/v1/auth/token"):
        body = assert_envelope(client.http.post(path, headers=address, json={
            "login": user["login"], "password": user["password"]}), 401)
        assert "disabled" in body["message"]
    # A wrong password says nothing about the account.
    wrong = assert_envelope(client.http.get("/api/v1/users/me", headers={
        **basic(user["login"], "wrong"), "X-Forwarded-For": unique_address()}), 401)
    assert "disabled" not in wrong["message"]
    assert_envelope(client.http.get("/auth/token", headers={"Authorization": key,
                                                            "X-Forwarded-For": unique_address()}), 401)
    listed = {u["_id"]: u for u in client.http.get(users_url(), headers=client.as_admin()).json()}
    assert listed[user["_id"]]["disabled"] is True

    enabled = client.http.patch(users_url(user), headers=client.as_admin(), json={"disabled": False})
    assert enabled.status_code == 200 and enabled.json()["disabled"] is False
    assert client.http.get("/api/v1/users/me", headers={**user["auth"], **address}).status_code == 200
    # Disabling revoked the API key for good.
    assert client.http.get("/api/v1/apikeys", headers=user["auth"]).json() == []


def test_an_admin_may_not_disable_or_delete_themselves(client):
    boss = client.create_user(roles=["admin"])
    body = assert_envelope(client.http.patch(users_url(boss), headers=boss["auth"],
                                             json={"disabled": True}), 409)
    assert "own account" in body["message"]
    assert_envelope(client.http.delete(users_url(boss), headers=boss["auth"]), 409)
    assert client.http.get("/api/v1/users/me", headers=boss["auth"]).status_code == 200
    # Their own password they may change.
    assert client.http.patch(users_url(boss), headers=boss["auth"],
                             json={"password": "boss-pw-2"}).status_code == 200
    assert client.http.get(users_url(boss), headers=basic(boss["login"], "boss-pw-2")).status_code == 200


BAD_PATCHES = [
    ("empty object", {}),
    ("unknown field", {"nickname": "x"}),
    ("login is not changeable", {"login": "other"}),
    ("id is not changeable", {"_id": "0" * 24}),
    ("empty password", {"password": ""}),
    ("password a number", {"password": 12345678}),
    ("password null", {"password": None}),
    ("groups a string", {"groups": "staff"}),
    ("groups not strings", {"groups": [1]}),
    ("an empty group", {"groups": [""]}),
    ("groups null", {"groups": None}),
    ("unknown role", {"roles": ["root"]}),
    ("roles null", {"roles": None}),
    ("disabled a string", {"disabled": "true"}),
    ("disabled a number", {"disabled": 1}),
    ("disabled null", {"disabled": None}),
    ("one bad field among good ones", {"groups": ["ok"], "disabled": "yes"}),
]


@pytest.mark.parametrize("name,body", BAD_PATCHES, ids=[b[0] for b in BAD_PATCHES])
def test_bad_patches_are_400_and_change_nothing(client, redis_client, name, body):
    user = client.create_user(groups=["keep"])
    before = redis_client.hget("gw:users", user["_id"])
    response = client.http.patch(users_url(user), headers=client.as_admin(), json=body)
    assert_envelope(response, 400)
    assert redis_client.hget("gw:users", user["_id"]) == before
    assert client.http.get("/api/v1/users/me", headers=user["auth"]).status_code == 200


@pytest.mark.parametrize("content", [b"", b"[]", b"{nope", b'"x"', b'{"groups": NaN}',
                                     b'{"password": "\\ud800"}', b"\xff\xfe"])
def test_malformed_patch_bodies_are_400(client, redis_client, content):
    user = client.create_user()
    before = redis_client.hget("gw:users", user["_id"])
    response = client.http.patch(users_url(user), content=content,
                                 headers={**client.as_admin(), "Content-Type": "application/json"})
    assert_envelope(response, 400)
    assert redis_client.hget("gw:users", user["_id"]) == before


def test_an_oversized_patch_is_413(client):
    user = client.create_user()
    response = client.http.patch(users_url(user), headers=client.as_admin(),
                                 json={"password": "x" * (1024 * 1024 + 1)})
    assert_envelope(response, 413)


# --- DELETE /api/v1/users/{id} --------------------------------------------------------------

def test_delete_ends_the_user_frees_the_login_and_keeps_their_entities(client):
    user = client.create_user()
    store = unique("owned")
    entity = client.http.post(f"/api/v1/{store}", headers=user["auth"], json={"n": 1}).json()
    hook = client.http.post("/api/v1/hooks", headers=user["auth"], json={
        "target_url": "http://127.0.0.1:9/hook", "event": "*", "store": store})
    assert hook.status_code == 201, hook.text
    response = client.http.delete(users_url(user), headers=client.as_admin())
    assert response.status_code == 200
    assert response.json() == {"success": True}

    assert_envelope(client.http.get(users_url(user), headers=client.as_admin()), 404)
    assert_envelope(client.http.delete(users_url(user), headers=client.as_admin()), 404)
    assert_envelope(client.http.get("/api/v1/users/me", headers=elsewhere(user["auth"])), 401)
    assert user["_id"] not in {u["_id"] for u in
                               client.http.get(users_url(), headers=client.as_admin()).json()}
    # The user's hooks went with them; their entities stay, for admins and whoever may read.
    assert_envelope(client.http.get(f"/api/v1/hooks/{hook.json()['id']}",
                                    headers=client.as_admin()), 404)
    kept = client.http.get(f"/api/v1/{store}/{entity['_id']}", headers=client.as_admin())
    assert kept.status_code == 200 and kept.json()["owner"] == user["_id"]
    # The login is free again, for a new user with a new id who inherits nothing.
    again = client.create_user(login=user["login"], password="another-pw")
    assert again["_id"] != user["_id"]
    assert_envelope(client.http.get(f"/api/v1/{store}/{entity['_id']}", headers=again["auth"]), 404)
    assert_envelope(client.http.get("/api/v1/users/me", headers=elsewhere(user["auth"])), 401)


# --- gateway users list|update|delete ----------------------------------------------------

def gateway_cli(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PORT"))}
    env["GATEWAY_REDIS_URL"] = redis_url
    return subprocess.run([sys.executable, "-m", "gateway", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=30)


def test_cli_help_explains_list_update_delete(redis_url):
    for action, words in (("list", ["--json"]),
                          ("update", ["--password", "--groups", "--roles", "--disabled",
                                      "revokes"]),
                          ("delete", ["hooks", "login"])):
        result = gateway_cli(redis_url, "users", action, "--help")
        assert result.returncode == 0
        for word in words:
            assert word in result.stdout, (action, word)


def test_cli_lists_users(client, redis_url):
    user = client.create_user(groups=["g1", "g2"], roles=["publisher"])
    table = gateway_cli(redis_url, "users", "list")
    assert table.returncode == 0, table.stderr
    line = next(line for line in table.stdout.splitlines() if user["_id"] in line)
    assert user["login"] in line and "g1,g2" in line and "publisher" in line
    assert "argon2" not in table.stdout
    listed = gateway_cli(redis_url, "users", "list", "--json")
    assert listed.returncode == 0
    mine = next(u for u in json.loads(listed.stdout) if u["_id"] == user["_id"])
    assert set(mine) == ADMIN_VIEW and mine["disabled"] is False


def test_cli_update_changes_groups_roles_password_and_disabled(client, redis_url):
    user = client.create_user(groups=["old"])
    result = gateway_cli(redis_url, "users", "update", user["login"], "--groups", "a, b",
                         "--roles", "readonly")
    assert result.returncode == 0, result.stderr
    me = client.http.get("/api/v1/users/me", headers=user["auth"]).json()
    assert (me["groups"], me["roles"]) == (["a", "b"], ["readonly"])
    assert gateway_cli(redis_url, "users", "update", user["login"], "--groups", "",
                       "--roles", "").returncode == 0
    me = client.http.get("/api/v1/users/me", headers=user["auth"]).json()
    assert (me["groups"], me["roles"]) == ([], [])

    result = gateway_cli(redis_url, "users", "update", user["login"], "--password", "cli-new-pw")
    assert result.returncode == 0 and "cli-new-pw" not in result.stdout + result.stderr
    assert_envelope(client.http.get("/api/v1/users/me", headers=elsewhere(user["auth"])), 401)
    new_auth = basic(user["login"], "cli-new-pw")
    assert client.http.get("/api/v1/users/me", headers=new_auth).status_code == 200

    assert gateway_cli(redis_url, "users", "update", user["login"], "--disabled", "true").returncode == 0
    body = assert_envelope(client.http.get("/api/v1/users/me", headers=elsewhere(new_auth)), 401)
    assert "disabled" in body["message"]
    assert gateway_cli(redis_url, "users", "update", user["login"], "--disabled", "FALSE").returncode == 0
    assert client.http.get("/api/v1/users/me", headers=new_auth).status_code == 200


@pytest.mark.parametrize("args,code,words", [
    ((), 2, "nothing to change"),
    (("--roles", "root"), 2, "unknown roles"),
    (("--password", ""), 2, "password"),
    (("--disabled", "maybe"), 2, "invalid choice"),
])
def test_cli_update_refuses_bad_arguments(client, redis_url, args, code, words):
    user = client.create_user()
    before = client.http.get(users_url(user), headers=client.as_admin()).json()
    result = gateway_cli(redis_url, "users", "update", user["login"], *args)
    assert result.returncode == code
    assert words in result.stderr.lower()
    assert "Traceback" not in result.stderr
    assert client.http.get(users_url(user), headers=client.as_admin()).json() == before


def test_cli_unknown_login_fails_clearly(redis_url):
    ghost = unique("ghost")
    for args in (("update", ghost, "--groups", "x"), ("delete", ghost)):
        result = gateway_cli(redis_url, "users", *args)
        assert result.returncode == 1
        assert f"no user with login {ghost!r}" in result.stderr
        assert "Traceback" not in result.stderr


def test_cli_delete_ends_the_user_and_frees_the_login(client, redis_url):
    user = client.create_user()
    result = gateway_cli(redis_url, "users", "delete", user["login"])
    assert result.returncode == 0, result.stderr
    assert user["login"] in result.stdout
    assert_envelope(client.http.get("/api/v1/users/me", headers=elsewhere(user["auth"])), 401)
    assert_envelope(client.http.get(users_url(user), headers=client.as_admin()), 404)
    assert gateway_cli(redis_url, "users", "delete", user["login"]).returncode == 1
    assert client.create_user(login=user["login"])["_id"] != user["_id"]
