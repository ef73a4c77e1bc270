"""Real processes for tests: a redis-server on a free port and gateway servers beside it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class RedisServer:
    """A throwaway redis-server: no persistence, its own port and directory."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="gw-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not on PATH; set GATEWAY_TEST_REDIS_URL instead")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for(self._answers, what=f"redis-server on port {self.port}")
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


DEFAULT_ENV = {
    "GATEWAY_ADMIN_LOGIN": "admin",
    "GATEWAY_ADMIN_PASSWORD": "admin-password",
    # Every test client is 127.0.0.1; trusting loopback lets a test pick its own client address
    # with X-Forwarded-For, so one test's failed logins can't ban another's.
    "GATEWAY_TRUSTED_PROXIES": "127.0.0.0/8",
    "GATEWAY_HOOKS_ALLOW_PRIVATE": "1",
}


class GatewayProcess:
    """`python -m gateway serve` (or another subcommand) on a free port, logs to a file."""

    def __init__(self, env: dict[str, str], command: tuple[str, ...] = ("serve",)) -> None:
        self.port = free_port()
        self.command = command
        self.env = {**os.environ, **DEFAULT_ENV, **env, "GATEWAY_PORT": str(self.port),
                    "PYTHONUNBUFFERED": "1"}
        self.log_path = Path(tempfile.mkstemp(prefix="gw-log-", suffix=".jsonl")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> GatewayProcess:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", *self.command], env=self.env, cwd=ROOT,
            stdout=log, stderr=subprocess.STDOUT,
        )
        if wait and self.command[0] == "serve":
            wait_for(self._healthy, timeout=30, what=f"gateway on port {self.port}\n{self.logs()}")
        return self

    def _healthy(self) -> bool:
        if self.proc and self.proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            return httpx.get(self.url + "/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)
