"""Realtime handshakes count against the per-user rate limits (contract §2; issue 8, row 8): one
budget with the user's REST calls; over it a handshake is refused with 429, the envelope and
Retry-After, on both transports.

The gateway here allows 5 requests a minute (and plenty a second), so "over the limit" does not
depend on the machine's speed; each test has users of its own.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.support.api import Api
from tests.support.eio import cookie, handshake, login, open_polling, open_ws, polling_path
from tests.support.processes import GatewayProcess

PER_MINUTE = 5


@pytest.fixture(scope="module")
def limited(start_gateway: Any) -> GatewayProcess:
    return start_gateway({"GATEWAY_RATE_LIMIT_PER_SECOND": "1000",
                          "GATEWAY_RATE_LIMIT_PER_MINUTE": str(PER_MINUTE)})


@pytest.fixture()
def fresh_sid(limited: GatewayProcess, client: Api) -> str:
    """A new user's cookie session. The user is made through the module's unlimited gateway
    (`client`, same Redis): the admin's own budget here is 5 calls a minute too."""
    api = Api(limited.url)
    try:
        return login(api, client.create_user())
    finally:
        api.close()


def _assert_refused_429(status: int, headers: Any, body: bytes) -> None:
    assert status == 429, (status, body)
    envelope = json.loads(body)
    assert envelope["success"] is False and envelope["code"] == "429"
    assert envelope["tags"] == ["error_rate_limited"] and envelope["message"]
    assert int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-remaining"] == "0"


async def _websocket_refusal(base: str, sid: str) -> tuple[int, Any, bytes]:
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(base, eio=4, headers=cookie(sid))
    response = refused.value.response
    return response.status_code, response.headers, response.body


async def test_rest_calls_and_handshakes_share_one_budget(limited, fresh_sid):
    async with httpx.AsyncClient(base_url=limited.url, timeout=5) as http:
        me = await http.get("/api/v1/users/me", headers=cookie(fresh_sid))
        assert me.status_code == 200 and me.headers["x-ratelimit-remaining"] == "4"
        ws = await open_ws(limited.url, eio=3, headers=cookie(fresh_sid))  # 2nd
        await handshake(ws, eio=3)
        await ws.close()
        await open_polling(http, "", cookie(fresh_sid))  # 3rd
        first = await http.get(polling_path(4), headers=cookie(fresh_sid))  # 4th
        assert first.status_code == 200 and first.headers["x-ratelimit-remaining"] == "1"
        assert (await http.get("/api/v1/users/me", headers=cookie(fresh_sid))).status_code == 200
        # The budget is spent: REST and both transports' handshakes are all refused.
        rest = await http.get("/api/v1/users/me", headers=cookie(fresh_sid))
        _assert_refused_429(rest.status_code, rest.headers, rest.content)
        polled = await http.get(polling_path(3), headers=cookie(fresh_sid))
        _assert_refused_429(polled.status_code, polled.headers, polled.content)
    _assert_refused_429(*await _websocket_refusal(limited.url, fresh_sid))


async def test_handshakes_alone_exhaust_the_budget_of_rest_calls(limited, fresh_sid):
    for _ in range(PER_MINUTE):
        ws = await open_ws(limited.url, eio=4, headers=cookie(fresh_sid))
        await handshake(ws, eio=4)
        await ws.close()
    _assert_refused_429(*await _websocket_refusal(limited.url, fresh_sid))
    async with httpx.AsyncClient(base_url=limited.url, timeout=5) as http:
        rest = await http.get("/api/v1/users/me", headers=cookie(fresh_sid))
        _assert_refused_429(rest.status_code, rest.headers, rest.content)
        polled = await http.get(polling_path(4), headers=cookie(fresh_sid))
        _assert_refused_429(polled.status_code, polled.headers, polled.content)
