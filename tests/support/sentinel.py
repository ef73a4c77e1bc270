"""A real Sentinel set for tests, on free ports: 1 master, 1 replica, 3 sentinels (quorum 2).

`down-after-milliseconds` 1000 and a short `failover-timeout`, so killing the master has the
replica promoted in a few seconds. Started once per test module that needs it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.support.processes import RedisServer, free_port, wait_for

MASTER_NAME = "gwmaster"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


class _Server(RedisServer):
    """A redis-server with extra arguments (a replica's `--replicaof`)."""

    def __init__(self, *extra: str) -> None:
        super().__init__()
        self.extra = extra

    def start(self) -> _Server:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for(self._answers, what=f"redis-server on port {self.port}")
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class SentinelSet:
    def __init__(self) -> None:
        self.master = _Server()
        self.replica: _Server | None = None
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.dir = Path(tempfile.mkdtemp(prefix="gw-sentinel-"))
        self._sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}/0"

    def start(self) -> SentinelSet:
        self.master.start()
        self.replica = _Server("--replicaof", "127.0.0.1", str(self.master.port)).start()
        for port in self.sentinel_ports:
            conf = self.dir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n")
            self._sentinels.append(subprocess.Popen(
                ["redis-server", str(conf), "--sentinel"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        # A failover needs the sentinels to know each other and the replica (hello messages
        # every 2 s), and the replica in sync.
        wait_for(self._ready, timeout=20, interval=0.1, what="the sentinels to see everyone")
        return self

    def _sentinel(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1)

    def _ready(self) -> bool:
        try:
            for port in self.sentinel_ports:
                with self._sentinel(port) as client:
                    state = client.sentinel_master(MASTER_NAME)
                    if state["num-other-sentinels"] < 2 or state["num-slaves"] < 1:
                        return False
            assert self.replica is not None
            with redis.Redis(port=self.replica.port) as replica:
                return replica.info("replication")["master_link_status"] == "up"
        except (redis.RedisError, OSError):
            return False

    def replica_healthy(self) -> bool:
        """Every sentinel sees the replica up and in sync (it can be promoted)."""
        try:
            for port in self.sentinel_ports:
                with self._sentinel(port) as client:
                    replicas = client.sentinel_slaves(MASTER_NAME)
                    if not replicas or any(r["is_sdown"] or r["is_odown"] for r in replicas):
                        return False
        except (redis.RedisError, OSError):
            return False
        return self._ready()

    def master_port(self) -> int | None:
        """The master's port according to a majority of the sentinels, if they agree."""
        seen: dict[int, int] = {}
        for port in self.sentinel_ports:
            try:
                with self._sentinel(port) as client:
                    _host, master_port = client.sentinel_get_master_addr_by_name(MASTER_NAME)
                    seen[int(master_port)] = seen.get(int(master_port), 0) + 1
            except (redis.RedisError, OSError, TypeError):
                continue
        agreed = [port for port, votes in seen.items() if votes >= 2]
        return agreed[0] if agreed else None

    def master_client(self) -> redis.Redis:
        port = self.master_port()
        assert port is not None
        return redis.Redis(port=port)

    def kill_master(self) -> float:
        """SIGKILL the master (after its replica has every write); returns when it died."""
        with redis.Redis(port=self.master.port) as master:
            assert master.wait(1, 2000) == 1, "the replica did not catch up"
        self.master.kill()
        return time.monotonic()

    def wait_promoted(self, timeout: float = 20) -> float:
        """Until the sentinels name the replica master and it says so itself."""
        assert self.replica is not None
        replica = self.replica

        def promoted() -> bool:
            if self.master_port() != replica.port:
                return False
            with redis.Redis(port=replica.port) as client:
                return client.info("replication")["role"] == "master"

        wait_for(promoted, timeout=timeout, interval=0.05, what="the replica's promotion")
        return time.monotonic()

    def bring_back_old_master(self) -> None:
        """Restart the killed master as the new master's replica, restoring redundancy (what
        Sentinel itself does only seconds after it sees the old master again)."""
        new_master = self.master_port()
        assert new_master is not None and self.master.proc is not None
        port = self.master.port
        self.master.stop()
        self.master = _Server("--replicaof", "127.0.0.1", str(new_master))
        self.master.port = port
        self.master.start()

    def stop(self) -> None:
        for proc in self._sentinels:
            if proc.poll() is None:
                proc.terminate()
        for proc in self._sentinels:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.master.stop()
        if self.replica is not None:
            self.replica.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
