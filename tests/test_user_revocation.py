"""Contract §3, "a credential's end": a new password, disabling or deleting a user on one gateway
process ends every session, token and API key of the user on every process at once; logouts and
API-key deletions end theirs; each change is announced on gw:control in the same transaction.

Two gateway processes share one Redis; everything is changed on A and tried on B. (Realtime
connections being closed is tested with the realtime modules.)
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway import codec, ids
from gateway.auth.credentials import Sessions, Tokens
from gateway.auth.principal import Credential, FULL_SCOPE
from gateway.exceptions import Unauthorized
from gateway.store import control
from gateway.store.users import Users
from tests.support.api import FAST_LIMITS, Api, basic, unique, unique_address
from tests.support.asserts import assert_envelope
from tests.support.processes import wait_for

ENV = {**FAST_LIMITS, "GATEWAY_HOOKS_WORKER": "off"}


@pytest.fixture(scope="module")
def pair(start_gateway):
    first, second = start_gateway(ENV, wait=False), start_gateway(ENV, wait=False)
    for process in (first, second):
        wait_for(process._healthy, timeout=30, what=f"gateway on port {process.port}")
    a, b = Api(first.url), Api(second.url)
    yield a, b
    a.close()
    b.close()


def elsewhere(headers: dict[str, str]) -> dict[str, str]:
    """From an address of its own: a refused credential counts towards that address's ban."""
    return {**headers, "X-Forwarded-For": unique_address()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Control:
    """A real subscriber on gw:control, started before the change it should hear about."""

    def __init__(self, redis_client: Any) -> None:
        self.pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe("gw:control")
        wait_for(lambda: self.pubsub.subscribed, what="the gw:control subscription")
        self.pubsub.get_message(timeout=0.5)

    def next(self, wanted: type, timeout: float = 5.0, **fields: Any) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            raw = self.pubsub.get_message(timeout=0.2)
            if raw is None:
                continue
            message = control.decode(raw["data"])
            if isinstance(message, wanted) and all(
                    getattr(message, name) == value for name, value in fields.items()):
                return message
        raise AssertionError(f"no {wanted.__name__} {fields} on gw:control within {timeout} s")

    def close(self) -> None:
        self.pubsub.close()


@pytest.fixture()
def control_channel(redis_client):
    listener = Control(redis_client)
    yield listener
    listener.close()


def every_credential(a: Api, b: Api, user: dict[str, Any]) -> dict[str, dict[str, str]]:
    """A cookie session, a login token, an API key and its access token, an unused one-time
    token and Basic, each made on one process and proven on the other (so B has the user and
    the Basic password cached)."""
    here = {"X-Forwarded-For": unique_address()}
    body = {"login": user["login"], "password": user["password"]}
    session = a.http.post("/api/v1/auth", json=body, headers=here)
    assert session.status_code == 200
    a.http.cookies.clear()
    cookie = {"Cookie": f"sid={session.cookies['sid']}"}
    token = b.http.post("/api/v1/auth/token", json=body, headers=here).json()["token"]
    key = a.http.post("/api/v1/apikeys", headers=user["auth"]).json()["key"]
    access = b.http.get("/auth/token", headers={"Authorization": key}).json()["accessToken"]
    once = a.http.post("/api/v1/auth/one-time-token", headers=cookie).json()["token"]
    made = {"cookie": cookie, "login token": bearer(token), "access token": bearer(access),
            "basic": user["auth"]}
    for name, headers in made.items():
        for api in (a, b):
            assert api.http.get("/api/v1/users/me", headers=headers).status_code == 200, name
    made["one-time token"] = bearer(once)
    made["api key"] = {"Authorization": key}
    return made


def assert_all_refused(api: Api, made: dict[str, dict[str, str]]) -> None:
    for name, headers in made.items():
        path = "/auth/token" if name == "api key" else "/api/v1/users/me"
        response = api.http.get(path, headers=elsewhere(headers))
        assert_envelope(response, 401)


def assert_nothing_left(redis_client, user_id: str) -> None:
    for key in (f"gw:user-sessions:{user_id}", f"gw:user-tokens:{user_id}",
                f"gw:user-apikeys:{user_id}"):
        assert not redis_client.exists(key), key


def patch(api: Api, user: dict[str, Any], body: dict[str, Any]):
    response = api.http.patch(f"/api/v1/users/{user['_id']}", headers=api.as_admin(), json=body)
    assert response.status_code == 200, response.text
    return response.json()


# --- a new password, disabling, deleting ---------------------------------------------------

ENDINGS = {
    "new password": lambda api, user: patch(api, user, {"password": "a-new-password"}),
    "disabled": lambda api, user: patch(api, user, {"disabled": True}),
    "deleted": lambda api, user: api.http.delete(f"/api/v1/users/{user['_id']}",
                                                 headers=api.as_admin()).raise_for_status(),
}


@pytest.mark.parametrize("ending", ENDINGS)
def test_every_credential_ends_on_the_other_process_at_once(pair, redis_client, control_channel,
                                                            ending):
    a, b = pair
    user = a.create_user(groups=["g"], roles=["publisher"])
    made = every_credential(a, b, user)
    assert redis_client.zcard(f"gw:user-sessions:{user['_id']}") == 1
    assert redis_client.zcard(f"gw:user-tokens:{user['_id']}") == 3  # login, access, one-time

    ENDINGS[ending](a, user)
    assert_all_refused(b, made)
    assert_all_refused(a, made)
    assert_nothing_left(redis_client, user["_id"])
    message = control_channel.next(control.UserChanged, user_id=user["_id"])
    assert message == control.UserChanged(user["_id"], ("g",), ("publisher",), True)


def test_only_the_new_password_works_anywhere(pair):
    a, b = pair
    user = a.create_user()
    every_credential(a, b, user)
    patch(a, user, {"password": "the-new-one"})
    for api in (b, a):
        assert_envelope(api.http.get("/api/v1/users/me", headers=elsewhere(user["auth"])), 401)
        assert api.http.get("/api/v1/users/me",
                            headers=basic(user["login"], "the-new-one")).status_code == 200
        assert_envelope(api.http.post("/api/v1/auth/token", headers=elsewhere({}), json={
            "login": user["login"], "password": user["password"]}), 401)


def test_a_disabled_user_is_told_so_on_the_other_process(pair):
    a, b = pair
    user = a.create_user()
    every_credential(a, b, user)
    patch(a, user, {"disabled": True})
    body = assert_envelope(b.http.get("/api/v1/users/me", headers=elsewhere(user["auth"])), 401)
    assert "disabled" in body["message"]
    patch(a, user, {"disabled": False})
    assert b.http.get("/api/v1/users/me", headers=user["auth"]).status_code == 200


def test_a_deleted_users_login_is_free_on_the_other_process(pair):
    a, b = pair
    user = a.create_user()
    every_credential(a, b, user)
    a.http.delete(f"/api/v1/users/{user['_id']}", headers=a.as_admin()).raise_for_status()
    again = b.create_user(login=user["login"], password=user["password"])
    assert again["_id"] != user["_id"]
    me = b.http.get("/api/v1/users/me", headers=user["auth"])  # same login and password
    assert me.status_code == 200 and me.json()["_id"] == again["_id"]


# --- groups and roles ----------------------------------------------------------------------

def test_groups_and_roles_change_on_the_other_process_at_once_and_keep_credentials(
        pair, control_channel):
    a, b = pair
    user = a.create_user(groups=["before"])
    made = every_credential(a, b, user)
    patch(a, user, {"groups": ["after"], "roles": ["readonly"]})
    message = control_channel.next(control.UserChanged, user_id=user["_id"])
    assert message == control.UserChanged(user["_id"], ("after",), ("readonly",), False)
    for name in ("cookie", "login token", "access token", "basic"):
        me = b.http.get("/api/v1/users/me", headers=made[name])
        assert me.status_code == 200, name
        assert (me.json()["groups"], me.json()["roles"]) == (["after"], ["readonly"]), name
    # The new role is applied, not just shown: readonly may not write.
    assert_envelope(b.http.post(f"/api/v1/{unique('s')}", headers=made["cookie"], json={}), 403)


# --- logouts and API keys ----------------------------------------------------------------

def test_bearer_logout_ends_the_token_everywhere_and_says_so(pair, redis_client, control_channel):
    a, b = pair
    user = a.create_user()
    token = b.http.post("/api/v1/auth/token", json={
        "login": user["login"], "password": user["password"]}).json()["token"]
    assert b.http.get("/api/v1/users/me", headers=bearer(token)).status_code == 200
    assert a.http.delete("/api/v1/auth", headers=bearer(token)).status_code == 200
    control_channel.next(control.CredentialEnded, kind="token", digest=ids.digest(token))
    assert_envelope(b.http.get("/api/v1/users/me", headers=bearer(token)), 401)
    assert redis_client.zscore(f"gw:user-tokens:{user['_id']}", ids.digest(token)) is None


def test_cookie_logout_says_so_in_the_new_message(pair, redis_client, control_channel):
    a, b = pair
    user = a.create_user()
    sid = a.http.post("/api/v1/auth", json={"login": user["login"],
                                            "password": user["password"]}).cookies["sid"]
    a.http.cookies.clear()
    assert redis_client.zscore(f"gw:user-sessions:{user['_id']}", ids.digest(sid)) is not None
    assert b.http.delete("/api/v1/auth", headers={"Cookie": f"sid={sid}"}).status_code == 200
    control_channel.next(control.CredentialEnded, kind="session", digest=ids.digest(sid))
    assert_envelope(a.http.get("/api/v1/users/me", headers={"Cookie": f"sid={sid}"}), 401)
    assert redis_client.zscore(f"gw:user-sessions:{user['_id']}", ids.digest(sid)) is None


def test_deleting_an_api_key_deletes_its_tokens_and_says_so(pair, redis_client, control_channel):
    a, b = pair
    user = a.create_user()
    created = a.http.post("/api/v1/apikeys", headers=user["auth"]).json()
    tokens = [b.http.get("/auth/token", headers={"Authorization": created["key"]}).json()
              ["accessToken"] for _ in range(2)]
    digests = {ids.digest(token) for token in tokens}
    index = f"gw:apikey-tokens:{created['id']}"
    assert {m.decode() for m in redis_client.zrange(index, 0, -1)} == digests
    other = a.http.post("/api/v1/auth/token", json={
        "login": user["login"], "password": user["password"]}).json()["token"]

    assert a.http.delete(f"/api/v1/apikeys/{created['id']}", headers=user["auth"]).status_code == 200
    control_channel.next(control.ApiKeyDeleted, key_id=created["id"])
    for token in tokens:
        assert not redis_client.exists(f"gw:token:{ids.digest(token)}")
        assert_envelope(b.http.get("/api/v1/users/me", headers=bearer(token)), 401)
    assert not redis_client.exists(index)
    # Only that key's tokens: the user's other credentials live on.
    assert b.http.get("/api/v1/users/me", headers=bearer(other)).status_code == 200


# --- bans and rate limits still hold -------------------------------------------------------

def test_an_old_password_counts_towards_the_ban_on_the_other_process(pair):
    a, b = pair
    user = a.create_user()
    every_credential(a, b, user)
    patch(a, user, {"password": "changed-pw"})
    address = {"X-Forwarded-For": unique_address()}
    for api in (b, a, b):  # the default GATEWAY_AUTH_BAN_ATTEMPTS: 3
        assert_envelope(api.http.get("/api/v1/users/me", headers={**user["auth"], **address}), 401)
    assert_envelope(b.http.get("/api/v1/users/me",
                               headers={**basic(user["login"], "changed-pw"), **address}), 403)


def test_the_rate_limit_count_carries_on_across_a_change(pair):
    a, b = pair
    user = a.create_user()
    token = a.http.post("/api/v1/auth/token", json={
        "login": user["login"], "password": user["password"]}).json()["token"]

    def remaining() -> int:
        response = b.http.get("/api/v1/tokenInfo", headers=bearer(token))
        assert response.status_code == 200
        return int(response.headers["X-Ratelimit-Remaining"])

    before = remaining()
    patch(a, user, {"groups": ["x"]})
    assert remaining() == before - 1


# --- the store: credentials can't be born after their revocation ----------------------------

def run(redis_url: str, test) -> None:
    async def main() -> None:
        redis = aioredis.Redis.from_url(redis_url)
        try:
            await test(redis, Users(redis), Sessions(redis, ttl_s=60), Tokens(redis))
        finally:
            await redis.aclose()

    asyncio.run(main())


def test_no_session_or_token_is_issued_on_a_password_that_just_changed(redis_url):
    async def test(redis, users, sessions, tokens):
        user = await users.create(unique("race"), "first-password")
        await users.update(user.id, password="second-password")
        with pytest.raises(Unauthorized, match="password was changed"):
            await sessions.create(user.id, password_hash=user.password_hash)
        with pytest.raises(Unauthorized, match="password was changed"):
            await tokens.issue(user.id, kind="login", scope=FULL_SCOPE, ttl_s=60,
                               password_hash=user.password_hash)
        assert not await redis.exists(f"gw:user-sessions:{user.id}", f"gw:user-tokens:{user.id}")
        current = await users.fetch(user.id)
        sid, _ = await sessions.create(user.id, password_hash=current.password_hash)
        assert await sessions.user_for(sid) == (user.id, ids.digest(sid))

    run(redis_url, test)


def test_nothing_is_issued_to_a_disabled_or_deleted_user(redis_url):
    async def test(redis, users, sessions, tokens):
        user = await users.create(unique("off"), "pw")
        await users.update(user.id, disabled=True)
        with pytest.raises(Unauthorized, match="disabled"):
            await sessions.create(user.id, password_hash=user.password_hash)
        await users.delete(user.id)
        with pytest.raises(Unauthorized, match="no longer exists"):
            await tokens.issue(user.id, kind="once", scope=FULL_SCOPE, ttl_s=60)

    run(redis_url, test)


def test_a_one_time_token_or_access_token_needs_a_live_issuer(redis_url):
    async def test(redis, users, sessions, tokens):
        user = await users.create(unique("issuer"), "pw")
        gone = Credential("session", ids.digest("no-such-session"))
        with pytest.raises(Unauthorized, match="has ended"):
            await tokens.issue(user.id, kind="once", scope=FULL_SCOPE, ttl_s=60, issuer=gone)
        with pytest.raises(Unauthorized, match="has ended"):
            await tokens.issue(user.id, kind="access", scope=FULL_SCOPE, ttl_s=60,
                               extra={"key": "no-such-key"})
        sid, _ = await sessions.create(user.id, password_hash=user.password_hash)
        live = Credential("session", ids.digest(sid))
        token, _, _ = await tokens.issue(user.id, kind="once", scope=FULL_SCOPE, ttl_s=60,
                                         issuer=live)
        assert (await tokens.resolve(token)).issuer == live

    run(redis_url, test)


def test_the_per_user_index_drops_expired_members_and_expires_with_the_last(redis_url):
    async def test(redis, users, sessions, tokens):
        user = await users.create(unique("index"), "pw")
        index = f"gw:user-sessions:{user.id}"
        await redis.zadd(index, {"long-expired": 1})
        sid, expires_ms = await sessions.create(user.id, password_hash=user.password_hash)
        assert await redis.zrange(index, 0, -1, withscores=True) == [
            (ids.digest(sid).encode(), float(expires_ms))]
        assert 0 < await redis.pttl(index) <= 60_000
        assert abs(expires_ms - (time.time() * 1000 + 60_000)) < 5_000

    run(redis_url, test)


def test_a_concurrent_change_is_not_lost(redis_url):
    """Two admins at once, one changing groups and one roles: both changes stay."""
    async def test(redis, users, sessions, tokens):
        user = await users.create(unique("both"), "pw")
        for n in range(5):
            await asyncio.gather(users.update(user.id, groups=[f"g{n}"]),
                                 users.update(user.id, roles=["publisher"] if n % 2 else []))
            record = codec.unpack(await redis.hget("gw:users", user.id))
            assert record["groups"] == [f"g{n}"]
            assert record["roles"] == (["publisher"] if n % 2 else [])

    run(redis_url, test)
