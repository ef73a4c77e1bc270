"""The Session state machine: handshake, namespaces, events, acks, heartbeat, upgrade, close."""

from __future__ import annotations

import pytest

from gateway.protocol import (
    AckReceived,
    Connected,
    Disconnected,
    EventReceived,
    HeartbeatError,
    LocalProtocolError,
    MessageReceived,
    NamespaceDisconnected,
    Session,
    SessionConfig,
    SocketIODecodeError,
    State,
    UpgradeAborted,
    Upgraded,
    dialect_for,
    encode_broadcast,
)
from gateway.protocol.states import TRANSITIONS

CONFIG = SessionConfig(
    ping_interval_ms=25_000,
    ping_timeout_ms=60_000,
    namespaces=frozenset({"/", "/admin"}),
)
OPEN_V3_WS = '0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":60000}'
OPEN_V4_WS = '0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":60000,"maxPayload":1000000}'


def make(eio: int, transport: str = "websocket", now: float = 100.0) -> Session:
    ids = iter(f"S{n}" for n in range(1, 100))
    return Session(
        dialect_for(eio), "abc", transport=transport, now=now, config=CONFIG,
        new_socket_id=lambda: next(ids),
    )


def opened(eio: int, transport: str = "websocket", now: float = 100.0) -> Session:
    """A session past its handshake (and, for EIO=4, joined to /)."""
    session = make(eio, transport, now)
    if eio == 4:
        session.receive_data("40", now=now)
    session.data_to_send()
    session.events_received()
    return session


def state_of(session: Session) -> State:
    """Read the state afresh (mypy would keep an earlier ``session.state`` narrowing)."""
    return session.state


# -- handshake and namespaces ------------------------------------------------------------


def test_v3_websocket_sends_open_then_implicit_root_connect() -> None:
    session = make(3)
    assert session.data_to_send() == [OPEN_V3_WS, "40"]
    assert session.events_received() == [Connected("/", None, None)]
    assert session.namespaces == frozenset({"/"})


def test_v3_polling_open_and_connect_share_one_payload_advertising_websocket() -> None:
    session = make(3, "polling")
    assert session.payload_to_send() == (
        '80:0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":60000}2:40'
    )
    assert session.payload_to_send() is None


def test_v4_waits_for_connect_and_answers_with_socket_id() -> None:
    session = make(4)
    assert session.data_to_send() == [OPEN_V4_WS]
    assert session.events_received() == []
    session.receive_data('40{"token":"t1"}', now=101)
    assert session.data_to_send() == ['40{"sid":"S1"}']
    assert session.events_received() == [Connected("/", {"token": "t1"}, "S1")]
    assert session.socket_id("/") == "S1"


def test_v4_polling_open_advertises_websocket_and_max_payload() -> None:
    assert make(4, "polling").payload_to_send() == (
        '0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,'
        '"pingTimeout":60000,"maxPayload":1000000}'
    )


def test_v4_custom_namespace_connect_reply() -> None:
    session = opened(4)
    session.receive_data("40/admin,", now=101)
    assert session.data_to_send() == ['40/admin,{"sid":"S2"}']
    assert session.events_received() == [Connected("/admin", None, "S2")]


def test_v3_custom_namespace_connect_passes_query_as_auth() -> None:
    session = opened(3)
    session.receive_data("40/admin?token=abc&x=1,", now=101)
    assert session.data_to_send() == ["40/admin,"]
    assert session.events_received() == [Connected("/admin", {"token": "abc", "x": "1"}, None)]


def test_unknown_namespace_is_refused_with_string_in_v3() -> None:
    session = opened(3)
    session.receive_data("40/nope,", now=101)
    assert session.data_to_send() == ['44/nope,"Invalid namespace"']
    assert session.events_received() == []
    assert not session.closed


def test_unknown_namespace_is_refused_with_message_object_in_v4() -> None:
    session = opened(4)
    session.receive_data("40/nope,", now=101)
    assert session.data_to_send() == ['44/nope,{"message":"Invalid namespace"}']


def test_repeated_connect_to_a_joined_namespace_is_ignored() -> None:
    session = opened(4)
    session.receive_data("40", now=101)
    assert session.data_to_send() == []
    assert session.events_received() == []


def test_client_namespace_disconnect() -> None:
    session = opened(3)
    session.receive_data("41", now=101)
    assert session.events_received() == [NamespaceDisconnected("/", "client namespace disconnect")]
    assert session.namespaces == frozenset()
    assert not session.closed


def test_server_namespace_disconnect() -> None:
    session = opened(4)
    session.disconnect_namespace("/")
    assert session.data_to_send() == ["41"]
    assert session.events_received() == [NamespaceDisconnected("/", "server namespace disconnect")]


def test_event_for_a_namespace_not_joined_closes_with_parse_error() -> None:
    session = make(4)
    session.receive_data('42["x"]', now=101)
    [event] = session.events_received()
    assert isinstance(event, Disconnected) and event.reason == "parse error"
    assert isinstance(event.error, SocketIODecodeError)


# -- events and acks ---------------------------------------------------------------------


@pytest.mark.parametrize("eio", [3, 4])
def test_client_event_with_ack_id_and_server_ack(eio: int) -> None:
    session = opened(eio)
    session.receive_data('421["subscribe",{"store":"orders"}]', now=101)
    assert session.events_received() == [EventReceived("/", "subscribe", ({"store": "orders"},), 1)]
    session.send_ack("/", 1, {"success": True})
    assert session.data_to_send() == ['431[{"success":true}]']


@pytest.mark.parametrize("eio", [3, 4])
def test_server_event_wire_format(eio: int) -> None:
    session = opened(eio)
    session.receive_data("40/admin,", now=101)
    session.data_to_send()
    assert session.send_event("/", "entity.created", {"id": 1}) is None
    session.send_event("/admin", "hey", "Jude")
    assert session.data_to_send() == ['42["entity.created",{"id":1}]', '42/admin,["hey","Jude"]']


def test_server_event_with_ack_numbers_acks_and_reports_the_answer() -> None:
    session = opened(4)
    assert session.send_event("/", "a", ack=True) == 0
    assert session.send_event("/", "b", ack=True) == 1
    assert session.data_to_send() == ['420["a"]', '421["b"]']
    session.receive_data('431["ok"]', now=101)
    assert session.events_received() == [AckReceived("/", 1, ("ok",))]


def test_sending_to_a_namespace_not_joined_is_local_misuse() -> None:
    session = opened(4)
    with pytest.raises(LocalProtocolError):
        session.send_event("/admin", "x")


def test_broadcast_frame_is_written_as_the_same_string_object() -> None:
    frame = encode_broadcast("/", "entity.updated", {"id": "1"})
    sessions = [opened(3), opened(4)]
    for session in sessions:
        session.send_encoded(frame)
    assert all(s.data_to_send()[0] is frame for s in sessions)


def test_broadcast_frame_in_polling_payloads_of_both_versions() -> None:
    frame = encode_broadcast("/", "e", "€")
    v3, v4 = opened(3, "polling"), opened(4, "polling")
    v3.send_encoded(frame)
    v4.send_encoded(frame)
    v4.send_encoded(frame)
    assert v3.payload_to_send() == '11:42["e","€"]'
    assert v4.payload_to_send() == '42["e","€"]\x1e42["e","€"]'


def test_binary_event_from_the_client_is_reassembled() -> None:
    session = opened(4)
    session.receive_data('451-2["upload",{"_placeholder":true,"num":0}]', now=101)
    assert session.events_received() == []
    session.receive_data(b"\x01\x02", now=101)
    assert session.events_received() == [EventReceived("/", "upload", (b"\x01\x02",), 2)]


def test_v3_binary_attachment_arrives_with_its_type_byte() -> None:
    session = opened(3)
    session.receive_data('451-["upload",{"_placeholder":true,"num":0}]', now=101)
    session.receive_data(b"\x04\x01\x02", now=101)
    assert session.events_received() == [EventReceived("/", "upload", (b"\x01\x02",), None)]


def test_binary_server_event_over_websocket_and_b64_polling() -> None:
    ws = opened(3)
    ws.send_event("/", "file", b"\x01")
    assert ws.data_to_send() == ['451-["file",{"_placeholder":true,"num":0}]', b"\x04\x01"]
    polling = opened(3, "polling")
    polling.send_event("/", "file", b"\x01")
    assert polling.payload_to_send(binary_ok=False) == (
        '42:451-["file",{"_placeholder":true,"num":0}]6:b4AQ=='
    )


def test_v4_polling_payload_carries_binary_as_base64() -> None:
    session = opened(4, "polling")
    session.send_event("/", "file", b"\x01")
    assert session.payload_to_send() == '451-["file",{"_placeholder":true,"num":0}]\x1ebAQ=='


def test_polling_payload_with_several_packets() -> None:
    session = opened(4, "polling")
    session.receive_payload('42["a"]\x1e42["b"]', now=101)
    assert [e.name for e in session.events_received() if isinstance(e, EventReceived)] == ["a", "b"]


# -- heartbeat ---------------------------------------------------------------------------


def test_v3_answers_ping_at_once_with_the_same_data() -> None:
    session = opened(3)
    session.receive_data("2", now=110)
    session.receive_data("2probe", now=111)
    assert session.data_to_send() == ["3", "3probe"]


def test_v3_closes_after_interval_plus_timeout_of_silence() -> None:
    session = opened(3, now=100)
    assert session.next_deadline() == 185.0
    session.check_timeouts(184.9)
    assert not session.closed
    session.check_timeouts(185.0)
    assert session.events_received() == [Disconnected("ping timeout")]
    assert session.next_deadline() is None


def test_v3_any_packet_from_the_client_postpones_the_deadline() -> None:
    session = opened(3, now=100)
    session.receive_data("2", now=150)
    assert session.next_deadline() == 235.0
    session.receive_data('42["x"]', now=200)
    assert session.next_deadline() == 285.0
    session.check_timeouts(284)
    assert not session.closed


def test_v3_never_sends_pings() -> None:
    session = opened(3, now=100)
    session.check_timeouts(150)
    assert session.data_to_send() == []


def test_v4_pings_every_interval_and_expects_pong_within_timeout() -> None:
    session = opened(4, now=100)
    assert session.next_deadline() == 125.0
    session.check_timeouts(124)
    assert session.data_to_send() == []
    session.check_timeouts(125)
    assert session.data_to_send() == ["2"]
    assert session.next_deadline() == 150.0  # the next ping; the pong is due at 185
    session.receive_data("3", now=130)
    assert session.next_deadline() == 150.0  # on the clock, not pingInterval after the pong
    session.check_timeouts(150)
    assert session.data_to_send() == ["2"]
    session.check_timeouts(209.9)
    assert not session.closed
    session.check_timeouts(210)
    assert session.events_received() == [Disconnected("ping timeout")]


def test_v4_messages_do_not_replace_the_pong() -> None:
    session = opened(4, now=100)
    session.check_timeouts(125)
    session.receive_data('42["x"]', now=150)
    session.check_timeouts(185)
    assert session.closed


def test_v4_client_ping_is_a_transport_error() -> None:
    session = opened(4)
    session.receive_data("2", now=101)
    [event] = session.events_received()
    assert isinstance(event, Disconnected) and event.reason == "transport error"
    assert isinstance(event.error, HeartbeatError)


def test_v3_client_pong_is_a_transport_error() -> None:
    session = opened(3)
    session.receive_data("3", now=101)
    [event] = session.events_received()
    assert isinstance(event, Disconnected) and event.reason == "transport error"


# -- upgrade -----------------------------------------------------------------------------


@pytest.mark.parametrize("eio", [3, 4])
def test_polling_to_websocket_upgrade(eio: int) -> None:
    session = opened(eio, "polling")
    session.send_event("/", "queued")
    session.start_upgrade(now=101)
    assert session.state is State.PROBING
    assert session.receive_upgrade_data("2probe", now=101) == ["3probe"]
    # the pending GET is released with whatever was queued, ending with a noop
    payload = session.payload_to_send()
    assert isinstance(payload, str) and payload.endswith("6")
    session.send_event("/", "during upgrade")
    assert session.receive_upgrade_data("5", now=102) == []
    assert state_of(session) is State.WEBSOCKET
    assert session.events_received() == [Upgraded()]
    assert session.data_to_send() == ['42["during upgrade"]']


def test_noop_left_for_a_get_that_never_came_is_not_sent_on_the_websocket() -> None:
    session = opened(4, "polling")
    session.start_upgrade(now=101)
    session.receive_upgrade_data("2probe", now=101)
    session.send_event("/", "during upgrade")
    session.receive_upgrade_data("5", now=102)
    assert session.data_to_send() == ['42["during upgrade"]']


def test_upgrade_times_out_and_polling_continues() -> None:
    session = opened(4, "polling", now=100)
    session.start_upgrade(now=101)
    assert session.next_deadline() == 111.0
    session.check_timeouts(111)
    assert session.state is State.POLLING
    assert session.events_received() == [UpgradeAborted("upgrade timeout")]


def test_unexpected_packet_on_the_probe_aborts_the_upgrade_only() -> None:
    session = opened(3, "polling")
    session.start_upgrade(now=101)
    assert session.receive_upgrade_data('42["x"]', now=101) == []
    assert session.state is State.POLLING
    assert session.events_received() == [UpgradeAborted("unexpected message packet during upgrade")]


def test_probe_websocket_closing_aborts_the_upgrade() -> None:
    session = opened(3, "polling")
    session.start_upgrade(now=101)
    session.abort_upgrade()
    assert session.events_received() == [UpgradeAborted("transport close")]


def test_upgrading_a_websocket_session_is_local_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        opened(4).start_upgrade(now=101)
    with pytest.raises(LocalProtocolError):
        opened(4).receive_upgrade_data("2probe", now=101)


def test_websocket_only_sessions_advertise_no_upgrades() -> None:
    assert '"upgrades":[]' in str(make(4).data_to_send()[0])


# -- closing -----------------------------------------------------------------------------


def test_client_close_packet_is_transport_close() -> None:
    session = opened(4, "polling")
    session.receive_payload("1", now=101)
    assert session.events_received() == [Disconnected("transport close")]
    assert session.state is State.CLOSED


def test_client_close_over_polling_releases_the_pending_get_with_a_noop() -> None:
    session = opened(3, "polling")
    session.receive_payload("1:1", now=101)
    assert session.payload_to_send() == "1:6"


def test_client_close_over_websocket_queues_nothing() -> None:
    session = opened(3)
    session.receive_data("1", now=101)
    assert session.data_to_send() == []


def test_server_close_queues_close_packet_and_reports_forced_close() -> None:
    session = opened(3, "polling")
    session.close()
    assert session.payload_to_send() == "1:1"
    assert session.events_received() == [Disconnected("forced close")]


def test_transport_closed_and_transport_error() -> None:
    a, b = opened(3), opened(4)
    a.transport_closed()
    b.transport_closed(error=True)
    assert a.events_received() == [Disconnected("transport close")]
    assert b.events_received() == [Disconnected("transport error")]


@pytest.mark.parametrize("frame", ["", "9", 'x', b"", "4", '42["x"', "4" + "5-[]"])
def test_malformed_frames_close_with_parse_error(frame: str | bytes) -> None:
    session = opened(3)
    session.receive_data(frame, now=101)
    [event] = session.events_received()
    assert isinstance(event, Disconnected) and event.reason == "parse error"
    assert event.error is not None


def test_malformed_polling_payload_closes_with_parse_error() -> None:
    session = opened(3, "polling")
    session.receive_payload("5:4", now=101)
    [event] = session.events_received()
    assert isinstance(event, Disconnected) and event.reason == "parse error"


def test_closed_session_ignores_input_and_sends() -> None:
    session = opened(4)
    session.close()
    session.data_to_send()
    session.events_received()
    session.receive_data('42["x"]', now=101)
    session.send_encoded('42["y"]')
    session.send_event("/", "z")
    session.close()
    session.check_timeouts(10_000)
    assert session.events_received() == []
    assert session.data_to_send() == []


def test_every_state_can_close_and_closed_is_final() -> None:
    sources = {state for state, _ in TRANSITIONS}
    assert State.CLOSED not in sources
    assert sources == {State.POLLING, State.PROBING, State.WEBSOCKET}


def test_sessions_use_slots_to_stay_small() -> None:
    session = opened(4)
    assert not hasattr(session, "__dict__")


def test_unsupported_eio_is_refused() -> None:
    for value in ("2", "5", None, "x"):
        with pytest.raises(LocalProtocolError):
            dialect_for(value)


# -- plain Engine.IO ----------------------------------------------------------------------

PLAIN = SessionConfig(ping_interval_ms=300, ping_timeout_ms=200, socketio=False)


def test_plain_engineio_v3_polling_open_has_no_socketio_connect() -> None:
    session = Session(dialect_for(3), "abc", transport="polling", now=0, config=PLAIN)
    assert session.payload_to_send(binary_ok=False) == (
        '76:0{"sid":"abc","upgrades":["websocket"],"pingInterval":300,"pingTimeout":200}'
    )


@pytest.mark.parametrize("eio", [3, 4])
def test_plain_engineio_messages_are_reported_and_sent_raw(eio: int) -> None:
    session = Session(dialect_for(eio), "abc", transport="websocket", now=0, config=PLAIN)
    session.data_to_send()
    session.receive_data("4hello", now=0)
    session.receive_data("4abc", now=0)  # not Socket.IO, and need not be
    assert session.events_received() == [MessageReceived("hello"), MessageReceived("abc")]
    session.send_message("hello")
    session.send_message(b"\x01\x02")
    binary = b"\x04\x01\x02" if eio == 3 else b"\x01\x02"
    assert session.data_to_send() == ["4hello", binary]
