"""The websocket transport: pumps frames between an ASGI websocket and a Connection.

Two loops per socket: the reader feeds frames to the session; the writer sleeps on the
connection's `wake` and writes whatever the session queued, and closes the socket once the
session is over. Nothing here knows the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from starlette.types import Receive, Send

from gateway.protocol import State
from gateway.realtime.carrier import Carrier


async def pump(conn: Carrier, receive: Receive, send: Send) -> None:
    """Run an established websocket connection until either side closes."""
    writer = asyncio.create_task(_write(conn, send))
    try:
        await _read(conn, receive)
    finally:
        conn.wake.set()
        with contextlib.suppress(asyncio.TimeoutError, Exception):
            await asyncio.wait_for(writer, timeout=2)
        if not writer.done():
            writer.cancel()
    with contextlib.suppress(Exception):
        await send({"type": "websocket.close", "code": 1000})


async def _read(conn: Carrier, receive: Receive) -> None:
    session = conn.session
    while not conn.closed:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.receive":
            data = message.get("text")
            session.receive_data(data if data is not None else message.get("bytes") or b"",
                                 now=time.monotonic())
            conn.handle_events()
        elif kind == "websocket.disconnect":
            session.transport_closed()
            conn.handle_events()
            return


async def _write(conn: Carrier, send: Send) -> None:
    session = conn.session
    try:
        while True:
            await conn.wake.wait()
            conn.wake.clear()
            frames = session.data_to_send()
            conn.drained()
            for frame in frames:
                if isinstance(frame, str):
                    await send({"type": "websocket.send", "text": frame})
                else:
                    await send({"type": "websocket.send", "bytes": frame})
            if conn.closed:
                # a server-side close (ping timeout, parse error, close()) must end the socket
                # too: the reader would otherwise wait for the client's next frame
                await send({"type": "websocket.close", "code": 1000})
                return
    except Exception:  # the peer went away mid-write
        session.transport_closed(error=True)
        conn.handle_events()


async def upgrade(conn: Carrier, receive: Receive, send: Send,
                  on_start: Callable[[], None] | None = None) -> None:
    """A websocket for a polling session: answer the probe, wait for `5`, then take over.

    `on_start` runs once the upgrade has begun (its timeout may be the session's next deadline).
    """
    session = conn.session
    session.start_upgrade(now=time.monotonic())
    if on_start is not None:
        on_start()
    while session.state is State.PROBING:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            session.abort_upgrade()
            conn.handle_events()
            return
        data = message.get("text")
        replies = session.receive_upgrade_data(
            data if data is not None else message.get("bytes") or b"", now=time.monotonic())
        conn.handle_events()  # wakes the pending GET so it returns the noop
        for reply in replies:
            if isinstance(reply, str):
                await send({"type": "websocket.send", "text": reply})
            else:
                await send({"type": "websocket.send", "bytes": reply})
    if session.state is State.WEBSOCKET:
        await pump(conn, receive, send)
    else:
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": 1000})
