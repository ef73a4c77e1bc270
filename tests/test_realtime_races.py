"""Races found in review, each on a real gateway: handshakes racing the end of their credential
or a change of their user, credentials minted by a request whose caller ended while it held
its body back, and concurrent subscribes at the subscription limit."""

from __future__ import annotations

import asyncio
import socket
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.api import FAST_LIMITS, Api, unique
from tests.support.eio import Client


@pytest.fixture(scope="module")
def gateway_url(start_gateway) -> str:
    return start_gateway(env={**FAST_LIMITS, "GATEWAY_REALTIME_MAX_SUBSCRIPTIONS": "20"}).url


async def _race_handshakes(base: str, headers: dict[str, str], count: int, change: Any) -> list[Client]:
    """`count` websocket handshakes, with `change()` fired half-way through them."""
    async def connect(i: int) -> Client | None:
        await asyncio.sleep(i * 0.0005)
        try:
            return await Client.connect(base, headers=headers)
        except Exception:
            return None  # refused: the credential had ended already

    async def fire() -> None:
        await asyncio.sleep(count * 0.0005 / 2)
        await change()

    results = await asyncio.gather(*(connect(i) for i in range(count)), fire())
    return [client for client in results[:-1] if client is not None]


async def test_handshakes_racing_a_logout_never_outlive_it(gateway_url: str) -> None:
    api = Api(gateway_url)
    for _ in range(3):
        user = api.create_user()
        token = api.http.post("/api/v1/auth/token", json={
            "login": user["login"], "password": user["password"]}).json()["token"]
        bearer = {"Authorization": f"Bearer {token}"}

        async def logout() -> None:
            async with httpx.AsyncClient(base_url=gateway_url) as http:
                assert (await http.delete("/api/v1/auth", headers=bearer)).status_code == 200

        clients = await _race_handshakes(gateway_url, bearer, 150, logout)
        await asyncio.sleep(1.5)
        still_open = [client for client in clients if not client.closed.is_set()]
        for client in clients:
            await client.close()
        assert not still_open, f"{len(still_open)} of {len(clients)} outlived the logout"
    api.close()


async def test_handshakes_racing_a_group_change_get_the_new_groups(gateway_url: str) -> None:
    api = Api(gateway_url)
    for _ in range(2):
        group = unique("grp")
        user = api.create_user(groups=[group])
        token = api.http.post("/api/v1/auth/token", json={
            "login": user["login"], "password": user["password"]}).json()["token"]

        async def leave_group() -> None:
            async with httpx.AsyncClient(base_url=gateway_url) as http:
                response = await http.patch(f"/api/v1/users/{user['_id']}", json={"groups": []},
                                            headers=api.as_admin())
                assert response.status_code == 200, response.text

        clients = await _race_handshakes(gateway_url, {"Authorization": f"Bearer {token}"}, 150,
                                         leave_group)
        await asyncio.sleep(1.0)
        stores = [unique("grpstore") for _ in clients]
        for client, store in zip(clients, stores):
            assert (await client.subscribe(store=store))["success"]
        for store in stores:  # readable only by the group the user left
            api.http.post(f"/api/v1/{store}", json={"access": [group]}, headers=api.as_admin())
        await asyncio.sleep(1.0)
        leaked = sum(1 for client in clients if not client.events.empty())
        for client in clients:
            await client.close()
        assert leaked == 0, f"{leaked} of {len(clients)} connections kept the old group"
    api.close()


def _hold_body_then_send(base: str, path: str, headers: dict[str, str], body: bytes,
                         meanwhile: Any) -> tuple[int, bytes]:
    """Send a request's head, run `meanwhile()`, then send its body; the status and body."""
    url = urlsplit(base)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n{head}\r\n".encode())
        meanwhile()
        sock.sendall(body)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) == 0:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.split(b"\r\n\r\n", 1)[1]


@pytest.mark.parametrize(("path", "body"), [
    ("/api/v1/apikeys", b"{}"),
    ("/api/v1/users", b'{"login": "LOGIN", "password": "pw-123456", "roles": ["admin"]}'),
], ids=["api-key", "admin-user"])
def test_nothing_is_minted_for_a_caller_whose_credential_ended_while_it_held_its_body(
        gateway_url: str, path: str, body: bytes) -> None:
    api = Api(gateway_url)
    caller = api.create_user(roles=["admin"])
    sid = api.http.post("/api/v1/auth", json={"login": caller["login"],
                                               "password": caller["password"]}).cookies["sid"]
    login = unique("minted")

    def change_password() -> None:
        response = api.http.patch(f"/api/v1/users/{caller['_id']}",
                                  json={"password": "a-new-password"}, headers=api.as_admin())
        assert response.status_code == 200, response.text

    status, answer = _hold_body_then_send(gateway_url, path, {"Cookie": f"sid={sid}"},
                                          body.replace(b"LOGIN", login.encode()), change_password)
    assert status == 401, answer
    users = api.http.get("/api/v1/users", headers=api.as_admin()).json()
    assert login not in {user["login"] for user in users}
    api.close()


async def test_concurrent_since_subscribes_never_pass_the_subscription_limit(
        gateway_url: str) -> None:
    api = Api(gateway_url)
    user = api.create_user()
    client = await Client.connect(gateway_url, headers=user["auth"])
    for i in range(18):
        assert (await client.subscribe(store=unique(f"held{i}")))["success"]
    # entity topics of a store with some history: each replay takes a moment, so the
    # subscribes queue behind one another's replays
    store = unique("over")
    entities = [api.http.post(f"/api/v1/{store}", json={"n": i}, headers=user["auth"]).json()["_id"]
                for i in range(12)]
    with httpx.Client(base_url=gateway_url, headers=user["auth"]) as http:
        for i in range(200):
            http.post(f"/api/v1/{store}", json={"pad": "x" * 200})
    acks = await asyncio.gather(*(client.subscribe(store=store, id=entity,
                                                   since="0000000000001-000000")
                                  for entity in entities))
    accepted = [ack for ack in acks if ack.get("success")]
    refused = [ack for ack in acks if not ack.get("success")]
    assert len(accepted) == 2, acks
    assert all(ack["code"] == "400" and "GATEWAY_REALTIME_MAX_SUBSCRIPTIONS" in ack["message"]
               for ack in refused)
    await client.close()
    api.close()
