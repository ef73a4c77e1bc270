"""One Engine.IO + Socket.IO connection as a sans-I/O state machine.

Theory of operation
-------------------
A ``Session`` never touches a socket or a clock. The transport that owns it:

1. feeds what the client sent: ``receive_data(frame, now=…)`` for a websocket frame,
   ``receive_payload(body, now=…)`` for a polling POST body;
2. acts on ``events_received()`` (``Connected``, ``EventReceived``, ``Disconnected`` …);
3. writes what is queued: ``data_to_send()`` (websocket frames) or
   ``payload_to_send(binary_ok=…)`` (one polling response, ``None`` when nothing is due);
4. keeps one timer for every session: after any call, ``next_deadline()`` says when
   ``check_timeouts(now)`` must run next (to send a ping, or to close a silent client).
   Input only ever moves that deadline later, except ``start_upgrade`` (its timeout may be
   sooner): a timer armed at a deadline and re-checked when it fires never misses one.

The application's replies go through ``send_event``, ``send_ack``, ``send_encoded`` (a broadcast
encoded once with ``socketio.encode_broadcast``), ``disconnect_namespace`` and ``close``.
Peer faults never raise out of ``receive_*``: the session closes itself and reports
``Disconnected(reason, error)``. Misuse by the caller raises ``LocalProtocolError``.

Everything that differs between ``EIO=3`` and ``EIO=4`` comes from the ``Dialect`` chosen once
(see ``dialect.py``); this module never tests a version number.

Transport states (``states.TRANSITIONS`` is the whole table)::

    POLLING ──start_upgrade──▶ PROBING ──client sends 5──▶ WEBSOCKET
       ▲                          │
       └─────abort / timeout──────┘
    any state ──close / ping timeout / peer fault / transport closed──▶ CLOSED

Upgrade: on a new websocket for this sid the transport calls ``start_upgrade``, then passes that
socket's frames to ``receive_upgrade_data`` and writes back what it returns. ``2probe`` is
answered ``3probe`` there, and a noop ``6`` is queued for polling so the pending GET returns;
``5`` completes the upgrade (``Upgraded`` event; a noop still queued is dropped) and from then on
the websocket drains the queue.

Heartbeat, as a function of ``now`` (seconds, monotonic; the intervals are configured in ms):

- client pings (``EIO=3``): every received packet moves the deadline to
  ``now + pingInterval + pingTimeout``; ``2<data>`` is answered ``3<data>`` at once.
- server pings (``EIO=4``): every ``pingInterval`` from open, on the clock, the session queues
  ``2``; the client must answer ``3`` within ``pingTimeout`` of the oldest unanswered ping.
  The schedule does not wait for the pong (node's engine.io pings ``pingInterval`` after the
  pong): a client expects the next ping within ``pingInterval + pingTimeout`` of the last one,
  so a round trip longer than ``pingTimeout`` would otherwise read as a dead server. When
  ``pingTimeout`` exceeds ``pingInterval`` a slow client may get a ping while one is unanswered;
  clients answer each.

Namespaces: the client joins with CONNECT (``EIO=3``: ``/`` is joined implicitly at open) and is
answered at once — the handshake is authenticated before the session exists. A namespace not in
``SessionConfig.namespaces`` is refused with CONNECT_ERROR "Invalid namespace". EVENT or ACK for
a namespace not joined is a peer fault.

Plain Engine.IO (``SessionConfig(socketio=False)``): no namespaces; each message is reported as
``MessageReceived`` and the application sends with ``send_message``.
"""

from __future__ import annotations

import secrets
from typing import Any, Callable
from urllib.parse import parse_qsl

from . import socketio
from .config import SessionConfig
from .dialect import Dialect
from .engineio import Outgoing, Packet, PacketType
from .errors import (
    HeartbeatError,
    LocalProtocolError,
    RemoteProtocolError,
    SocketIODecodeError,
)
from .events import (
    CLIENT_NAMESPACE_DISCONNECT,
    FORCED_CLOSE,
    PING_TIMEOUT,
    SERVER_NAMESPACE_DISCONNECT,
    TRANSPORT_CLOSE,
    TRANSPORT_ERROR,
    AckReceived,
    Connected,
    Disconnected,
    Event,
    EventReceived,
    MessageReceived,
    NamespaceDisconnected,
    UpgradeAborted,
    Upgraded,
)
from .socketio import SIOPacket, SIOType
from .states import TRANSITIONS, State, Trigger

__all__ = ["Session", "SessionConfig", "State"]


_NOOP = Packet(PacketType.NOOP)


def _random_socket_id() -> str:
    return secrets.token_urlsafe(15)


class Session:
    """One client connection; see the module docstring."""

    __slots__ = (
        "sid",
        "_dialect",
        "_config",
        "_state",
        "_out",
        "_events",
        "_deadline",
        "_pong_due",
        "_upgrade_deadline",
        "_namespaces",
        "_decoder",
        "_next_ack_id",
        "_new_socket_id",
    )

    def __init__(
        self,
        dialect: Dialect,
        sid: str,
        *,
        transport: str,
        now: float,
        config: SessionConfig = SessionConfig(),
        new_socket_id: Callable[[], str] = _random_socket_id,
    ) -> None:
        """Open a session and queue the open packet (and, for ``EIO=3``, ``40``).

        Args:
            dialect: from ``dialect_for(query["EIO"])``.
            sid: the Engine.IO session id (secret to this client).
            transport: ``"polling"`` or ``"websocket"``, the transport of the handshake.
            now: current monotonic time in seconds.
            config: shared settings.
            new_socket_id: makes the public Socket.IO id of each joined namespace (``EIO=4``).
        """
        if transport == "polling":
            self._state = State.POLLING
        elif transport == "websocket":
            self._state = State.WEBSOCKET
        else:
            raise LocalProtocolError(f"unknown transport {transport!r}")
        self.sid = sid
        self._dialect = dialect
        self._config = config
        self._out: list[Outgoing] = []
        self._events: list[Event] = []
        self._pong_due: float | None = None  # EIO=4: a ping is unanswered; its pong is due then
        self._upgrade_deadline: float | None = None
        self._namespaces: dict[str, str | None] = {}
        self._decoder = socketio.Decoder(max_attachments=config.max_attachments)
        self._next_ack_id = 0
        self._new_socket_id = new_socket_id
        self._deadline = now + self._quiet_allowance()
        upgrades = ["websocket"] if transport == "polling" and config.allow_upgrades else []
        self._out.append(
            dialect.codec.open_packet(
                sid,
                upgrades=upgrades,
                ping_interval_ms=config.ping_interval_ms,
                ping_timeout_ms=config.ping_timeout_ms,
                max_payload=config.max_payload,
            )
        )
        if config.socketio and dialect.implicit_root_namespace and "/" in config.namespaces:
            self._join("/", None)

    # -- state ---------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def closed(self) -> bool:
        return self._state is State.CLOSED

    @property
    def dialect(self) -> Dialect:
        return self._dialect

    @property
    def namespaces(self) -> frozenset[str]:
        """Namespaces the client has joined."""
        return frozenset(self._namespaces)

    def socket_id(self, namespace: str) -> str | None:
        """The Socket.IO id sent to the client for a joined namespace (``EIO=4`` only)."""
        return self._namespaces.get(namespace)

    def _transition(self, trigger: Trigger) -> None:
        try:
            self._state = TRANSITIONS[self._state, trigger]
        except KeyError:
            raise LocalProtocolError(
                f"cannot {trigger.value} in state {self._state.value}"
            ) from None

    # -- input ---------------------------------------------------------------------------

    def receive_data(self, data: str | bytes, *, now: float) -> None:
        """Handle one websocket frame from the current transport."""
        if self.closed:
            return
        try:
            packet = self._dialect.codec.decode_packet(data)
        except RemoteProtocolError as exc:
            self._fail(exc)
            return
        self.receive_packet(packet, now=now)

    def receive_payload(self, data: str | bytes, *, now: float) -> None:
        """Handle one polling POST body (text, or bytes if sent as octet-stream)."""
        if self.closed:
            return
        try:
            packets = self._dialect.codec.decode_payload(data)
        except RemoteProtocolError as exc:
            self._fail(exc)
            return
        for packet in packets:
            self.receive_packet(packet, now=now)
            if self.closed:
                break

    def receive_packet(self, packet: Packet, *, now: float) -> None:
        """Handle one decoded Engine.IO packet from the current transport."""
        if self.closed:
            return
        client_pings = self._dialect.client_pings
        if client_pings:
            self._deadline = now + self._quiet_allowance()
        kind = packet.type
        if kind is PacketType.MESSAGE:
            self._receive_message(packet.data)
        elif kind is PacketType.PING:
            if not client_pings:
                self._fail(HeartbeatError("ping from the client; the server pings"))
            else:
                self._out.append(Packet(PacketType.PONG, packet.data))
        elif kind is PacketType.PONG:
            if client_pings:
                self._fail(HeartbeatError("pong from the client; the client pings"))
            else:
                self._pong_due = None  # the next ping stays on its schedule (`_deadline`)
        elif kind is PacketType.CLOSE:
            if self._state is not State.WEBSOCKET:
                # release a pending GET (node's polling transport answers it with a noop)
                self._out.append(Packet(PacketType.NOOP))
            self._close(TRANSPORT_CLOSE)
        # OPEN, UPGRADE and NOOP mean nothing on an established transport: ignored, as node does

    def transport_closed(self, *, error: bool = False) -> None:
        """The current transport's connection ended (``error``: it failed rather than closed)."""
        if not self.closed:
            self._close(TRANSPORT_ERROR if error else TRANSPORT_CLOSE)

    # -- upgrade -------------------------------------------------------------------------

    def start_upgrade(self, *, now: float) -> None:
        """A websocket arrived for this polling session; its frames go to
        ``receive_upgrade_data`` until ``Upgraded`` or ``UpgradeAborted``."""
        self._transition(Trigger.START_UPGRADE)
        self._upgrade_deadline = now + self._config.upgrade_timeout_ms / 1000

    def receive_upgrade_data(self, data: str | bytes, *, now: float) -> list[str | bytes]:
        """Handle a frame from the probing websocket; return frames to write to it."""
        if self._state is not State.PROBING:
            raise LocalProtocolError(f"no upgrade in progress (state {self._state.value})")
        try:
            packet = self._dialect.codec.decode_packet(data)
        except RemoteProtocolError:
            self.abort_upgrade("parse error")
            return []
        if self._dialect.client_pings:
            self._deadline = now + self._quiet_allowance()
        if packet.type is PacketType.PING and packet.data == "probe":
            # The client paused polling; release its pending GET so it can send 5 (spec v4,
            # "Upgrade"; node repeats this noop every 100 ms, once is enough for a waiting GET).
            self._out.append(Packet(PacketType.NOOP))
            return [self._dialect.codec.encode_packet(Packet(PacketType.PONG, "probe"))]
        if packet.type is PacketType.UPGRADE:
            self._transition(Trigger.UPGRADE)
            self._upgrade_deadline = None
            # the probe's noop was for a pending GET; the websocket client needs none
            self._out = [item for item in self._out if item != _NOOP]
            self._events.append(Upgraded())
            return []
        self.abort_upgrade(f"unexpected {packet.type.name.lower()} packet during upgrade")
        return []

    def abort_upgrade(self, reason: str = TRANSPORT_CLOSE) -> None:
        """Give up the upgrade (the probing websocket closed, or sent nonsense)."""
        if self._state is State.PROBING:
            self._transition(Trigger.ABORT_UPGRADE)
            self._upgrade_deadline = None
            self._events.append(UpgradeAborted(reason))

    # -- timers --------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When ``check_timeouts`` must next run, or ``None`` once closed."""
        if self.closed:
            return None
        deadline = self._deadline
        if self._pong_due is not None and self._pong_due < deadline:
            deadline = self._pong_due
        if self._upgrade_deadline is not None and self._upgrade_deadline < deadline:
            deadline = self._upgrade_deadline
        return deadline

    def check_timeouts(self, now: float) -> None:
        """Send a due ping, abort a stale upgrade, close a silent client."""
        if self.closed:
            return
        if self._upgrade_deadline is not None and now >= self._upgrade_deadline:
            self.abort_upgrade("upgrade timeout")
        if self._pong_due is not None and now >= self._pong_due:
            self._close(PING_TIMEOUT)
            return
        if now < self._deadline:
            return
        if self._dialect.client_pings:
            self._close(PING_TIMEOUT)
            return
        self._out.append(Packet(PacketType.PING))
        if self._pong_due is None:
            self._pong_due = now + self._config.ping_timeout_ms / 1000
        interval = self._config.ping_interval_ms / 1000
        # On the clock: a timer that fired a little late does not push every later ping back.
        # One that fired very late (a blocked loop) starts over rather than pinging in a burst.
        self._deadline += interval
        if self._deadline <= now:
            self._deadline = now + interval

    def _quiet_allowance(self) -> float:
        config = self._config
        if self._dialect.client_pings:
            return (config.ping_interval_ms + config.ping_timeout_ms) / 1000
        return config.ping_interval_ms / 1000

    # -- Socket.IO -----------------------------------------------------------------------

    def _receive_message(self, data: str | bytes) -> None:
        if not self._config.socketio:
            self._events.append(MessageReceived(data))
            return
        try:
            packet = self._decoder.feed(data)
        except SocketIODecodeError as exc:
            self._fail(exc)
            return
        if packet is None:
            return
        kind = packet.type
        if kind is SIOType.CONNECT:
            self._on_connect(packet)
        elif kind is SIOType.DISCONNECT:
            if self._namespaces.pop(packet.namespace, False) is not False:
                self._events.append(
                    NamespaceDisconnected(packet.namespace, CLIENT_NAMESPACE_DISCONNECT)
                )
        elif packet.namespace not in self._namespaces:
            self._fail(SocketIODecodeError(f"{kind.name} for unjoined {packet.namespace!r}"))
        elif kind is SIOType.EVENT:
            name = packet.data[0]
            self._events.append(
                EventReceived(
                    packet.namespace,
                    name if isinstance(name, str) else str(name),
                    tuple(packet.data[1:]),
                    packet.id,
                )
            )
        elif kind is SIOType.ACK:
            assert packet.id is not None  # the decoder refuses ACK without id
            self._events.append(AckReceived(packet.namespace, packet.id, tuple(packet.data)))
        else:
            self._fail(SocketIODecodeError(f"{kind.name} is never sent by a client"))

    def _on_connect(self, packet: SIOPacket) -> None:
        # Socket.IO rev. 4 clients put their query in the namespace: "/admin?token=1"
        namespace, _, query = packet.namespace.partition("?")
        auth: dict[str, Any] | None = dict(parse_qsl(query)) if query else packet.data
        if namespace not in self._config.namespaces:
            if self._dialect.connect_error_is_object:
                self._queue(SIOPacket(SIOType.CONNECT_ERROR, namespace, {"message": "Invalid namespace"}))
            else:
                self._queue(SIOPacket(SIOType.CONNECT_ERROR, namespace, "Invalid namespace"))
            return
        if namespace not in self._namespaces:
            self._join(namespace, auth)

    def _join(self, namespace: str, auth: dict[str, Any] | None) -> None:
        socket_id = self._new_socket_id() if self._dialect.connect_reply_has_sid else None
        self._namespaces[namespace] = socket_id
        data = {"sid": socket_id} if socket_id is not None else None
        self._queue(SIOPacket(SIOType.CONNECT, namespace, data))
        self._events.append(Connected(namespace, auth, socket_id))

    def _queue(self, packet: SIOPacket) -> None:
        text, attachments = socketio.encode(packet)
        self._out.append("4" + text)
        for attachment in attachments:
            self._out.append(Packet(PacketType.MESSAGE, attachment))

    # -- output --------------------------------------------------------------------------

    def _require_joined(self, namespace: str) -> bool:
        if self.closed:
            return False
        if namespace not in self._namespaces:
            raise LocalProtocolError(f"namespace {namespace!r} is not joined")
        return True

    def send_event(self, namespace: str, name: str, *args: Any, ack: bool = False) -> int | None:
        """Queue an event; with ``ack`` return the id its ``AckReceived`` will carry.

        Bytes anywhere in ``args`` are sent as binary attachments. Ignored once closed.

        Raises:
            LocalProtocolError: the namespace is not joined, or the data cannot be encoded.
        """
        if not self._require_joined(namespace):
            return None
        ack_id = None
        if ack:
            ack_id = self._next_ack_id
            self._next_ack_id += 1
        self._queue(SIOPacket(SIOType.EVENT, namespace, [name, *args], ack_id))
        return ack_id

    def send_ack(self, namespace: str, ack_id: int, *args: Any) -> None:
        """Answer an ``EventReceived`` that carried ``ack_id``. Ignored once closed."""
        if self._require_joined(namespace):
            self._queue(SIOPacket(SIOType.ACK, namespace, list(args), ack_id))

    def send_message(self, data: str | bytes) -> None:
        """Queue a plain Engine.IO message (bytes: a binary one). Ignored once closed."""
        if not self.closed:
            self._out.append(Packet(PacketType.MESSAGE, data))

    def send_encoded(self, frame: str) -> None:
        """Queue a text packet encoded once for many sessions (``encode_broadcast``)."""
        if not self.closed:
            self._out.append(frame)

    def disconnect_namespace(self, namespace: str) -> None:
        """Remove the client from a namespace; socket.io clients do not reconnect after it."""
        if not self._require_joined(namespace):
            return
        del self._namespaces[namespace]
        self._queue(SIOPacket(SIOType.DISCONNECT, namespace))
        self._events.append(NamespaceDisconnected(namespace, SERVER_NAMESPACE_DISCONNECT))

    def close(self, reason: str = FORCED_CLOSE) -> None:
        """End the session: queue a close packet ``1``, then report ``Disconnected(reason)``.

        Write out ``data_to_send()``/``payload_to_send()`` before closing the transport. To stop
        clients from reconnecting, ``disconnect_namespace`` each namespace first.
        """
        if self.closed:
            return
        self._out.append(Packet(PacketType.CLOSE))
        self._close(reason)

    def abandon(self, reason: str) -> None:
        """End the session as a lost connection, with no close packet: report
        ``Disconnected(reason)`` and let the transport cut the socket.

        For a server going away (shutdown): every client reconnects by itself, to whichever
        server answers next. A close packet ``1`` would not do: python-socketio's client takes
        it as the server's wish and stays away. Packets already queued are still written; a
        pending poll is released with a noop (the client's next poll finds the session gone).
        """
        if self.closed:
            return
        if self._state is not State.WEBSOCKET:
            self._out.append(Packet(PacketType.NOOP))
        self._close(reason)

    def _fail(self, error: RemoteProtocolError) -> None:
        self._close(error.reason, error)

    def _close(self, reason: str, error: RemoteProtocolError | None = None) -> None:
        self._transition(Trigger.CLOSE)
        self._upgrade_deadline = None
        self._namespaces.clear()
        self._events.append(Disconnected(reason, error))

    def events_received(self) -> list[Event]:
        """Events since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    def packets_to_send(self) -> list[Outgoing]:
        """Queued packets (or pre-encoded text packets) since the last call."""
        out, self._out = self._out, []
        return out

    @property
    def has_data_to_send(self) -> bool:
        return bool(self._out)

    def data_to_send(self) -> list[str | bytes]:
        """Queued packets as websocket frames, one frame each."""
        encode = self._dialect.codec.encode_packet
        return [item if isinstance(item, str) else encode(item) for item in self.packets_to_send()]

    def payload_to_send(self, *, binary_ok: bool = True) -> str | bytes | None:
        """Queued packets as one polling response body, or ``None`` if nothing is queued.

        Args:
            binary_ok: ``False`` when the client asked for ``b64=1`` or polls with JSONP.
        """
        packets = self.packets_to_send()
        if not packets:
            return None
        return self._dialect.codec.encode_payload(packets, binary_ok=binary_ok)
