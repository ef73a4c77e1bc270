"""The `gateway` command: users and API keys from the shell, --help, settings and Redis errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.support.api import basic, unique
from tests.support.processes import ROOT, free_port


def gateway_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PORT"))}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "gateway", *args], env=full_env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_help_lists_the_commands():
    result = gateway_cli("--help")
    assert result.returncode == 0
    for word in ("serve", "worker", "users", "apikeys", "GATEWAY_REDIS_URL"):
        assert word in result.stdout
    users = gateway_cli("users", "create", "--help")
    assert users.returncode == 0
    for flag in ("--password", "--admin", "--readonly", "--groups"):
        assert flag in users.stdout


@pytest.mark.skipif(shutil.which("gateway") is None, reason="the console script is not installed")
def test_the_console_script_is_installed():
    result = subprocess.run(["gateway", "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "apikeys" in result.stdout


def test_users_create_makes_a_user_who_can_log_in(api, redis_url):
    login = unique("cli")
    result = gateway_cli("users", "create", login, "--password", "cli-pw-1", "--groups", "g1, g2",
                         env={"GATEWAY_REDIS_URL": redis_url})
    assert result.returncode == 0, result.stderr
    assert login in result.stdout
    assert "cli-pw-1" not in result.stdout + result.stderr
    me = api.http.get("/api/v1/users/me", headers=basic(login, "cli-pw-1"))
    assert me.status_code == 200
    assert me.json()["groups"] == ["g1", "g2"] and me.json()["roles"] == []

    again = gateway_cli("users", "create", login, "--password", "other",
                        env={"GATEWAY_REDIS_URL": redis_url})
    assert again.returncode == 1
    assert "already exists" in again.stderr
    assert api.http.get("/api/v1/users/me", headers=basic(login, "cli-pw-1")).status_code == 200


def test_users_create_roles(api, redis_url):
    admin, reader = unique("cliadmin"), unique("clireader")
    env = {"GATEWAY_REDIS_URL": redis_url}
    assert gateway_cli("users", "create", admin, "--password", "pw-a", "--admin", env=env).returncode == 0
    assert gateway_cli("users", "create", reader, "--password", "pw-r", "--readonly",
                       env=env).returncode == 0
    assert api.http.get("/api/v1/users/me", headers=basic(admin, "pw-a")).json()["roles"] == ["admin"]
    created = api.http.post("/api/v1/users", headers=basic(admin, "pw-a"),
                            json={"login": unique("byadmin"), "password": "pw"})
    assert created.status_code == 201
    assert api.http.post("/api/v1/apikeys", headers=basic(reader, "pw-r")).status_code == 403


@pytest.mark.parametrize("login", ["has space", "a:b"])
def test_users_create_refuses_a_bad_login(redis_url, login):
    result = gateway_cli("users", "create", login, "--password", "pw",
                         env={"GATEWAY_REDIS_URL": redis_url})
    assert result.returncode == 2
    assert "login" in result.stderr


def test_users_create_refuses_an_empty_password(redis_url):
    result = gateway_cli("users", "create", unique("nopw"), "--password", "",
                         env={"GATEWAY_REDIS_URL": redis_url})
    assert result.returncode == 2
    assert "password" in result.stderr


def test_apikeys_create_prints_a_key_that_works(api, redis_url):
    user = api.create_user()
    result = gateway_cli("apikeys", "create", user["login"], "--scope", "read",
                         env={"GATEWAY_REDIS_URL": redis_url})
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip().splitlines()[-1]
    token = api.http.get("/auth/token", headers={"Authorization": key})
    assert token.status_code == 200
    assert token.json()["scope"] == "read"
    default = gateway_cli("apikeys", "create", user["login"], env={"GATEWAY_REDIS_URL": redis_url})
    key = default.stdout.strip().splitlines()[-1]
    assert api.http.get("/auth/token", headers={"Authorization": key}).json()["scope"] == "read write"


def test_apikeys_create_for_an_unknown_login_fails(redis_url):
    result = gateway_cli("apikeys", "create", unique("ghost"), env={"GATEWAY_REDIS_URL": redis_url})
    assert result.returncode == 1
    assert "no user" in result.stderr


@pytest.mark.parametrize("name,value", [
    ("GATEWAY_PORT", "abc"),
    ("PORT", "http"),
    ("GATEWAY_RATE_LIMIT_PER_SECOND", "0"),
    ("GATEWAY_AUTH_BAN_S", "soon"),
    ("GATEWAY_TRUSTED_PROXIES", "10.0.0.0/8,not-a-network"),
    ("GATEWAY_REDIS_URL", "http://localhost:6379"),
])
def test_a_bad_setting_exits_2_naming_the_variable(name, value):
    result = gateway_cli("serve", env={name: value}, timeout=20)
    assert result.returncode == 2, result.stderr
    assert name in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_redis_fails_start_up_fast_and_clearly():
    started = time.monotonic()
    result = gateway_cli("serve", env={"GATEWAY_REDIS_URL": "redis://127.0.0.1:1/0",
                                       "GATEWAY_PORT": str(free_port())}, timeout=30)
    assert time.monotonic() - started < 10
    assert result.returncode == 2
    assert "unreachable" in result.stderr and "GATEWAY_REDIS_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_cli_also_fails_clearly_on_an_unreachable_redis():
    result = gateway_cli("users", "create", "x", "--password", "y",
                         env={"GATEWAY_REDIS_URL": "redis://127.0.0.1:1/0"}, timeout=30)
    assert result.returncode == 2
    assert "unreachable" in result.stderr
