"""`gateway serve --workers N` (contract §1): one port, N processes, and every transport works
whichever process a request reaches — no sticky load balancer.

Real processes throughout: the gateway with 2 workers on a real Redis, socket.io-client 2.x
(tests/node/many.js, 50 clients in one node process), raw keep-alive HTTP for sessions of two
workers on one connection, and signals to the parent.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.support.api import FAST_LIMITS, Api, unique
from tests.support.eio import login, wait_until
from tests.support.processes import ROOT, GatewayProcess

NODE_DIR = Path(__file__).parent / "node"
needs_node = pytest.mark.skipif(
    not (NODE_DIR / "node_modules" / "socket.io-client").is_dir(),
    reason="node and tests/node/node_modules (scripts/test installs them) are needed")

CLIENTS = 50
EVENTS = 5


@pytest.fixture(scope="module")
def workers(start_gateway: Any) -> GatewayProcess:
    return start_gateway(env=FAST_LIMITS, command=("serve", "--workers", "2"))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def user_cookie(workers: GatewayProcess) -> tuple[dict[str, Any], str]:
    api = Api(workers.url)
    user = api.create_user()
    sid = login(api, user)
    api.close()
    return user, sid


def _logs(process: GatewayProcess) -> list[dict[str, Any]]:
    lines = []
    for line in process.logs().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            pass
    return lines


def _worker_of(sid: str) -> int:
    index, sep, _ = sid.partition("_")
    assert sep and index.isdigit(), sid
    return int(index)


async def _run_clients(process: GatewayProcess, user: dict[str, Any], cookie: str,
                       transports: list[str], upgrade: bool) -> dict[str, Any]:
    """50 node clients subscribe to a new store; EVENTS entities are written through REST."""
    store = unique("workers")
    options = {"url": process.url, "cookie": f"sid={cookie}", "clients": CLIENTS,
               "transports": transports, "upgrade": upgrade, "store": store,
               "events": EVENTS, "timeoutMs": 20000}
    node = await asyncio.create_subprocess_exec(
        "node", str(NODE_DIR / "many.js"), json.dumps(options),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert node.stdout is not None
    try:
        ready = json.loads(await asyncio.wait_for(node.stdout.readline(), 20))
        assert ready["kind"] == "ready", ready
        written = []
        async with httpx.AsyncClient(base_url=process.url, headers=user["auth"],
                                     timeout=10) as http:
            for n in range(EVENTS):
                response = await http.post(f"/api/v1/{store}", json={"n": n})
                assert response.status_code == 201, response.text
                written.append(response.json()["_id"])
        done = json.loads(await asyncio.wait_for(node.stdout.readline(), 25))
        assert await asyncio.wait_for(node.wait(), 5) == 0, done
    finally:
        if node.returncode is None:
            node.kill()
            await node.wait()
    assert done["kind"] == "done", done
    return {"ready": ready, "done": done}


def _assert_every_event_once(result: dict[str, Any]) -> None:
    clients = result["done"]["clients"]
    assert len(clients) == CLIENTS
    for client in clients:
        assert not client["errors"], client
        assert len(client["ids"]) == EVENTS, client  # each exactly once
        assert len(set(client["ids"])) == EVENTS, client
        assert client["ids"] == sorted(client["ids"]), client  # in order


@needs_node
@pytest.mark.parametrize("transports,upgrade", [(["polling"], False),
                                                (["polling", "websocket"], True)],
                         ids=["polling-only", "polling-then-upgrade"])
async def test_fifty_clients_on_two_workers_get_every_event_once(
        workers: GatewayProcess, user_cookie: tuple[dict[str, Any], str],
        transports: list[str], upgrade: bool) -> None:
    user, cookie = user_cookie
    result = await _run_clients(workers, user, cookie, transports, upgrade)
    _assert_every_event_once(result)
    clients = result["done"]["clients"]
    assert {client["transport"] for client in clients} == {transports[-1]}
    # Both workers held sessions, and each session's requests reached its own worker.
    owners = [_worker_of(client["sid"]) for client in clients]
    assert set(owners) == {0, 1}, owners
    served = {(line.get("worker"), line.get("pid")) for line in _logs(workers)
              if line.get("msg") == "realtime connected"
              and line.get("sid") in {client["sid"] for client in clients}}
    assert {worker for worker, _ in served} == {0, 1}
    assert len({pid for _, pid in served}) == 2


@needs_node
async def test_websocket_clients_work_on_any_worker(
        workers: GatewayProcess, user_cookie: tuple[dict[str, Any], str]) -> None:
    user, cookie = user_cookie
    result = await _run_clients(workers, user, cookie, ["websocket"], upgrade=False)
    _assert_every_event_once(result)
    assert {_worker_of(client["sid"]) for client in result["done"]["clients"]} == {0, 1}


def _handshake(url_port: int, auth: dict[str, str]) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", url_port, timeout=5)
    connection.request("GET", "/socket.io/?EIO=4&transport=polling", headers=auth)
    body = connection.getresponse().read().decode()
    connection.close()
    return str(json.loads(body[1:])["sid"])


def test_one_keep_alive_connection_carries_sessions_of_both_workers(
        workers: GatewayProcess, user_cookie: tuple[dict[str, Any], str]) -> None:
    """A browser's (or a proxy's) connection pool mixes sessions on one connection: each
    request still reaches the worker holding its session."""
    user, _ = user_cookie
    sids: dict[int, str] = {}
    while len(sids) < 2:  # handshakes on new connections go to the workers in turn
        sid = _handshake(workers.port, user["auth"])
        sids[_worker_of(sid)] = sid
    store = unique("keepalive")
    connection = http.client.HTTPConnection("127.0.0.1", workers.port, timeout=5)
    sockets = set()
    for packet, answer in (("40", "40{"), (f'421["subscribe",{{"store":"{store}"}}]',
                                           '431[{"success":true}]')):
        for worker in (0, 1, 0, 1) if packet == "40" else (0, 1):
            sid = sids[worker]
            if packet == "40" and worker in sockets:  # each session connects once
                continue
            connection.request("POST", f"/socket.io/?EIO=4&transport=polling&sid={sid}",
                               body=packet, headers={"Content-Type": "text/plain;charset=UTF-8"})
            response = connection.getresponse()
            assert (response.status, response.read()) == (200, b"ok"), sid
            connection.request("GET", f"/socket.io/?EIO=4&transport=polling&sid={sid}")
            response = connection.getresponse()
            body = response.read().decode()
            assert response.status == 200 and body.startswith(answer), (sid, body)
            sockets.add(worker)
            assert connection.sock is not None  # the client's one connection stayed open
    connection.close()


def test_a_request_line_sent_in_pieces_still_reaches_its_worker(
        workers: GatewayProcess, user_cookie: tuple[dict[str, Any], str]) -> None:
    """The parent routes once the whole request line is in (it peeks, it does not read)."""
    user, _ = user_cookie
    for _ in range(4):  # sessions of both workers, whichever the next connection would go to
        sid = _handshake(workers.port, user["auth"])
        with socket.create_connection(("127.0.0.1", workers.port), timeout=5) as sock:
            sock.sendall(b"POST /socket.io/?EIO=4&transport=polling&si")
            time.sleep(0.05)
            sock.sendall(f"d={sid} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                         f"Content-Length: 2\r\nConnection: close\r\n\r\n40".encode())
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"ok"), answer


def test_workers_must_be_a_whole_number_above_zero() -> None:
    env = {**os.environ, "GATEWAY_REDIS_URL": "redis://127.0.0.1:1/0"}
    for value in ("0", "abc", "-2"):
        done = subprocess.run([sys.executable, "-m", "gateway", "serve", "--log-level", "DEBUG",
                               "--workers", value],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert done.returncode == 2, done
        assert "--workers" in done.stderr and "above 0" in done.stderr, done.stderr
        done = subprocess.run([sys.executable, "-m", "gateway", "serve"],
                              env={**env, "GATEWAY_WORKERS": value}, cwd=ROOT,
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 2, done
        assert "GATEWAY_WORKERS" in done.stderr, done.stderr


def test_a_dead_worker_is_restarted_and_sigterm_stops_all_as_one(start_gateway: Any) -> None:
    process: GatewayProcess = start_gateway(env=FAST_LIMITS,
                                            command=("serve", "--workers", "2"))
    assert process.proc is not None
    parent = psutil.Process(process.proc.pid)
    children = wait_until_children(parent, 2)
    wait_for_log(process, "worker ready", count=2)
    victim = children[0]
    victim.kill()  # SIGKILL: a crash
    # The other worker serves on meanwhile, and the parent starts a new one.
    for _ in range(10):
        assert httpx.get(process.url + "/readyz", timeout=2).status_code == 200
    replaced = wait_until_children(parent, 2, without=victim.pid)
    assert any(line.get("msg") == "worker died; starting it again" and line.get("level") == "error"
               for line in _logs(process))
    wait_for_log(process, "worker ready", count=3)

    # A websocket client straight away works on either worker after the restart, too.
    api = Api(process.url)
    user = api.create_user()
    cookie = login(api, user)
    api.close()
    result = asyncio.run(_run_clients(process, user, cookie, ["websocket"], upgrade=False))
    _assert_every_event_once(result)

    started = time.monotonic()
    process.proc.send_signal(signal.SIGTERM)
    assert process.proc.wait(10) == 0, process.logs()[-3000:]
    assert time.monotonic() - started < 8
    for child in replaced:
        assert not psutil.pid_exists(child.pid) or \
            psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE
    finished = [line for line in _logs(process)
                if str(line.get("msg", "")).startswith("Finished server process")]
    assert {line.get("worker") for line in finished} == {0, 1}
    assert not any(line.get("msg") == "worker exited with an error" for line in _logs(process))


def wait_until_children(parent: psutil.Process, count: int,
                        without: int | None = None) -> list[psutil.Process]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        children = [child for child in parent.children() if child.pid != without
                    and child.status() != psutil.STATUS_ZOMBIE]
        if len(children) == count:
            return children
        time.sleep(0.05)
    raise AssertionError(f"{parent.pid} has not {count} workers: {parent.children()}")


def wait_for_log(process: GatewayProcess, message: str, count: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if sum(line.get("msg") == message for line in _logs(process)) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"not {count} x {message!r}:\n{process.logs()[-3000:]}")


def test_workers_stop_by_themselves_when_the_parent_is_killed(start_gateway: Any) -> None:
    """SIGKILL leaves no chance to stop the workers: they notice their socketpair close."""
    process: GatewayProcess = start_gateway(env=FAST_LIMITS,
                                            command=("serve", "--workers", "2"))
    assert process.proc is not None
    children = wait_until_children(psutil.Process(process.proc.pid), 2)
    process.kill()

    def gone(child: psutil.Process) -> bool:
        try:
            return child.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    deadline = time.monotonic() + 8
    while not all(gone(child) for child in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(gone(child) for child in children), process.logs()[-3000:]
