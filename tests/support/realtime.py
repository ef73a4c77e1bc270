"""Helpers for the realtime lifecycle, recovery and bounds tests: credentials of every kind,
handshake refusals as HTTP responses, the "stay away" close, writes that remember when they
ran, the history stream as ground truth, and a process's memory.

Everything goes through the real API and real sockets, except `history`, which reads the
store's event stream from Redis: what was written, to check what a client received against.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import httpx
import msgpack
from websockets.exceptions import InvalidStatus

from tests.support.api import ADMIN, basic, unique_address
from tests.support.eio import Client, open_ws

ADMIN_AUTH = basic(*ADMIN)


# -- credentials ----------------------------------------------------------------------------
def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def from_elsewhere(headers: dict[str, str]) -> dict[str, str]:
    """From an address of its own: a refused credential counts towards that address's ban only."""
    return {**headers, "X-Forwarded-For": unique_address()}


def login_token(base: str, user: dict[str, Any]) -> dict[str, Any]:
    """`POST /api/v1/auth/token`: the whole answer (`token`, `issuedAt`, `expiresAt`)."""
    response = httpx.post(base + "/api/v1/auth/token", timeout=10,
                          json={"login": user["login"], "password": user["password"]})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def session(base: str, user: dict[str, Any]) -> str:
    """`POST /api/v1/auth`: a fresh cookie session's `sid`."""
    response = httpx.post(base + "/api/v1/auth", timeout=10,
                          json={"login": user["login"], "password": user["password"]})
    assert response.status_code == 200, response.text
    sid = response.cookies.get("sid")
    assert sid, response.headers
    return sid


def apikey_token(base: str, user: dict[str, Any]) -> tuple[str, str]:
    """A new API key of `user` exchanged at `GET /auth/token`: (key id, access token)."""
    made = httpx.post(base + "/api/v1/apikeys", headers=user["auth"], json={}, timeout=10)
    assert made.status_code == 201, made.text
    exchanged = httpx.get(base + "/auth/token", headers={"Authorization": made.json()["key"]},
                          timeout=10)
    assert exchanged.status_code == 200, exchanged.text
    return made.json()["id"], exchanged.json()["accessToken"]


def one_time_token(base: str, headers: dict[str, str]) -> str:
    response = httpx.post(base + "/api/v1/auth/one-time-token", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["token"]  # type: ignore[no-any-return]


def admin_patch_user(base: str, user_id: str, **body: Any) -> dict[str, Any]:
    response = httpx.patch(f"{base}/api/v1/users/{user_id}", json=body, headers=ADMIN_AUTH,
                           timeout=10)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def admin_delete_user(base: str, user_id: str) -> None:
    response = httpx.delete(f"{base}/api/v1/users/{user_id}", headers=ADMIN_AUTH, timeout=10)
    assert response.status_code == 200, response.text


# -- handshakes -----------------------------------------------------------------------------
async def ws_refusal(base: str, *, eio: int = 3, headers: dict[str, str] | None = None,
                     **extra: str) -> httpx.Response:
    """A websocket handshake that must be refused, as the HTTP response it got."""
    try:
        ws = await open_ws(base, eio=eio, headers=headers, **extra)
    except InvalidStatus as refused:
        response = refused.response
        return httpx.Response(response.status_code, headers=dict(response.headers.raw_items()),
                              content=bytes(response.body or b""))
    await ws.close()
    raise AssertionError("the websocket handshake was accepted")


async def connect(base: str, headers: dict[str, str] | None = None, *, eio: int = 3,
                  **extra: str) -> Client:
    return await Client.connect(base, eio=eio, headers=headers, **extra)


# -- ends -------------------------------------------------------------------------------------
async def closed_in(clients: list[Client], seconds: float) -> float:
    """Wait until every client's socket is closed; how long it took. Fails after `seconds`."""
    started = time.monotonic()
    try:
        await asyncio.wait_for(asyncio.gather(*(c.closed.wait() for c in clients)), seconds)
    except TimeoutError:
        still = [i for i, c in enumerate(clients) if not c.closed.is_set()]
        raise AssertionError(f"connections {still} of {len(clients)} still open after "
                             f"{seconds} s; their last frames: "
                             f"{[clients[i].frames[-3:] for i in still]}") from None
    return time.monotonic() - started


def assert_told_to_stay_away(client: Client) -> None:
    """The server ended the connection with a Socket.IO disconnect (`41`) before closing —
    only an Engine.IO close packet (`1`) may follow it, and never another event."""
    frames = [f for f in client.frames if f not in ("2", "3")]  # heartbeats may interleave
    assert "41" in frames, f"no Socket.IO disconnect before the close: {frames[-5:]}"
    tail = frames[frames.index("41") + 1:]
    assert all(f == "1" for f in tail), f"after 41: {tail}"


# -- writes ----------------------------------------------------------------------------------
def post(base: str, store: str, auth: dict[str, str] = ADMIN_AUTH, **body: Any) -> dict[str, Any]:
    response = httpx.post(f"{base}/api/v1/{store}", json=body, headers=auth, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def patch(base: str, store: str, entity_id: str, auth: dict[str, str] = ADMIN_AUTH,
          **body: Any) -> dict[str, Any]:
    response = httpx.patch(f"{base}/api/v1/{store}/{entity_id}", json=body, headers=auth,
                           timeout=10)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def history(redis_client: Any, store: str) -> list[dict[str, Any]]:
    """Every retained event of `store`, oldest first, with its event id (contract §4: ids are
    the zero-padded stream ids, so they sort as strings)."""
    events = []
    for stream_id, fields in redis_client.xrange(f"gw:history:{store}"):
        ms, _, seq = stream_id.decode().partition("-")
        event = msgpack.unpackb(fields[b"e"], raw=False)
        events.append({**event, "id": f"{int(ms):013d}-{int(seq):06d}"})
    return events


# -- measuring -------------------------------------------------------------------------------
def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]
