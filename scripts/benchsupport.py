"""What the CPU benchmarks in scripts/ share: one pinned redis-server and `gateway serve` per
run, and a process's CPU seconds read from /proc."""

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
from urllib.request import urlopen

ROOT = Path(__file__).resolve().parents[1]
ADMIN = ("bench", "bench-password-1")
TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process so far."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S  # utime, stime (fields 14, 15)


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the gateway exited with {proc.returncode} before answering")
        try:
            with urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


class Processes:
    """redis-server and `gateway serve` for one run, each pinned; stopped together."""

    def __init__(self, tree: Path, server_cpu: str, client_cpu: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="bench-fanout-")
        redis_port, self.port = free_port(), free_port()
        self.redis_url = f"redis://127.0.0.1:{redis_port}/0"
        self.redis = subprocess.Popen(
            ["taskset", "-c", client_cpu, "redis-server", "--port", str(redis_port), "--bind",
             "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.log = Path(self.dir) / "gateway.log"
        env = {**os.environ, "GATEWAY_REDIS_URL": self.redis_url, "GATEWAY_PORT": str(self.port),
               "GATEWAY_ADMIN_LOGIN": ADMIN[0], "GATEWAY_ADMIN_PASSWORD": ADMIN[1],
               "GATEWAY_RATE_LIMIT_PER_SECOND": "1000000",
               "GATEWAY_RATE_LIMIT_PER_MINUTE": "100000000",
               "GATEWAY_HOOKS_WORKER": "off", "PYTHONPATH": str(tree)}
        time.sleep(0.3)
        # taskset execs: the pid is the gateway's own.
        self.gateway = subprocess.Popen(
            ["taskset", "-c", server_cpu, sys.executable, "-m", "gateway", "serve", "--port",
             str(self.port)], env=env, cwd=tree, stdout=open(self.log, "wb"),
            stderr=subprocess.STDOUT)
        wait_healthy(f"http://127.0.0.1:{self.port}/readyz", self.gateway)

    def stop(self) -> None:
        for proc in (self.gateway, self.redis):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)
