"""Contract §3, "a credential's end is its connections' end", on real sockets (issue 8, rows 1–4).

A realtime connection lives no longer than the credential that opened it (for a one-time
token, the credential that issued it): logout with a cookie or a bearer token, an API key
deleted, expiry, a new password, a disabled or deleted user close it on every gateway process
within 1 s, with a Socket.IO disconnect (`41`) before the close so that socket.io clients stay
away. A change of the user's groups or roles applies to the very next event each open
connection is sent. Two gateway processes share one Redis; changes are made on one and
watched on both.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support.api import FAST_LIMITS, Api, unique
from tests.support.asserts import assert_envelope
from tests.support.eio import Client, cookie
from tests.support.processes import GatewayProcess, wait_for
from tests.support.realtime import (
    admin_delete_user,
    admin_patch_user,
    apikey_token,
    assert_told_to_stay_away,
    bearer,
    closed_in,
    connect,
    from_elsewhere,
    login_token,
    one_time_token,
    patch,
    post,
    session,
    ws_refusal,
)

ENV = {**FAST_LIMITS, "GATEWAY_HOOKS_WORKER": "off"}


@pytest.fixture(scope="module")
def pair(start_gateway: Callable[..., GatewayProcess]) -> tuple[GatewayProcess, GatewayProcess]:
    """Two `gateway serve` processes on the one Redis."""
    first, second = start_gateway(ENV, wait=False), start_gateway(ENV, wait=False)
    for process in (first, second):
        wait_for(process._healthy, timeout=30, what=f"gateway on port {process.port}")
    return first, second


@pytest.fixture()
def new_user(pair: tuple[GatewayProcess, GatewayProcess]) -> Iterator[Callable[..., dict[str, Any]]]:
    api = Api(pair[0].url)
    yield api.create_user
    api.close()


class Opened:
    """How to open connections with one credential, and how to end that credential."""

    def __init__(self, headers: dict[str, str], query: dict[str, str] | None,
                 end: Callable[[], httpx.Response],
                 again: Callable[[], tuple[dict[str, str], dict[str, str]]] | None = None) -> None:
        self.headers = headers
        self.query = query or {}
        self.end = end
        self._again = again  # a one-time token is good once: each connection needs its own

    def handshake(self) -> tuple[dict[str, str], dict[str, str]]:
        if self._again is not None:
            return self._again()
        return self.headers, self.query


def credential(kind: str, base: str, user: dict[str, Any]) -> Opened:
    """A new credential of `kind` for `user`, issued by the gateway at `base`."""
    if kind == "cookie":
        sid = session(base, user)
        return Opened(cookie(sid), None,
                      lambda: httpx.delete(base + "/api/v1/auth", headers=cookie(sid)))
    if kind in ("bearer", "bearer in query"):
        token = login_token(base, user)["token"]
        end = lambda: httpx.delete(base + "/api/v1/auth", headers=bearer(token))  # noqa: E731
        if kind == "bearer":
            return Opened(bearer(token), None, end)
        return Opened({}, {"token": token}, end)
    if kind == "api key":
        key_id, token = apikey_token(base, user)
        return Opened(bearer(token), None, lambda: httpx.delete(
            f"{base}/api/v1/apikeys/{key_id}", headers=user["auth"]))
    if kind.startswith("one-time token from "):
        issuer = credential(kind.removeprefix("one-time token from "), base, user)
        issuer_headers, issuer_query = issuer.handshake()
        headers = issuer_headers or bearer(issuer_query["token"])

        def again() -> tuple[dict[str, str], dict[str, str]]:
            return {}, {"token": one_time_token(base, headers)}

        return Opened({}, None, issuer.end, again)
    raise ValueError(kind)


async def open_with(base: str, opened: Opened, eio: int) -> Client:
    headers, query = opened.handshake()
    return await connect(base, headers, eio=eio, **query)


async def subscribed(clients: list[Client], store: str) -> None:
    for client in clients:
        assert await client.subscribe(store=store) == {"success": True}


async def all_receive(clients: list[Client], entity_id: str) -> None:
    for client in clients:
        name, event = await client.next_event()
        assert (name, event["entityId"]) == ("entity.created", entity_id)


def no_event_after_the_close(client: Client, written_after: str) -> None:
    received = [f for f in client.frames if isinstance(f, str) and f.startswith("42")]
    assert not any(written_after in frame for frame in received), "an event after the end"


KINDS = ["cookie", "bearer", "bearer in query", "api key", "one-time token from cookie",
         "one-time token from bearer", "one-time token from api key"]


@pytest.mark.parametrize("kind", KINDS)
async def test_ending_a_credential_closes_its_connections_on_every_process_within_1s_with_41(
        pair, new_user, kind):
    """Rows 1 and 2: logout (cookie or bearer, header or `token=`), API-key deletion; a
    one-time token's connection ends with the credential that issued it."""
    a, b = pair
    user = new_user()
    store = unique("lifeEnd")
    opened = credential(kind, a.url, user)
    doomed = [await open_with(a.url, opened, eio=3), await open_with(b.url, opened, eio=4)]
    kept = [await connect(b.url, cookie(session(a.url, user)), eio=3)]  # the same user, another
    await subscribed(doomed + kept, store)
    await all_receive(doomed + kept, post(a.url, store, user["auth"])["_id"])

    ended = opened.end()
    assert ended.status_code == 200 and ended.json() == {"success": True}, ended.text
    await closed_in(doomed, 1.0)
    later = post(a.url, store, user["auth"])["_id"]
    for client in doomed:
        assert_told_to_stay_away(client)
        no_event_after_the_close(client, later)
    await all_receive(kept, later)  # only what that credential opened is closed
    headers, query = opened.headers, opened.query
    if headers or query:  # (a one-time token was spent by its handshake anyway)
        assert_envelope(await ws_refusal(b.url, eio=3, headers=from_elsewhere(headers),
                                         **query), 401)
    for client in doomed + kept:
        await client.close()


async def test_polling_connection_of_a_bearer_token_ends_with_its_logout(pair, new_user):
    """Row 1 on the other transport: the waiting long-poll returns `41` and `1` at once."""
    a, b = pair
    user = new_user()
    token = login_token(a.url, user)["token"]
    async with httpx.AsyncClient(timeout=5) as http:
        opened = await http.get(b.url + "/socket.io/?EIO=3&transport=polling",
                                headers=bearer(token))
        assert opened.status_code == 200, opened.text
        sid = opened.text.split('"sid":"', 1)[1].split('"', 1)[0]
        waiting = asyncio.create_task(http.get(
            f"{b.url}/socket.io/?EIO=3&transport=polling&sid={sid}", headers=bearer(token)))
        await asyncio.sleep(0.2)
        assert httpx.delete(a.url + "/api/v1/auth", headers=bearer(token)).status_code == 200
        answered = await asyncio.wait_for(waiting, 1.0)
        assert answered.status_code == 200
        assert answered.text == "2:411:1", answered.text  # `41`, then the Engine.IO close


# -- expiry ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def short_lived(start_gateway: Callable[..., GatewayProcess]) -> GatewayProcess:
    return start_gateway({**ENV, "GATEWAY_SESSION_TTL_S": "3", "GATEWAY_TOKEN_TTL_S": "3"})


async def test_expiry_closes_connections_within_1s_without_any_request(short_lived):
    """Row 3: sessions and tokens expire on their own, and so do their connections (`41`),
    though the client sends nothing (no ping is due) and nobody makes a request."""
    base = short_lived.url
    api = Api(base)
    user = api.create_user()
    api.close()
    sid = session(base, user)
    logged_in_at = time.time()  # the session expires no later than 3 s from here
    issued = login_token(base, user)
    token_expires_s = issued["expiresAt"] / 1000
    assert token_expires_s - time.time() < 3.5, issued
    clients = {
        "cookie": await connect(base, cookie(sid), eio=3),
        "bearer": await connect(base, bearer(issued["token"]), eio=4),
        "bearer in query": await connect(base, eio=3, token=issued["token"]),
        "one-time token": await connect(base, eio=4, token=one_time_token(
            base, bearer(issued["token"]))),
    }
    expires_s = {"cookie": logged_in_at + 3, "bearer": token_expires_s,
                 "bearer in query": token_expires_s, "one-time token": token_expires_s}
    closed_at: dict[str, float] = {}

    async def watch(name: str, client: Client) -> None:
        await client.closed.wait()
        closed_at[name] = time.time()

    watchers = [asyncio.create_task(watch(name, c)) for name, c in clients.items()]
    await asyncio.sleep(max(0.0, min(expires_s.values()) - 0.8 - time.time()))
    assert not closed_at, f"closed long before expiring: {closed_at}"
    try:
        await asyncio.wait_for(asyncio.gather(*watchers),
                               max(expires_s.values()) + 1.0 - time.time())
    except TimeoutError:
        still = sorted(set(clients) - set(closed_at))
        raise AssertionError(f"still open 1 s after expiry: {still}") from None
    for name, client in clients.items():
        late = closed_at[name] - expires_s[name]
        assert late <= 1.0, f"{name}: closed {late:.2f} s after expiry"
        assert_told_to_stay_away(client)
    assert_envelope(await ws_refusal(base, eio=3, headers=from_elsewhere(cookie(sid))), 401)


# -- the user changes -----------------------------------------------------------------------------
def change_password(base: str, user: dict[str, Any]) -> None:
    admin_patch_user(base, user["_id"], password="another-pw-987")


def disable(base: str, user: dict[str, Any]) -> None:
    admin_patch_user(base, user["_id"], disabled=True)


def delete(base: str, user: dict[str, Any]) -> None:
    admin_delete_user(base, user["_id"])


@pytest.mark.parametrize("change", [change_password, disable, delete],
                         ids=["new password", "disabled", "deleted"])
async def test_a_user_change_closes_every_connection_of_the_user_on_every_process(
        pair, new_user, change):
    """§3: a new password, `disabled: true` or deleting the user ends every credential of the
    user — cookie, bearer, API-key token, one-time tokens issued by any of them or by Basic —
    and so every connection they opened, on both processes; nobody else's."""
    a, b = pair
    user, bystander = new_user(), new_user()
    store = unique("lifeUser")
    doomed = [
        await connect(a.url, cookie(session(a.url, user)), eio=3),
        await connect(b.url, bearer(login_token(b.url, user)["token"]), eio=4),
        await connect(b.url, bearer(apikey_token(a.url, user)[1]), eio=3),
        await connect(a.url, eio=4, token=one_time_token(a.url, user["auth"])),  # from Basic
        await connect(b.url, eio=3, token=one_time_token(
            b.url, bearer(login_token(a.url, user)["token"]))),
    ]
    kept = [await connect(b.url, cookie(session(a.url, bystander)), eio=3),
            await connect(a.url, bearer(login_token(a.url, bystander)["token"]), eio=4)]
    await subscribed(doomed + kept, store)
    first = post(a.url, store, access=[user["_id"], bystander["_id"]])["_id"]
    await all_receive(doomed + kept, first)

    change(a.url, user)
    await closed_in(doomed, 1.0)
    later = post(b.url, store, access=[user["_id"], bystander["_id"]])["_id"]
    for client in doomed:
        assert_told_to_stay_away(client)
        no_event_after_the_close(client, later)
    await all_receive(kept, later)
    for client in doomed + kept:
        await client.close()


async def test_group_and_role_changes_apply_to_the_next_event_on_every_process(pair, new_user):
    """Row 4: `PATCH /api/v1/users/{id}` with new groups or roles decides the very next event
    each open connection of the user is sent — on both processes, connections kept open."""
    a, b = pair
    user = new_user()
    group = unique("grp")
    store = unique("lifeGroups")
    clients = [await connect(a.url, cookie(session(a.url, user)), eio=3),
               await connect(b.url, bearer(login_token(b.url, user)["token"]), eio=4)]
    await subscribed(clients, store)
    guarded = post(a.url, store, access=[group], n=0)["_id"]  # readable by the group only
    private = post(a.url, store, n=0)["_id"]  # the admin's alone

    async def next_is(entity_id: str, n: int) -> None:
        for client in clients:
            name, event = await client.next_event()
            assert (event["entityId"], event["data"].get("n")) == (entity_id, n), (name, event)

    async def withheld(write: Callable[[], Any]) -> None:
        write()
        marker = post(b.url, store, access=[user["_id"]])["_id"]
        for client in clients:
            got = await client.events_until(marker)
            assert [e["entityId"] for _, e in got] == [marker], "an unreadable event was sent"

    await withheld(lambda: patch(a.url, store, guarded, n=1))
    admin_patch_user(a.url, user["_id"], groups=[group])
    patch(b.url, store, guarded, n=2)  # the very next event, through the other process
    await next_is(guarded, 2)
    admin_patch_user(b.url, user["_id"], groups=[])
    await withheld(lambda: patch(a.url, store, guarded, n=3))

    admin_patch_user(a.url, user["_id"], roles=["admin"])
    patch(a.url, store, private, n=4)
    await next_is(private, 4)
    admin_patch_user(a.url, user["_id"], roles=[])
    await withheld(lambda: patch(b.url, store, private, n=5))
    for client in clients:
        assert not client.closed.is_set(), "a group or role change is no reason to close"
        await client.close()
