"""Contract §4 permissions: who may read (404 if not) and who may write (403 if readable only).

read:  admin, owner, member of `group`, own id or one of own groups in `access` or `branch`
write: admin, owner, own id or one of own groups in `access`
"""

from __future__ import annotations

import pytest

from tests.support.api import unique
from tests.support.asserts import assert_envelope
from tests.support.redis_state import snapshot

@pytest.fixture(scope="module")
def people(client):
    """One user per way of relating to an entity (group names unique to this run)."""
    tag = unique("p")
    g = {name: f"{tag}-{name}" for name in ("owners", "acc", "br", "other")}
    made = {
        "owner": client.create_user(groups=[g["owners"], g["other"]]),
        "group_member": client.create_user(groups=[g["other"], g["owners"]]),
        "access_id": client.create_user(),
        "access_group": client.create_user(groups=[g["other"], g["acc"]]),
        "branch_id": client.create_user(),
        "branch_group": client.create_user(groups=[g["br"]]),
        "stranger": client.create_user(groups=[g["other"]]),
        "readonly_listed": client.create_user(roles=["readonly"]),
    }
    made["admin"] = {"auth": client.as_admin()}
    made["groups"] = g
    return made


@pytest.fixture(scope="module")
def store():
    return unique("perm")


def make_entity(client, people, store, **fields):
    owner = people["owner"]
    g = people["groups"]
    body = {"access": [people["access_id"]["_id"], g["acc"], people["readonly_listed"]["_id"]],
            "branch": [people["branch_id"]["_id"], g["br"]], "n": 1, **fields}
    response = client.http.post(f"/api/v1/{store}", json=body, headers=owner["auth"])
    assert response.status_code == 201, response.text
    entity = response.json()
    assert entity["group"] == g["owners"]  # the creator's first group
    return entity


READERS = ["admin", "owner", "group_member", "access_id", "access_group", "branch_id",
           "branch_group", "readonly_listed"]
WRITERS = ["admin", "owner", "access_id", "access_group"]


@pytest.mark.parametrize("who", READERS + ["stranger"])
def test_read_exactly_as_the_contract_says(client, people, store, who):
    entity = make_entity(client, people, store)
    response = client.http.get(f"/api/v1/{store}/{entity['_id']}", headers=people[who]["auth"])
    if who in READERS:
        assert response.status_code == 200 and response.json() == entity
    else:
        body = assert_envelope(response, 404)
        assert entity["_id"] in body["message"]  # the id the caller gave, nothing else


@pytest.mark.parametrize("who", WRITERS)
def test_writers_may_patch_put_and_delete(client, people, store, who):
    auth = people[who]["auth"]
    entity = make_entity(client, people, store)
    path = f"/api/v1/{store}/{entity['_id']}"
    patched = client.http.patch(path, json={"by": who}, headers=auth)
    assert patched.status_code == 200 and patched.json()["by"] == who
    put = client.http.put(path, json={"replaced": True}, headers=auth)
    assert put.status_code == 200 and put.json()["replaced"] is True and "by" not in put.json()
    assert put.json()["owner"] == people["owner"]["_id"]  # system fields survive a PUT
    deleted = client.http.delete(path, headers=auth)
    assert deleted.status_code == 200 and deleted.json() == {"success": True}


@pytest.mark.parametrize("who,status", [("group_member", 403), ("branch_id", 403),
                                        ("branch_group", 403), ("readonly_listed", 403),
                                        ("stranger", 404)])
def test_others_may_not_write_and_nothing_changes(client, people, store, redis_client, who,
                                                  status):
    entity = make_entity(client, people, store)
    path = f"/api/v1/{store}/{entity['_id']}"
    before = snapshot(redis_client, store)
    auth = people[who]["auth"]
    assert_envelope(client.http.patch(path, json={"x": 1}, headers=auth), status)
    assert_envelope(client.http.put(path, json={"x": 1}, headers=auth), status)
    assert_envelope(client.http.delete(path, headers=auth), status)
    assert snapshot(redis_client, store) == before


def test_a_null_group_matches_no_one(client, people, store):
    response = client.http.post(f"/api/v1/{store}", json={"group": None},
                                headers=client.as_admin())
    entity = response.json()
    for who in ("stranger", "owner", "group_member"):
        got = client.http.get(f"/api/v1/{store}/{entity['_id']}", headers=people[who]["auth"])
        assert_envelope(got, 404)


def test_access_by_a_group_name_the_user_lacks_gives_nothing(client, people, store):
    entity = make_entity(client, people, store, access=["nobody-group"], branch=[])
    for who in ("access_id", "access_group", "branch_id", "stranger"):
        got = client.http.get(f"/api/v1/{store}/{entity['_id']}", headers=people[who]["auth"])
        assert_envelope(got, 404)


# --- readonly users and read-scoped tokens -------------------------------------------------

@pytest.fixture(scope="module")
def read_token(client, people):
    """A bearer token from the owner's API key with scope `read`."""
    key = client.http.post("/api/v1/apikeys", json={"scope": "read"},
                           headers=people["owner"]["auth"])
    assert key.status_code == 201 and key.json()["scope"] == "read", key.text
    token = client.http.get("/auth/token", headers={"Authorization": key.json()["key"]})
    assert token.status_code == 200, token.text
    assert token.json()["scope"] == "read"
    return {"Authorization": "Bearer " + token.json()["accessToken"]}


def test_a_read_token_reads_but_every_write_is_403(client, people, store, redis_client,
                                                   read_token):
    entity = make_entity(client, people, store)
    path = f"/api/v1/{store}/{entity['_id']}"
    assert client.http.get(path, headers=read_token).json() == entity
    assert entity in client.http.get(f"/api/v1/{store}", headers=read_token).json()
    before = snapshot(redis_client, store)
    assert_envelope(client.http.post(f"/api/v1/{store}", json={}, headers=read_token), 403)
    assert_envelope(client.http.patch(path, json={"x": 1}, headers=read_token), 403)
    assert_envelope(client.http.put(path, json={"x": 1}, headers=read_token), 403)
    assert_envelope(client.http.delete(path, headers=read_token), 403)
    assert snapshot(redis_client, store) == before


def test_a_readonly_user_may_not_create(client, people, store, redis_client):
    before = snapshot(redis_client, store)
    response = client.http.post(f"/api/v1/{store}", json={"a": 1},
                                headers=people["readonly_listed"]["auth"])
    assert_envelope(response, 403)
    assert snapshot(redis_client, store) == before


def test_a_readonly_admin_may_not_write(client, store):
    """`readonly` wins: every write answers 403, whatever else the user may be."""
    user = client.create_user(roles=["admin", "readonly"])
    assert_envelope(client.http.post(f"/api/v1/{store}", json={}, headers=user["auth"]), 403)


# --- lists hold only what the caller may read ----------------------------------------------

@pytest.fixture(scope="module")
def mixed(client, people):
    """20 entities in a fresh store; every third one readable by `branch_id` through branch."""
    store = unique("mixed")
    made = []
    for n in range(20):
        branch = [people["branch_id"]["_id"]] if n % 3 == 0 else []
        response = client.http.post(f"/api/v1/{store}", json={"n": n, "branch": branch},
                                    headers=people["owner"]["auth"])
        assert response.status_code == 201
        made.append(response.json())
    return store, made


def listing(client, auth, store, **params):
    response = client.http.get(f"/api/v1/{store}", params=params, headers=auth)
    assert response.status_code == 200, response.text
    return response.json()


def test_list_returns_only_readable_entities(client, people, mixed):
    store, made = mixed
    visible = [e for e in made if e["n"] % 3 == 0]
    assert listing(client, people["branch_id"]["auth"], store) == visible
    assert listing(client, people["owner"]["auth"], store) == made
    assert listing(client, people["group_member"]["auth"], store) == made
    assert listing(client, people["admin"]["auth"], store) == made
    assert listing(client, people["stranger"]["auth"], store) == []
    assert listing(client, people["stranger"]["auth"], store, meta="true") == {
        "total": 0, "first": None, "last": None}


def test_paging_counts_only_readable_entities(client, people, mixed):
    store, made = mixed
    auth = people["branch_id"]["auth"]
    visible = [e for e in made if e["n"] % 3 == 0]  # n = 0, 3, 6, 9, 12, 15, 18
    assert listing(client, auth, store, offset=2, limit=3) == visible[2:5]
    assert listing(client, auth, store, offset=6) == visible[6:]
    assert listing(client, auth, store, offset=7) == []
    assert listing(client, auth, store, meta="true") == {
        "total": 7, "first": visible[0], "last": visible[-1]}
    assert listing(client, auth, store, only="n", limit=2) == [
        {"_id": e["_id"], "n": e["n"]} for e in visible[:2]]


def test_paging_beyond_one_scan_chunk(client, people):
    """Permission filtering keeps counting across the store's 500-entity scan chunks."""
    store = unique("chunks")
    owner, reader = people["owner"], people["branch_id"]
    made = []
    for n in range(1100):
        branch = [reader["_id"]] if n % 100 == 99 else []
        made.append({"n": n, "branch": branch})
    created = []
    for body in made:
        response = client.http.post(f"/api/v1/{store}", json=body, headers=owner["auth"])
        assert response.status_code == 201
        if body["branch"]:
            created.append(response.json())
    assert len(created) == 11
    assert listing(client, reader["auth"], store) == created
    assert listing(client, reader["auth"], store, offset=5, limit=4) == created[5:9]
    assert listing(client, reader["auth"], store, meta="true")["total"] == 11
