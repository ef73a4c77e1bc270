"""Contract §4: entity create, read, PATCH, PUT, DELETE over real HTTP, and bad input.

Every refused request is checked twice: the error envelope, and that Redis holds exactly what
it held before (entity keys, creation index, history stream).
"""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.support.api import unique
from tests.support.asserts import assert_envelope
from tests.support.redis_state import snapshot

@pytest.fixture(scope="module")
def alice(client):
    return client.create_user(groups=["team-a", "team-b"])


@pytest.fixture(scope="module")
def loner(client):
    return client.create_user()


@pytest.fixture()
def store():
    return unique("things")


def create(client, user, store, body=None, status=201):
    response = client.http.post(f"/api/v1/{store}", json=body or {}, headers=user["auth"])
    assert response.status_code == status, response.text
    return response.json()


# --- create --------------------------------------------------------------------------------

def test_create_answers_201_with_the_system_fields(client, alice, store):
    before = int(time.time())
    response = client.http.post(f"/api/v1/{store}", json={"name": "x", "n": 1},
                                headers=alice["auth"])
    after = int(time.time())
    assert response.status_code == 201, response.text
    entity = response.json()
    assert re.fullmatch(r"[0-9a-f]{24}", entity["_id"])
    assert before <= int(entity["_id"][:8], 16) <= after
    assert entity["owner"] == alice["_id"]
    assert entity["group"] == "team-a"
    assert entity["access"] == [] and entity["branch"] == []
    assert entity["name"] == "x" and entity["n"] == 1
    assert set(entity) == {"_id", "owner", "group", "access", "branch", "name", "n"}


def test_create_without_groups_has_a_null_group(client, loner, store):
    assert create(client, loner, store)["group"] is None


def test_create_keeps_access_and_branch_from_the_body(client, alice, store):
    entity = create(client, alice, store, {"access": ["u1", "g1"], "branch": ["g2"]})
    assert entity["access"] == ["u1", "g1"] and entity["branch"] == ["g2"]


def test_created_entity_reads_back_identically(client, alice, store):
    entity = create(client, alice, store, {"nested": {"a": [1, 2.5, None, True, "s"]}, "u": "é☃"})
    response = client.http.get(f"/api/v1/{store}/{entity['_id']}", headers=alice["auth"])
    assert response.status_code == 200
    assert response.json() == entity


def test_ids_are_unique_and_in_creation_order(client, alice, store):
    made = [create(client, alice, store)["_id"] for _ in range(20)]
    assert len(set(made)) == 20


def test_admin_may_set_owner_and_group(client, alice, store):
    response = client.http.post(f"/api/v1/{store}", headers=client.as_admin(),
                                json={"owner": alice["_id"], "group": "ops"})
    assert response.status_code == 201, response.text
    assert response.json()["owner"] == alice["_id"] and response.json()["group"] == "ops"
    # The owner it named may now read it.
    read = client.http.get(f"/api/v1/{store}/{response.json()['_id']}", headers=alice["auth"])
    assert read.status_code == 200


def test_admin_may_set_a_null_group(client, store):
    response = client.http.post(f"/api/v1/{store}", headers=client.as_admin(), json={"group": None})
    assert response.status_code == 201 and response.json()["group"] is None


@pytest.mark.parametrize("body", [{"owner": "someone"}, {"group": "ops"}, {"group": None},
                                  {"_id": "0123456789abcdef01234567"}])
def test_create_refuses_server_fields_from_a_user(client, alice, store, redis_client, body):
    before = snapshot(redis_client, store)
    response = client.http.post(f"/api/v1/{store}", json={"x": 1, **body}, headers=alice["auth"])
    assert_envelope(response, 400)
    assert snapshot(redis_client, store) == before


def test_create_refuses_an_id_even_from_an_admin(client, store, redis_client):
    response = client.http.post(f"/api/v1/{store}", headers=client.as_admin(),
                                json={"_id": "0123456789abcdef01234567"})
    assert_envelope(response, 400)
    assert snapshot(redis_client, store)["index"] == []


@pytest.mark.parametrize("body", [{"owner": 5}, {"group": ["g"]}, {"owner": None}])
def test_admin_owner_and_group_must_be_strings(client, store, redis_client, body):
    response = client.http.post(f"/api/v1/{store}", headers=client.as_admin(), json=body)
    assert_envelope(response, 400)
    assert snapshot(redis_client, store)["index"] == []


# --- bad input: envelope and nothing changed -----------------------------------------------

BAD_BODIES = {
    "malformed": b'{"a": ',
    "trailing garbage": b'{"a": 1} x',
    "array": b"[1, 2]",
    "string": b'"text"',
    "number": b"5",
    "null": b"null",
    "empty": b"",
    "not utf-8": b'{"a": "\xff\xfe"}',
    "NaN": b'{"a": NaN}',
    "Infinity": b'{"a": -Infinity}',
    "int over 64 bits": b'{"a": 18446744073709551616}',
    "int under 64 bits": b'{"a": -9223372036854775809}',
    "int of 5000 digits": b'{"a": ' + b"7" * 5000 + b"}",
    "float out of range": b'{"a": 1e400}',
    "deep nesting": b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "access not a list": b'{"access": "u1"}',
    "access of numbers": b'{"access": [1, 2]}',
    "branch an object": b'{"branch": {"a": 1}}',
    "branch with null": b'{"branch": [null]}',
}


@pytest.mark.parametrize("raw", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_create_refuses_bad_bodies_and_stores_nothing(client, alice, store, redis_client, raw):
    before = snapshot(redis_client, store)
    response = client.http.post(f"/api/v1/{store}", content=raw,
                                headers={**alice["auth"], "Content-Type": "application/json"})
    assert_envelope(response, 400)
    assert snapshot(redis_client, store) == before


def test_64_bit_integers_at_the_edges_are_kept(client, alice, store):
    body = {"big": 2**64 - 1, "small": -(2**63)}
    entity = create(client, alice, store, body)
    assert entity["big"] == 2**64 - 1 and entity["small"] == -(2**63)
    read = client.http.get(f"/api/v1/{store}/{entity['_id']}", headers=alice["auth"])
    assert read.json()["big"] == 2**64 - 1


def test_bodies_over_1_mib_are_413_and_stored_nowhere(client, alice, store, redis_client):
    raw = json.dumps({"blob": "x" * (1024 * 1024)}).encode()
    before = snapshot(redis_client, store)
    response = client.http.post(f"/api/v1/{store}", content=raw,
                                headers={**alice["auth"], "Content-Type": "application/json"})
    assert_envelope(response, 413)
    assert snapshot(redis_client, store) == before


def test_a_chunked_body_over_1_mib_is_413(client, alice, store, redis_client):
    """Without a Content-Length the limit still holds, counted as the body streams in."""
    def chunks():
        yield b'{"blob": "'
        for _ in range(33):
            yield b"x" * 32768
        yield b'"}'

    response = client.http.post(f"/api/v1/{store}", content=chunks(),
                                headers={**alice["auth"], "Content-Type": "application/json"})
    assert_envelope(response, 413)
    assert snapshot(redis_client, store)["index"] == []


def test_a_body_just_under_1_mib_is_accepted(client, alice, store):
    padding = 1024 * 1024 - len(json.dumps({"blob": ""})) - 1
    entity = create(client, alice, store, {"blob": "x" * padding})
    assert len(entity["blob"]) == padding


@pytest.mark.parametrize("name", ["auth", "users", "apikeys", "hooks", "events", "tokenInfo"])
def test_reserved_names_are_no_stores(client, alice, name, redis_client):
    oid = "0123456789abcdef01234567"
    # Some of these paths are other resources' routes; whatever answers, no entity is made.
    for method, path in [("POST", f"/api/v1/{name}"), ("GET", f"/api/v1/{name}"),
                         ("GET", f"/api/v1/{name}/{oid}"), ("DELETE", f"/api/v1/{name}/{oid}")]:
        response = client.http.request(method, path, json={"a": 1}, headers=alice["auth"])
        assert response.status_code < 500, response.text
    # PATCH /api/v1/users/{id} is user administration (admins only); no other resource has
    # PATCH or PUT on an id: the entity routes refuse the name.
    for method in ("PATCH", "PUT"):
        response = client.http.request(method, f"/api/v1/{name}/{oid}", json={"a": 1},
                                       headers=alice["auth"])
        if (name, method) == ("users", "PATCH"):
            assert_envelope(response, 403)
            continue
        assert_envelope(response, 400)
        assert "reserved" in response.json()["message"]
    assert list(redis_client.scan_iter(match=f"gw:e:{name}:*")) == []
    assert redis_client.exists(f"gw:ix:{name}") == 0
    assert redis_client.exists(f"gw:history:{name}") == 0


def test_reserved_names_are_refused_as_entity_stores(client, alice, redis_client):
    """The names nothing else routes for this method reach the entity routes, which refuse them."""
    for name in ("events", "tokenInfo", "users", "auth"):
        response = client.http.get(f"/api/v1/{name}/0123456789abcdef01234567",
                                   headers=alice["auth"])
        assert 400 <= response.status_code < 500 and response.json()["success"] is False
    response = client.http.get("/api/v1/events", headers=alice["auth"])
    assert_envelope(response, 400)


BAD_STORES = ["1things", "_things", "-things", "a" * 65, "th.ings", "th%20ings", "th%C3%A9",
              "th%24ings", "th%3Aings"]


@pytest.mark.parametrize("name", BAD_STORES)
def test_bad_store_names_are_400_on_every_route(client, alice, name, redis_client):
    oid = "0123456789abcdef01234567"
    for method, path in [("POST", f"/api/v1/{name}"), ("GET", f"/api/v1/{name}"),
                         ("GET", f"/api/v1/{name}/{oid}"), ("PATCH", f"/api/v1/{name}/{oid}"),
                         ("PUT", f"/api/v1/{name}/{oid}"), ("DELETE", f"/api/v1/{name}/{oid}")]:
        response = client.http.request(method, path, json={"a": 1}, headers=alice["auth"])
        assert_envelope(response, 400)
    assert list(redis_client.scan_iter(match="gw:e:*ings:*")) == []


def test_a_64_character_store_name_is_fine(client, alice):
    name = "s" + "x" * 63
    assert create(client, alice, name)["owner"] == alice["_id"]


def test_store_names_are_case_sensitive(client, alice, store):
    entity = create(client, alice, store)
    response = client.http.get(f"/api/v1/{store.upper()}/{entity['_id']}", headers=alice["auth"])
    assert_envelope(response, 404)


def test_writes_need_credentials(client, store, redis_client):
    response = client.http.post(f"/api/v1/{store}", json={"a": 1})
    assert_envelope(response, 401)
    assert snapshot(redis_client, store)["index"] == []


# --- read ----------------------------------------------------------------------------------

def test_read_missing_is_404(client, alice, store):
    response = client.http.get(f"/api/v1/{store}/0123456789abcdef01234567", headers=alice["auth"])
    assert_envelope(response, 404)


@pytest.mark.parametrize("bad", ["123", "0123456789ABCDEF01234567", "0123456789abcdef0123456g",
                                 "0123456789abcdef012345678", "x" * 200])
def test_invalid_ids_are_400_on_every_entity_route(client, alice, store, redis_client, bad):
    create(client, alice, store)
    before = snapshot(redis_client, store)
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        response = client.http.request(method, f"/api/v1/{store}/{bad}", json={"a": 1},
                                       headers=alice["auth"])
        assert_envelope(response, 400)
    assert snapshot(redis_client, store) == before


# --- PATCH ---------------------------------------------------------------------------------

def test_patch_changes_only_the_given_fields_and_null_removes(client, alice, store):
    entity = create(client, alice, store, {"a": 1, "b": 2, "c": 3})
    response = client.http.patch(f"/api/v1/{store}/{entity['_id']}", headers=alice["auth"],
                                 json={"a": 10, "c": None, "d": {"x": 1}})
    assert response.status_code == 200, response.text
    expected = {**entity, "a": 10, "d": {"x": 1}}
    del expected["c"]
    assert response.json() == expected
    read = client.http.get(f"/api/v1/{store}/{entity['_id']}", headers=alice["auth"])
    assert read.json() == expected


def test_patch_with_an_empty_object_changes_nothing(client, alice, store):
    entity = create(client, alice, store, {"a": 1})
    response = client.http.patch(f"/api/v1/{store}/{entity['_id']}", headers=alice["auth"], json={})
    assert response.status_code == 200 and response.json() == entity


@pytest.mark.parametrize("field", ["_id", "owner", "group", "access", "branch"])
def test_patch_refuses_system_fields(client, alice, store, redis_client, field):
    entity = create(client, alice, store, {"a": 1})
    before = snapshot(redis_client, store)
    for value in (entity.get(field), None, ["x"]):
        response = client.http.patch(f"/api/v1/{store}/{entity['_id']}", headers=alice["auth"],
                                     json={"a": 2, field: value})
        assert_envelope(response, 400)
    assert snapshot(redis_client, store) == before


def test_patch_system_fields_are_400_even_for_an_admin(client, alice, store, redis_client):
    entity = create(client, alice, store)
    response = client.http.patch(f"/api/v1/{store}/{entity['_id']}", headers=client.as_admin(),
                                 json={"owner": "someone"})
    assert_envelope(response, 400)


def test_patch_missing_is_404(client, alice, store):
    response = client.http.patch(f"/api/v1/{store}/0123456789abcdef01234567",
                                 headers=alice["auth"], json={"a": 1})
    assert_envelope(response, 404)


@pytest.mark.parametrize("raw", [b"[]", b'"x"', b"{bad", b'{"a": NaN}', b""])
def test_patch_refuses_bad_bodies(client, alice, store, redis_client, raw):
    entity = create(client, alice, store, {"a": 1})
    before = snapshot(redis_client, store)
    response = client.http.patch(f"/api/v1/{store}/{entity['_id']}", content=raw,
                                 headers={**alice["auth"], "Content-Type": "application/json"})
    assert_envelope(response, 400)
    assert snapshot(redis_client, store) == before


def test_patch_over_1_mib_is_413(client, alice, store, redis_client):
    entity = create(client, alice, store, {"a": 1})
    before = snapshot(redis_client, store)
    response = client.http.patch(f"/api/v1/{store}/{entity['_id']}", headers=alice["auth"],
                                 json={"blob": "x" * (1024 * 1024 + 1)})
    assert_envelope(response, 413)
    assert snapshot(redis_client, store) == before


# --- PUT -----------------------------------------------------------------------------------

def test_put_replaces_every_non_system_field(client, alice, store):
    entity = create(client, alice, store, {"a": 1, "b": 2, "access": ["g9"]})
    response = client.http.put(f"/api/v1/{store}/{entity['_id']}", headers=alice["auth"],
                               json={"b": 3, "c": 4})
    assert response.status_code == 200, response.text
    system = {k: entity[k] for k in ("_id", "owner", "group", "access", "branch")}
    assert response.json() == {**system, "b": 3, "c": 4}
    read = client.http.get(f"/api/v1/{store}/{entity['_id']}", headers=alice["auth"])
    assert read.json() == {**system, "b": 3, "c": 4}


def test_put_accepts_a_body_fetched_with_get_unchanged(client, alice, store):
    entity = create(client, alice, store, {"a": 1, "branch": ["g"]})
    fetched = client.http.get(f"/api/v1/{store}/{entity['_id']}", headers=alice["auth"]).json()
    fetched["a"] = 2
    response = client.http.put(f"/api/v1/{store}/{entity['_id']}", headers=alice["auth"],
                               json=fetched)
    assert response.status_code == 200, response.text
    assert response.json() == fetched


@pytest.mark.parametrize("field,value", [("_id", "0123456789abcdef01234567"), ("owner", "x"),
                                         ("group", "other"), ("access", ["x"]),
                                         ("branch", ["x"])])
def test_put_refuses_changed_system_fields(client, alice, store, redis_client, field, value):
    entity = create(client, alice, store, {"a": 1})
    before = snapshot(redis_client, store)
    response = client.http.put(f"/api/v1/{store}/{entity['_id']}", headers=alice["auth"],
                               json={"a": 2, field: value})
    assert_envelope(response, 400)
    assert snapshot(redis_client, store) == before


@pytest.mark.parametrize("raw", [b"[]", b"{", b'{"a": Infinity}', b'{"a": 99999999999999999999}'])
def test_put_refuses_bad_bodies(client, alice, store, redis_client, raw):
    entity = create(client, alice, store, {"a": 1})
    before = snapshot(redis_client, store)
    response = client.http.put(f"/api/v1/{store}/{entity['_id']}", content=raw,
                               headers={**alice["auth"], "Content-Type": "application/json"})
    assert_envelope(response, 400)
    assert snapshot(redis_client, store) == before


def test_put_missing_is_404(client, alice, store):
    response = client.http.put(f"/api/v1/{store}/0123456789abcdef01234567",
                               headers=alice["auth"], json={"a": 1})
    assert_envelope(response, 404)


# --- DELETE --------------------------------------------------------------------------------

def test_delete_answers_success_then_the_entity_is_gone(client, alice, store, redis_client):
    entity = create(client, alice, store, {"a": 1})
    response = client.http.delete(f"/api/v1/{store}/{entity['_id']}", headers=alice["auth"])
    assert response.status_code == 200 and response.json() == {"success": True}
    for method in ("GET", "DELETE"):
        again = client.http.request(method, f"/api/v1/{store}/{entity['_id']}",
                                    headers=alice["auth"])
        assert_envelope(again, 404)
    assert client.http.get(f"/api/v1/{store}", headers=alice["auth"]).json() == []
    assert redis_client.zcard(f"gw:ix:{store}") == 0
    assert list(redis_client.scan_iter(match=f"gw:e:{store}:*")) == []
