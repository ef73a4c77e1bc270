"""`gateway serve --workers N`: one port, N processes, every transport working on any of them.

The parent owns the listening socket and nothing else of the service: it accepts, peeks at
each connection's request line (`MSG_PEEK`, at most `MAX_REQUEST_LINE` bytes and
`PEEK_DEADLINE_S`), and hands the descriptor to a worker over a Unix socketpair
(`SCM_RIGHTS`): the worker owning the Engine.IO session the request names (`?sid=<index>_…`),
or else the next worker in turn. The worker adopts it into its uvicorn server as if it had
accepted it itself; from then on bytes go between the client and the worker. Workers pass back
connections whose later requests name another worker's session (`handoff.py`), and the parent
passes them on. This is socket.io's `@socket.io/sticky` done at the connection level, with
no sticky load balancer to configure.

Each worker is a whole `gateway serve` — its own Redis connections, realtime hub, hook worker
and `/metrics` — started as `python -m gateway.workers` with its settings on stdin and its end
of the socketpair as an inherited descriptor. The embedded Redis, if any, is the parent's,
started once before the workers and stopped after them.

Lifecycle: a worker says it is ready on the socketpair once its app has started; the parent
accepts only while one is. SIGTERM (or SIGINT) to the parent closes the listening socket and
sends SIGTERM to every worker, which shuts down as a single `gateway serve` does (realtime
connections dropped at the Engine.IO level so clients reconnect, hook deliveries finished);
the parent waits for them (`STOP_TIMEOUT_S`, then SIGKILL) and exits. A worker that dies is
logged as an error and started again; its sessions are gone (their requests answer 400
"Session ID unknown" and the clients open new ones), the other workers serve on. A worker
whose parent dies sees its socketpair close and shuts down: no orphans.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

import uvloop

from gateway import handoff, logs
from gateway.settings import Settings

log = logging.getLogger("gateway")

PEEK_DEADLINE_S = 1.0  # then the connection goes to the next worker with what it sent
PEEK_RETRY_S = 0.005  # a request line that came in pieces is peeked at again this often
STOP_TIMEOUT_S = 20.0  # a worker's graceful shutdown (uvicorn's own is 10 s, then Redis)
RESTART_DELAY_S = 1.0


@dataclass
class Worker:
    index: int
    proc: subprocess.Popen[bytes]
    channel: socket.socket
    started_s: float
    ready: bool = False
    outbox: collections.deque[tuple[bytes, socket.socket]] = field(
        default_factory=collections.deque)


class Supervisor:
    """The parent process: listens, routes connections, keeps N workers running."""

    def __init__(self, settings: Settings, redis_url: str, *, log_level: str,
                 embedded: bool = False) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.log_level = log_level
        self.embedded = embedded
        self.count = settings.http.workers
        self.workers: list[Worker | None] = [None] * self.count
        self.listeners: list[socket.socket] = []
        self.port = settings.http.port  # the one bound, once listening
        self.listening = False
        self.peeking: dict[int, socket.socket] = {}  # by descriptor, until routed
        self.next = 0
        self.stopping = False
        self.failed = False
        self.stopped = asyncio.Event()

    def run(self) -> int:
        try:
            self.listeners = _listen(self.settings.http.host, self.settings.http.port)
        except OSError as error:
            log.error("cannot listen", extra={"host": self.settings.http.host,
                                              "port": self.settings.http.port,
                                              "error": str(error)})
            return 1
        self.port = self.listeners[0].getsockname()[1]
        uvloop.run(self._main())
        return 1 if self.failed else 0

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop)
        log.info("gateway serving", extra={
            "host": self.settings.http.host, "port": self.port,
            "workers": self.count, "pid": os.getpid(), "embedded_redis": self.embedded,
            "hooks_worker": self.settings.hooks.worker})
        for index in range(self.count):
            self._spawn(index)
        while not self.stopping:
            self._watch()
            try:
                await asyncio.wait_for(self.stopped.wait(), 0.2)
            except asyncio.TimeoutError:
                pass
        await self._shut_down()

    # -- workers -------------------------------------------------------------------------
    def _spawn(self, index: int) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.workers"], stdin=subprocess.PIPE,
            pass_fds=(theirs.fileno(),), start_new_session=False)
        assert proc.stdin is not None
        proc.stdin.write(pickle.dumps((self.settings, self.redis_url, index, theirs.fileno(),
                                       self.log_level)))
        proc.stdin.close()
        theirs.close()
        ours.setblocking(False)
        worker = Worker(index, proc, ours, time.monotonic())
        self.workers[index] = worker
        asyncio.get_running_loop().add_reader(ours.fileno(), self._from_worker, worker)
        log.info("worker started", extra={"worker": index, "pid": proc.pid})

    def _watch(self) -> None:
        """Notice dead workers: log loudly, start them again; give up if none ever started."""
        for index, worker in enumerate(self.workers):
            if worker is None or worker.proc.poll() is None:
                continue
            self._forget(worker)
            self.workers[index] = None
            if not worker.ready and not any(w is not None and w.ready for w in self.workers):
                log.error("a worker failed to start; stopping", extra={
                    "worker": index, "pid": worker.proc.pid, "exit": worker.proc.returncode})
                self.failed = True
                self._stop()
                return
            log.error("worker died; starting it again", extra={
                "worker": index, "pid": worker.proc.pid, "exit": worker.proc.returncode})
            asyncio.get_running_loop().call_later(RESTART_DELAY_S, self._restart, index)

    def _restart(self, index: int) -> None:
        if not self.stopping and self.workers[index] is None:
            self._spawn(index)

    def _forget(self, worker: Worker) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(worker.channel.fileno())
        loop.remove_writer(worker.channel.fileno())
        worker.ready = False
        for _, sock in worker.outbox:
            sock.close()
        worker.outbox.clear()
        worker.channel.close()

    def _from_worker(self, worker: Worker) -> None:
        """A worker's message: "ready", or a connection it passes on to another worker."""
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(worker.channel, handoff.MAX_MESSAGE, 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            if not data:  # it exited: route around it at once; _watch restarts it
                asyncio.get_running_loop().remove_reader(worker.channel.fileno())
                worker.ready = False
                return
            if data == b"R" and not fds:
                worker.ready = True
                log.info("worker ready", extra={"worker": worker.index, "pid": worker.proc.pid})
                self._accepting()
                continue
            for fd in fds:
                sock = socket.socket(fileno=fd)
                (owner,) = handoff.OWNER.unpack_from(data)
                log.debug("connection passed on", extra={"from": worker.index, "to": owner})
                self._route(sock, data[handoff.OWNER.size:], owner, passed_by=worker)

    # -- connections ---------------------------------------------------------------------
    def _accepting(self) -> None:
        if self.stopping or self.listening:
            return
        self.listening = True
        loop = asyncio.get_running_loop()
        for listener in self.listeners:
            loop.add_reader(listener.fileno(), self._accept, listener)

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(64):  # then let the loop turn: routing waits on nothing
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # EMFILE and the like: logged, the loop goes on
                log.error("accept failed", extra={"error": str(error)})
                return
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            self.peeking[sock.fileno()] = sock
            loop.call_later(PEEK_DEADLINE_S, self._peek_expired, sock)
            self._peek(sock)

    def _peek(self, sock: socket.socket) -> None:
        """Route `sock` once its request line is in; until then, wait for more of it."""
        loop = asyncio.get_running_loop()
        try:
            head = sock.recv(handoff.MAX_REQUEST_LINE, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):  # nothing yet: wait for it
            loop.add_reader(sock.fileno(), self._readable, sock)
            return
        except OSError:
            head = b""
        if not head:  # closed before a request: nothing to route
            self._unpeek(sock)
            sock.close()
            return
        line = handoff.request_line(head)
        if line is None:  # part of a line: it stays readable, so look again shortly
            loop.call_later(PEEK_RETRY_S, self._peek_again, sock)
            return
        self._unpeek(sock)
        self._route(sock, b"", handoff.line_owner(line))

    def _unpeek(self, sock: socket.socket) -> bool:
        if self.peeking.get(sock.fileno()) is not sock:
            return False
        del self.peeking[sock.fileno()]
        return True

    def _readable(self, sock: socket.socket) -> None:
        asyncio.get_running_loop().remove_reader(sock.fileno())
        if self.peeking.get(sock.fileno()) is sock:
            self._peek(sock)

    def _peek_again(self, sock: socket.socket) -> None:
        if self.peeking.get(sock.fileno()) is sock:
            self._peek(sock)

    def _peek_expired(self, sock: socket.socket) -> None:
        """No request line in time: its worker's request-head deadline takes it from here."""
        if self._unpeek(sock):
            asyncio.get_running_loop().remove_reader(sock.fileno())
            self._route(sock, b"", None)

    def _route(self, sock: socket.socket, carried: bytes, owner: int | None,
               passed_by: Worker | None = None) -> None:
        """Hand `sock` to `owner`, or (no owner, or not ready) to the next ready worker."""
        flag = handoff.ROUTED
        target = self.workers[owner] if owner is not None and owner < self.count else None
        if target is None or not target.ready:
            if owner is not None:  # a session of a worker that is not there: answer 400
                flag = handoff.FINAL
            target = passed_by if passed_by is not None and passed_by.ready else self._next()
        if target is None or self.stopping:
            sock.close()
            return
        target.outbox.append((bytes([flag]) + carried, sock))
        self._send(target)

    def _next(self) -> Worker | None:
        for _ in range(self.count):
            worker = self.workers[self.next]
            self.next = (self.next + 1) % self.count
            if worker is not None and worker.ready:
                return worker
        return None

    def _send(self, worker: Worker) -> None:
        loop = asyncio.get_running_loop()
        while worker.outbox:
            message, sock = worker.outbox[0]
            try:
                socket.send_fds(worker.channel, [message], [sock.fileno()])
            except (BlockingIOError, InterruptedError):
                loop.add_writer(worker.channel.fileno(), self._drain, worker)
                return
            except OSError:  # the worker is gone: its connections go to the others
                worker.ready = False
                queued = list(worker.outbox)
                worker.outbox.clear()
                for message, sock in queued:
                    self._route(sock, message[1:], None)
                return
            worker.outbox.popleft()
            sock.close()  # the worker has it now; nothing of it stays here

    def _drain(self, worker: Worker) -> None:
        asyncio.get_running_loop().remove_writer(worker.channel.fileno())
        self._send(worker)

    # -- stopping ------------------------------------------------------------------------
    def _stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.stopped.set()

    async def _shut_down(self) -> None:
        loop = asyncio.get_running_loop()
        for listener in self.listeners:  # new connections are refused, as by one process
            if self.listening:
                loop.remove_reader(listener.fileno())
            listener.close()
        for sock in list(self.peeking.values()):
            loop.remove_reader(sock.fileno())
            sock.close()
        self.peeking.clear()
        live = [w for w in self.workers if w is not None and w.proc.poll() is None]
        log.info("stopping workers", extra={"workers": [w.proc.pid for w in live]})
        for worker in live:
            worker.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while any(w.proc.poll() is None for w in live) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for worker in live:
            if worker.proc.poll() is None:
                log.error("worker did not stop in time; killed", extra={
                    "worker": worker.index, "pid": worker.proc.pid})
                worker.proc.kill()
                worker.proc.wait()
            elif worker.proc.returncode != 0:
                log.error("worker exited with an error", extra={
                    "worker": worker.index, "pid": worker.proc.pid,
                    "exit": worker.proc.returncode})
        for remaining in self.workers:
            if remaining is not None:
                self._forget(remaining)
        log.info("gateway stopped", extra={"workers": self.count})


def _listen(host: str, port: int) -> list[socket.socket]:
    """Bind every address `host` resolves to, as uvicorn (asyncio's create_server) would."""
    listeners: list[socket.socket] = []
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            listeners.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(2048)
            sock.setblocking(False)
            if port == 0:  # every address on the one port the first was given
                port = sock.getsockname()[1]
    except OSError:
        for sock in listeners:
            sock.close()
        raise
    return listeners


class _WorkerTag(logging.Filter):
    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.index
        record.pid = os.getpid()
        return True


def main() -> int:
    """A worker: `python -m gateway.workers`, started by the parent (`Supervisor._spawn`)."""
    settings, url, index, fd, log_level = pickle.loads(sys.stdin.buffer.read())
    logs.configure(log_level)
    for handler in logging.getLogger().handlers:  # every line says which worker wrote it
        handler.addFilter(_WorkerTag(index))
    handoff.become_worker(index)
    from gateway.server import serve_worker

    channel = handoff.WorkerChannel(socket.socket(fileno=fd), index)
    log.info("worker serving", extra={"redis": _redact(url)})
    return serve_worker(settings, url, channel)


def _redact(url: str) -> str:
    from gateway.store.redis import redact

    return redact(url)


if __name__ == "__main__":
    sys.exit(main())
