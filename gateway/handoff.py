"""Connections handed between the processes of `gateway serve --workers N`: the wire and the
worker's side.

An Engine.IO polling session lives in the memory of the worker that opened it, and its later
requests (`?sid=…`: polls, posts, the websocket upgrade) come on new TCP connections or on
pooled keep-alive ones. So a sid names its worker (`<index>_<random>`, `new_sid`), and every
connection is given to the worker owning the sid of its request:

* the parent accepts, peeks at the request line (`MSG_PEEK`: nothing is read), and passes the
  file descriptor to the owner over a Unix `SOCK_SEQPACKET` socketpair with `SCM_RIGHTS`
  (`workers.py`); without a sid, to the next worker in turn;
* a worker that sees, at the start of a later request on a keep-alive connection, a sid of
  another worker (a browser's or a proxy's connection pool mixes sessions) passes the
  connection back to the parent with the bytes it has read of that request, and the parent
  passes both on to the owner, which reads those bytes first (`WorkerChannel.hand_off`).

After a hand-off the parent holds nothing: requests and responses go between the client and
the worker's socket. Messages, one per datagram, each with one descriptor:

    parent → worker   FLAG (1 byte) + bytes already read from the connection (maybe none)
    worker → parent   OWNER (2 bytes, big-endian) + bytes already read

FLAG `FINAL` says the owner could not be reached (restarting): serve the request here, which
answers 400 "Session ID unknown" as any socket.io server without sticky sessions would, and
the client opens a new session.

Standard library only.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.http_protocol import GatewayHttpProtocol

log = logging.getLogger(__name__)

ROUTED = 0
FINAL = 1
OWNER = struct.Struct(">H")
MAX_REQUEST_LINE = 8192  # past this without a line end, the request goes to the next worker
MAX_CARRIED = 64 * 1024  # bytes of a request carried along with a handed-back connection
MAX_MESSAGE = MAX_CARRIED + 16

# This process's index among the workers; None in a single `gateway serve`, whose sids are
# as they always were.
_worker_index: int | None = None


def become_worker(index: int) -> None:
    global _worker_index
    _worker_index = index


def new_sid() -> str:
    """An Engine.IO sid: 120 random bits, behind the worker's index when there are workers."""
    token = secrets.token_urlsafe(15)
    return token if _worker_index is None else f"{_worker_index}_{token}"


def sid_owner(sid: str | bytes) -> int | None:
    raw = sid.encode("latin-1") if isinstance(sid, str) else sid
    index, sep, _ = raw.partition(b"_")
    if not sep or not index.isdigit() or len(index) > 5:
        return None
    return int(index)


def request_line(head: bytes) -> bytes | None:
    """The request line at the start of `head`; None while it is incomplete."""
    end = head.find(b"\n", 0, MAX_REQUEST_LINE)
    if end < 0:
        return head[:MAX_REQUEST_LINE] if len(head) >= MAX_REQUEST_LINE else None
    return head[:end].rstrip(b"\r")


def line_owner(line: bytes) -> int | None:
    """The worker whose session a request line names (`/socket.io/…?sid=<index>_…`), if any."""
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        return None
    path, _, query = parts[1].partition(b"?")
    if not path.startswith(b"/socket.io"):
        return None
    owner = None
    for item in query.split(b"&"):  # the last sid counts, as in the endpoint's own parsing
        key, _, value = item.partition(b"=")
        if key == b"sid":
            owner = sid_owner(value)
    return owner


class WorkerChannel:
    """A worker's end of its socketpair with the parent: connections come in, and go back."""

    def __init__(self, sock: socket.socket, index: int) -> None:
        self.sock = sock
        self.index = index
        sock.setblocking(False)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._factory: Callable[[], GatewayHttpProtocol] | None = None
        self._on_parent_gone: Callable[[], None] = lambda: None
        self._tasks: set[asyncio.Task[object]] = set()

    def start(self, factory: Callable[[], GatewayHttpProtocol], on_parent_gone: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._factory = factory
        self._on_parent_gone = on_parent_gone
        self._loop.add_reader(self.sock.fileno(), self._readable)
        self.sock.send(b"R")  # ready: the parent routes to this worker from now on

    def stop(self) -> None:
        if self._loop is not None and self.sock.fileno() >= 0:
            self._loop.remove_reader(self.sock.fileno())

    def _readable(self) -> None:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.sock, MAX_MESSAGE, 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            if not data:  # the parent is gone: so are we, as one gateway
                log.error("the parent process is gone; shutting down", extra={"worker": self.index})
                self.stop()
                self._on_parent_gone()
                return
            for fd in fds:
                self._adopt(fd, data[1:], final=data[0] == FINAL)

    def _adopt(self, fd: int, carried: bytes, final: bool) -> None:
        assert self._loop is not None and self._factory is not None
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        factory = self._factory

        def protocol() -> GatewayHttpProtocol:
            made = factory()
            made.carried, made.final = carried, final
            return made

        task: asyncio.Task[object] = self._loop.create_task(
            self._loop.connect_accepted_socket(protocol, sock))
        self._tasks.add(task)
        task.add_done_callback(self._adopted)

    def _adopted(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("an accepted connection could not be adopted",
                        extra={"worker": self.index, "error": repr(task.exception())})

    def hand_off(self, transport: asyncio.Transport, data: bytes) -> bool:
        """Give the connection to the worker owning the sid of the request `data` starts.

        Called at a request boundary with the bytes read so far; False (serve it here) when
        the request is ours, names no worker, or the connection can't move cleanly: part of a
        response still unwritten, more bytes read than we carry along.
        """
        line = request_line(data)
        owner = None if line is None else line_owner(line)
        if owner is None or owner == self.index or len(data) > MAX_CARRIED:
            return False
        if transport.get_write_buffer_size() > 0:  # (uvloop's is no asyncio.WriteTransport)
            return False
        sock = transport.get_extra_info("socket")
        if sock is None:
            return False
        try:
            socket.send_fds(self.sock, [OWNER.pack(owner) + data], [sock.fileno()])
        except OSError:
            return False
        # The descriptor in flight keeps the connection open: closing ours sends nothing.
        transport.close()
        return True
