"""Contract §2–3 over real HTTP: sessions, login tokens, one-time tokens, Basic, tokenInfo, bodies."""

from __future__ import annotations

import base64
import re
import time
from email.utils import parsedate_to_datetime

import httpx
import pytest

from tests.support.api import basic, unique, unique_address
from tests.support.asserts import assert_envelope

COOKIE = re.compile(
    r"^sid=(?P<sid>[A-Za-z0-9_-]{32,}); Path=/; Expires=(?P<expires>[^;]+ GMT); HttpOnly; "
    r"SameSite=Lax$"
)


def here() -> dict[str, str]:
    """Headers that give this request a client address of its own (the test gateway trusts us)."""
    return {"X-Forwarded-For": unique_address()}


def login(api, user) -> httpx.Response:
    response = api.http.post("/api/v1/auth", headers=here(),
                             json={"login": user["login"], "password": user["password"]})
    api.http.cookies.clear()  # each request below says which credentials it carries
    return response


def cookie(sid: str) -> dict[str, str]:
    return {"Cookie": f"sid={sid}"}


def sid_of(response: httpx.Response) -> str:
    match = COOKIE.match(response.headers["set-cookie"])
    assert match, response.headers["set-cookie"]
    return match["sid"]


# --- POST /api/v1/auth and the sid cookie ---------------------------------------------------

def test_login_sets_the_session_cookie_with_the_contract_attributes(api):
    user = api.create_user()
    before = time.time()
    response = login(api, user)
    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert len(response.headers.get_list("set-cookie")) == 1
    match = COOKIE.match(response.headers["set-cookie"])
    assert match, response.headers["set-cookie"]
    expires = parsedate_to_datetime(match["expires"]).timestamp()
    assert before + 86400 - 5 <= expires <= time.time() + 86400 + 5  # GATEWAY_SESSION_TTL_S


def test_the_session_cookie_authenticates_requests(api):
    user = api.create_user(groups=["staff"])
    sid = sid_of(login(api, user))
    me = api.http.get("/api/v1/users/me", headers=cookie(sid))
    assert me.status_code == 200
    assert me.json() == {"_id": user["_id"], "login": user["login"], "groups": ["staff"],
                         "roles": []}


def test_session_ids_are_opaque_and_unique(api):
    user = api.create_user()
    sids = {sid_of(login(api, user)) for _ in range(2)}
    assert len(sids) == 2
    for sid in sids:
        assert user["_id"] not in sid and user["login"] not in sid
        assert len(base64.urlsafe_b64decode(sid + "=" * (-len(sid) % 4))) >= 32  # 256 bits


@pytest.mark.parametrize("which", ["wrong password", "unknown login"])
def test_failed_login_is_401_with_the_envelope_and_no_cookie(api, which):
    user = api.create_user()
    login_name = user["login"] if which == "wrong password" else unique("nobody")
    response = api.http.post("/api/v1/auth", json={"login": login_name, "password": "nope-nope"},
                             headers=here())
    body = assert_envelope(response, 401)
    assert "set-cookie" not in response.headers
    # The same words whether or not the login exists: no user enumeration.
    assert body["message"] == "Wrong login or password"


def test_a_made_up_session_cookie_is_401(api):
    assert_envelope(api.http.get("/api/v1/users/me", headers=cookie("x" * 43)), 401)


def test_no_credentials_is_401(api):
    for path in ("/api/v1/users/me", "/api/v1/tokenInfo", "/v1/tokenInfo", "/api/v1/apikeys"):
        assert_envelope(api.http.get(path), 401)
    assert_envelope(api.http.post("/api/v1/auth/one-time-token"), 401)
    assert_envelope(api.http.delete("/api/v1/auth"), 401)


# --- DELETE /api/v1/auth --------------------------------------------------------------------

def test_logout_revokes_the_session(api):
    user = api.create_user()
    sid = sid_of(login(api, user))
    other_sid = sid_of(login(api, user))
    response = api.http.delete("/api/v1/auth", headers=cookie(sid))
    assert response.status_code == 200
    assert response.json() == {"success": True}
    cleared = response.headers["set-cookie"]
    assert cleared.startswith("sid=;") and "1970" in cleared
    assert_envelope(api.http.get("/api/v1/users/me", headers=cookie(sid)), 401)
    assert_envelope(api.http.delete("/api/v1/auth", headers=cookie(sid)), 401)
    # Only that session: the user's other session lives on.
    assert api.http.get("/api/v1/users/me", headers=cookie(other_sid)).status_code == 200


def test_logout_with_a_cookie_and_other_credentials_still_revokes_the_cookie(api):
    user = api.create_user()
    sid = sid_of(login(api, user))
    response = api.http.delete("/api/v1/auth", headers={**cookie(sid), **user["auth"]})
    assert response.status_code == 200
    assert_envelope(api.http.get("/api/v1/users/me", headers=cookie(sid)), 401)


# --- POST /api/v1/auth/token ----------------------------------------------------------------

def test_login_token_has_the_contract_shape_and_lifetime(api):
    user = api.create_user()
    before = int(time.time() * 1000)
    response = api.http.post("/api/v1/auth/token", headers=here(),
                             json={"login": user["login"], "password": user["password"]})
    after = int(time.time() * 1000)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"success", "type", "token", "issuedAt", "expiresAt"}
    assert body["success"] is True and body["type"] == "access"
    assert isinstance(body["token"], str) and len(body["token"]) >= 32
    assert isinstance(body["issuedAt"], int) and before - 1000 <= body["issuedAt"] <= after + 1000
    assert body["expiresAt"] - body["issuedAt"] == 86400 * 1000  # GATEWAY_TOKEN_TTL_S
    assert "set-cookie" not in response.headers


def test_login_token_works_as_bearer(api):
    user = api.create_user()
    token = api.http.post("/api/v1/auth/token", headers=here(),
                          json={"login": user["login"], "password": user["password"]}).json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert api.http.get("/api/v1/users/me", headers=bearer).json()["_id"] == user["_id"]
    # Several uses: it is not a one-time token.
    assert api.http.get("/api/v1/tokenInfo", headers=bearer).json() == {"_userId": user["_id"]}


def test_login_token_with_a_wrong_password_is_401(api):
    user = api.create_user()
    response = api.http.post("/api/v1/auth/token", headers=here(),
                             json={"login": user["login"], "password": "wrong-wrong"})
    assert_envelope(response, 401)


@pytest.mark.parametrize("header", ["Bearer gwt_not-a-real-token", "Bearer",
                                    "Token abc", "Digest username=x"])
def test_bad_bearer_or_unknown_scheme_is_401(api, header):
    assert_envelope(api.http.get("/api/v1/users/me", headers={"Authorization": header}), 401)


def test_logout_with_a_login_token_revokes_that_token(api):
    user = api.create_user()
    token = api.http.post("/api/v1/auth/token", headers=here(),
                          json={"login": user["login"], "password": user["password"]}).json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert api.http.delete("/api/v1/auth", headers=bearer).status_code == 200
    assert_envelope(api.http.get("/api/v1/users/me", headers=bearer), 401)


# --- Basic ----------------------------------------------------------------------------------

def test_basic_credentials_authenticate(api):
    user = api.create_user()
    for _ in range(2):  # the second one is served from the verified-password cache
        response = api.http.get("/api/v1/users/me", headers={**user["auth"], **here()})
        assert response.status_code == 200
        assert response.json()["login"] == user["login"]


def test_basic_with_a_wrong_password_is_401_even_after_a_good_one(api):
    user = api.create_user()
    assert api.http.get("/api/v1/users/me", headers={**user["auth"], **here()}).status_code == 200
    bad = basic(user["login"], user["password"] + "x")
    assert_envelope(api.http.get("/api/v1/users/me", headers={**bad, **here()}), 401)


@pytest.mark.parametrize("value", ["Basic !!!not-base64!!!", "Basic " + base64.b64encode(b"no-colon").decode(),
                                   "Basic " + base64.b64encode(b"\xff\xfe:x").decode(), "Basic"])
def test_garbled_basic_credentials_are_401(api, value):
    response = api.http.get("/api/v1/users/me", headers={"Authorization": value, **here()})
    assert_envelope(response, 401)


# --- one-time tokens ------------------------------------------------------------------------

def test_one_time_token_works_for_exactly_one_request(api):
    user = api.create_user()
    response = api.http.post("/api/v1/auth/one-time-token", headers=user["auth"])
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token", "expiresAt"}
    now = time.time() * 1000
    assert now < body["expiresAt"] <= now + 15 * 60 * 1000 + 1000
    bearer = {"Authorization": f"Bearer {body['token']}"}
    assert api.http.get("/api/v1/tokenInfo", headers=bearer).json() == {"_userId": user["_id"]}
    assert_envelope(api.http.get("/api/v1/tokenInfo", headers=bearer), 401)


def test_one_time_token_from_a_session_or_a_token(api):
    user = api.create_user()
    sid = sid_of(login(api, user))
    for kwargs in ({"headers": cookie(sid)},):
        token = api.http.post("/api/v1/auth/one-time-token", **kwargs).json()["token"]
        me = api.http.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["_id"] == user["_id"]


def test_one_time_tokens_are_distinct(api):
    user = api.create_user()
    tokens = {api.http.post("/api/v1/auth/one-time-token", headers=user["auth"]).json()["token"]
              for _ in range(3)}
    assert len(tokens) == 3


# --- tokenInfo and users/me -----------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/v1/tokenInfo", "/v1/tokenInfo"])
def test_token_info_names_the_user_for_every_credential(api, path):
    user = api.create_user()
    sid = sid_of(login(api, user))
    token = api.http.post("/api/v1/auth/token", headers=here(),
                          json={"login": user["login"], "password": user["password"]}).json()["token"]
    for kwargs in ({"headers": user["auth"]}, {"headers": cookie(sid)},
                   {"headers": {"Authorization": f"Bearer {token}"}}):
        response = api.http.get(path, **kwargs)
        assert response.status_code == 200
        assert response.json() == {"_userId": user["_id"]}


def test_users_me_shows_groups_and_roles_and_no_password(api):
    user = api.create_user(groups=["staff", "eu"], roles=["publisher"])
    response = api.http.get("/api/v1/users/me", headers=user["auth"])
    assert response.json() == {"_id": user["_id"], "login": user["login"],
                               "groups": ["staff", "eu"], "roles": ["publisher"]}
    assert re.fullmatch(r"[0-9a-f]{24}", user["_id"])


# --- bodies on the auth routes --------------------------------------------------------------

BAD_BODIES = [
    ("not json", b"{login:", 400),
    ("empty", b"", 400),
    ("array", b'[{"login": "a", "password": "b"}]', 400),
    ("string", b'"login"', 400),
    ("null", b"null", 400),
    ("login a number", b'{"login": 5, "password": "x"}', 400),
    ("password a list", b'{"login": "a", "password": ["x"]}', 400),
    ("missing password", b'{"login": "a"}', 400),
    ("missing login", b'{"password": "a"}', 400),
    ("empty login", b'{"login": "", "password": "a"}', 400),
    ("not utf-8", b'{"login": "\xff", "password": "a"}', 400),
    ("too large", b'{"login": "' + b"a" * (1024 * 1024 + 10) + b'", "password": "x"}', 413),
]


@pytest.mark.parametrize("path", ["/api/v1/auth", "/api/v1/auth/token"])
@pytest.mark.parametrize("name,content,status", BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_bodies_on_login_routes_get_the_envelope(api, path, name, content, status):
    response = api.http.post(path, content=content,
                             headers={"Content-Type": "application/json", **here()})
    assert_envelope(response, status)


def test_oversized_chunked_body_is_413(api):
    def chunks():
        for _ in range(20):
            yield b"x" * 65536  # 1.25 MiB, no Content-Length

    response = api.http.post("/api/v1/auth", content=chunks(), headers=here())
    assert_envelope(response, 413)


def test_bad_bodies_do_not_count_as_failed_logins(api):
    address = here()
    for _ in range(4):
        api.http.post("/api/v1/auth", content=b"[]", headers=address)
    user = api.create_user()
    ok = api.http.post("/api/v1/auth", json={"login": user["login"], "password": user["password"]},
                       headers=address)
    assert ok.status_code == 200


def test_wrong_method_on_an_auth_route_is_enveloped(api):
    response = api.http.put("/api/v1/auth", json={})
    assert response.status_code == 405
    assert response.json()["success"] is False and response.json()["code"] == "405"


# --- security defaults ----------------------------------------------------------------------

def test_no_secret_reaches_the_log(api, gateway):
    password = "Very-Secret-" + unique("pw")
    user = api.create_user(password=password)
    sid = sid_of(login(api, user))
    token = api.http.post("/api/v1/auth/token", headers=here(),
                          json={"login": user["login"], "password": password}).json()["token"]
    key = api.http.post("/api/v1/apikeys", headers=user["auth"], json={}).json()["key"]
    access = api.http.get("/auth/token", headers={"Authorization": key}).json()["accessToken"]
    once = api.http.post("/api/v1/auth/one-time-token", headers=user["auth"]).json()["token"]
    api.http.get("/api/v1/tokenInfo", params={"token": once}, headers={"Authorization": f"Bearer {once}"})
    api.http.post("/api/v1/auth", json={"login": user["login"], "password": password + "typo"},
                  headers=here())
    time.sleep(0.2)
    logs = gateway.logs()
    assert user["login"] in logs or "request" in logs  # the log is really being written
    for secret in (password, sid, token, key, key.rsplit("_", 1)[-1], access, once):
        assert secret not in logs
