"""The SSRF guard with GATEWAY_HOOKS_ALLOW_PRIVATE=0: refused at subscription (400) and again at
delivery, so a target whose address turns private after subscribing gets nothing."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.support.api import Api, unique
from tests.support.asserts import assert_envelope
from tests.support.processes import GatewayProcess, RedisServer, wait_for
from tests.support.sink import Sink

STRICT = {"GATEWAY_HOOKS_ALLOW_PRIVATE": "0"}


@pytest.fixture(scope="module")
def strict(start_gateway: Callable[..., GatewayProcess]) -> Iterator[Api]:
    # No worker: it would share the default gateway's queue while refusing its loopback sinks.
    process = start_gateway(env={**STRICT, "GATEWAY_HOOKS_WORKER": "off"})
    client = Api(process.url)
    yield client
    client.close()
    process.stop()


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/hook",
    "http://127.1.2.3:8080/hook",
    "http://localhost:9000/hook",
    "http://10.0.0.7/hook",
    "http://192.168.1.1/",
    "http://172.16.5.4/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:8080/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[::ffff:10.0.0.1]/hook",
    "http://[fe80::1]/",
    "http://[fd00::1]/",
    "http://0.0.0.0/",
    "http://224.0.0.1/",
    "http://2130706433/",
    "ftp://example.com/hook",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "gopher://example.com/",
    "not a url",
    "http://",
    "http://exa mple.com/",
    "http://example.com:99999/",
    "",
])
def test_private_and_malformed_targets_are_refused(strict: Api, url: str) -> None:
    response = strict.http.post("/api/v1/hooks", headers=strict.as_admin(),
                                json={"target_url": url, "event": "*"})
    body = assert_envelope(response, 400)
    assert "target_url" in body["message"]


def test_a_target_refused_at_delivery_gets_nothing(start_gateway: Callable[..., GatewayProcess],
                                                   ) -> None:
    """Subscribed while allowed; the worker that delivers refuses private addresses (as after a
    DNS rebinding): the attempt fails with a refusal and the sink sees no request."""
    redis = RedisServer().start()
    sink = Sink()
    try:
        serve = start_gateway(env={"GATEWAY_REDIS_URL": redis.url, "GATEWAY_HOOKS_WORKER": "off",
                                   "GATEWAY_HOOK_RETRY_SCHEDULE": "5"})
        worker = start_gateway(env={"GATEWAY_REDIS_URL": redis.url, **STRICT,
                                    "GATEWAY_HOOK_RETRY_SCHEDULE": "5"}, command=("worker",))
        api = Api(serve.url)
        store = unique("rebind")
        hook = api.http.post("/api/v1/hooks", headers=api.as_admin(),
                             json={"target_url": sink.url + "/x", "event": "*", "store": store})
        assert hook.status_code == 201, hook.text
        assert api.http.post(f"/api/v1/{store}", json={}, headers=api.as_admin()).is_success

        def attempted() -> list:
            log = api.http.get(f"/api/v1/hooks/{hook.json()['id']}/deliveries",
                               headers=api.as_admin()).json()
            return log[0]["attempts"] if log and log[0]["attempts"] else []

        (attempt,) = wait_for(attempted, timeout=10, what="a refused attempt\n" + worker.logs())
        assert attempt["statusCode"] is None and attempt["error"].startswith("refused")
        time.sleep(0.2)
        assert sink.received() == []
        api.close()
    finally:
        sink.close()
        redis.stop()
