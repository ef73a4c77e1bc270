"""One run: log in, start the worker processes, measure memory, publish, collect, report.

Phases, each bounded in time:
  connect   every worker connects its slice (≤ connect timeout per client, `--procs` workers)
  hold      optional idle period with heartbeats (`--hold`), counts dropped connections
  publish   K messages at rate R from this process
  drain     workers wait for the rest: until complete, `--drain-timeout`, or 5 s with nothing new
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import sys
import time
from multiprocessing.connection import Connection
from typing import Any, cast

from gateway.loadtest import stats
from gateway.loadtest.config import ClientConfig, RunConfig, Target
from gateway.loadtest.publisher import (Publisher, PublishResult, RedisSender, RestSender,
                                        TriggerSender, login)
from gateway.loadtest.worker import BIN_S, WorkerSpec
from gateway.loadtest.worker import run as worker_run

STALL_S = 5.0
CONNECT_PHASE_LIMIT_S = 600.0


class RunError(Exception):
    """The run could not start (bad target, login refused); exit code 2."""


def _rss(pid: int | None) -> float | None:
    if pid is None:
        return None
    import psutil

    return float(psutil.Process(pid).memory_info().rss)


class Progress:
    """A tqdm bar over deliveries (clients × events), or nothing when disabled."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="msg", unit_scale=True, dynamic_ncols=True,
                            desc="delivered", file=sys.stderr, mininterval=0.5)

    def set(self, value: int, postfix: str) -> None:
        if self.bar is not None:
            self.bar.n = value
            self.bar.set_postfix_str(postfix, refresh=False)
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Runner:
    def __init__(self, config: RunConfig) -> None:
        self.cfg = config
        self.target = Target.from_url(config.url)
        self.pipes: list[Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        self.unique = [0] * config.procs
        self.dropped = [0] * config.procs

    def _client_config(self, cookie: str) -> ClientConfig:
        cfg = self.cfg
        return ClientConfig(target=self.target, eio=cfg.eio, mode=cfg.target, store=cfg.store,
                            cookie=cookie, connect_timeout_s=cfg.connect_timeout_s,
                            connect_concurrency=cfg.connect_concurrency)

    def _spawn(self, client: ClientConfig, epoch: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        cfg = self.cfg
        per, extra = divmod(cfg.clients, cfg.procs)
        first = 0
        for n in range(cfg.procs):
            count = per + (1 if n < extra else 0)
            mine, theirs = ctx.Pipe()
            spec = WorkerSpec(client=client, first=first, count=count, events=cfg.events,
                              epoch=epoch, nice=cfg.worker_nice)
            proc = ctx.Process(target=worker_run, args=(theirs, spec), daemon=True,
                               name=f"loadtest-worker-{n}")
            proc.start()
            theirs.close()
            self.pipes.append(mine)
            self.procs.append(proc)
            first += count

    def _wait(self, kind: str, timeout: float, progress: Progress | None = None,
              label: str = "") -> list[dict[str, Any]]:
        """Read every worker's pipe until each has sent a `kind` message (progress on the way)."""
        answers: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while len(answers) < len(self.pipes):
            if time.monotonic() > deadline:
                raise RunError(f"workers did not report {kind!r} within {timeout:.0f} s")
            self._poll(answers, kind, 0.2)
            if progress is not None:
                progress.set(sum(self.unique), f"{label} dropped={sum(self.dropped)}")
            for n, proc in enumerate(self.procs):
                if n not in answers and not proc.is_alive() and not self.pipes[n].poll():
                    raise RunError(f"worker {n} exited with {proc.exitcode}")
        return [answers[n] for n in range(len(self.pipes))]

    def _poll(self, answers: dict[int, dict[str, Any]], kind: str, wait: float) -> None:
        from multiprocessing.connection import wait as wait_pipes

        for ready in wait_pipes(self.pipes, timeout=wait):
            pipe = cast(Connection, ready)  # wait() returns some of the objects it was given
            n = self.pipes.index(pipe)
            try:
                message = pipe.recv()
            except EOFError:
                continue
            if message[0] == "progress":
                self.unique[n], self.dropped[n] = message[1], message[2]
            elif message[0] == kind:
                answers[n] = message[1]

    def _drain_progress(self) -> None:
        answers: dict[int, dict[str, Any]] = {}
        self._poll(answers, "-", 0)

    def _sender(self, cookie: str) -> Any:
        cfg = self.cfg
        if cfg.target == "peer":
            return TriggerSender(self.target.base, cfg.payload_pad)
        if cfg.publish == "redis":
            if not cfg.redis_url:
                raise RunError("--publish redis needs --redis-url (or GATEWAY_REDIS_URL)")
            return RedisSender(cfg.redis_url, cfg.store, cfg.payload_pad)
        return RestSender(self.target.base, cookie, cfg.store, cfg.payload_pad)

    async def _publish(self, cookie: str, progress: Progress) -> PublishResult:
        sender = self._sender(cookie)
        sent = [0]

        def on_sent(seq: int) -> None:
            sent[0] += 1
            if sent[0] % 10 == 0:
                self._drain_progress()
                progress.set(sum(self.unique), f"published={sent[0]}")

        publisher = Publisher(events=self.cfg.events, rate=self.cfg.rate,
                              concurrency=self.cfg.publish_concurrency, on_sent=on_sent)
        try:
            return await publisher.run(sender)
        finally:
            await sender.close()

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        cookie = ""
        if cfg.target == "gateway":
            try:
                cookie = login(self.target.base, cfg.login, cfg.password)
            except Exception as error:
                raise RunError(str(error)) from error
        epoch = time.time()
        rss_before = _rss(cfg.server_pid)
        self._spawn(self._client_config(cookie), epoch)
        progress: Progress | None = None
        try:
            print(f"connecting {cfg.clients} clients ({cfg.procs} process"
                  f"{'es' if cfg.procs > 1 else ''})…", file=sys.stderr)
            ready = self._wait("ready", CONNECT_PHASE_LIMIT_S)
            connected = sum(r["ok"] for r in ready)
            if cfg.hold_s > 0:
                print(f"holding {connected} connections for {cfg.hold_s:.0f} s…", file=sys.stderr)
                end = time.monotonic() + cfg.hold_s
                while time.monotonic() < end:
                    self._drain_progress()
                    time.sleep(0.2)
            time.sleep(0.5)  # let the server settle before reading its memory
            rss_connected = _rss(cfg.server_pid)
            dropped_in_hold = sum(self.dropped)
            progress = Progress(cfg.progress, connected * cfg.events)
            published = asyncio.run(self._publish(cookie, progress))
            deadline = time.time() + cfg.drain_timeout_s
            for pipe in self.pipes:
                pipe.send(("finish", bytes(published.ok), deadline, STALL_S))
            results = self._wait("result", cfg.drain_timeout_s + 60, progress, "draining")
            rss_after = _rss(cfg.server_pid)
        finally:
            if progress is not None:
                progress.close()
            for pipe in self.pipes:
                try:
                    pipe.send(("stop",))
                except OSError:
                    pass
            for proc in self.procs:
                proc.join(10)
                if proc.is_alive():
                    proc.kill()
        return self._figures(ready, results, published, epoch, dropped_in_hold,
                             (rss_before, rss_connected, rss_after))

    def _figures(self, ready: list[dict[str, Any]], results: list[dict[str, Any]],
                 published: PublishResult, epoch: float, dropped_in_hold: int,
                 rss: tuple[float | None, ...]) -> dict[str, Any]:
        cfg = self.cfg
        connect_ms = [s * 1000 for r in ready for s in r["connect_s"]]
        connect = stats.summary(connect_ms)
        errors: dict[str, int] = {}
        for r in ready:
            for reason, count in r["errors"].items():
                errors[reason] = errors.get(reason, 0) + count
        latencies = stats.merge_latencies(results)
        bins = stats.merge_bins(results)
        first_bin = int((published.started - epoch) / BIN_S)
        bins = bins[first_bin:]
        clients = sum(r["clients"] for r in results)
        unique = sum(r["unique"] for r in results)
        last_receive = max((r["last_receive"] for r in results), default=0.0)
        duration = max(1e-9, (last_receive or published.finished) - published.started)
        lost_per_event = [sum(col) for col in zip(*(r["lost_per_event"] for r in results))]
        dropped: dict[str, int] = {}
        for r in results:
            for reason, count in r["dropped"].items():
                dropped[reason] = dropped.get(reason, 0) + count
        before, connected, after = rss
        per_conn = None
        if before is not None and connected is not None and clients:
            per_conn = (connected - before) / clients / 1024
        figures: dict[str, Any] = {
            "target": cfg.target, "url": cfg.url, "eio": cfg.eio, "clients": cfg.clients,
            "events": cfg.events, "rate": cfg.rate,
            "publish": "trigger" if cfg.target == "peer" else cfg.publish, "procs": cfg.procs,
            "store": cfg.store,
            "connect": {"connected": sum(r["ok"] for r in ready),
                        "failed": sum(r["failed"] for r in ready),
                        "total_s": max(r["connect_total_s"] for r in ready),
                        "p50_ms": connect["p50"], "p99_ms": connect["p99"],
                        "max_ms": connect["max"], "errors": errors},
            "published": {"ok": sum(published.ok), "errors": published.errors,
                          "duration_s": published.finished - published.started,
                          "rate": sum(published.ok) / max(1e-9, published.finished
                                                          - published.started),
                          "call_ms": stats.summary(published.call_ms)},
            "latency_ms": {k: v for k, v in stats.summary(latencies).items()},
            "delivery": {"expected": clients * sum(published.ok), "unique": unique,
                         "received": sum(r["received"] for r in results),
                         "lost": sum(r["lost"] for r in results),
                         "duplicated": sum(r["duplicated"] for r in results),
                         "events_with_losses": sum(1 for x in lost_per_event if x),
                         "dropped": sum(dropped.values()), "dropped_reasons": dropped,
                         "dropped_during_hold": dropped_in_hold,
                         "duration_s": duration, "msgs_per_s": unique / duration},
            "memory": {"server_pid": cfg.server_pid,
                       "rss_before_mb": before / 2**20 if before else None,
                       "rss_connected_mb": connected / 2**20 if connected else None,
                       "rss_after_mb": after / 2**20 if after else None,
                       "per_connection_kb": per_conn},
            "client": {"cpu_util_max": max((r["cpu_s"] / max(r["wall_s"], 1e-9)
                                            for r in results), default=None),
                       "worker_nice": cfg.worker_nice},
            "rate_bins": {"bin_s": BIN_S, "counts": bins},
        }
        self.latencies = latencies
        return figures


def write_json(path: str, figures: dict[str, Any]) -> None:
    with open(path, "w") as handle:
        json.dump(stats.round_floats(figures), handle, indent=2)
        handle.write("\n")
