"""Everything that differs between ``EIO=3`` and ``EIO=4`` connections, in one table.

A connection picks its ``Dialect`` once, from the ``EIO`` query parameter, and hands it to the
``Session``; nothing else looks at the version.

=============================  ===========================  ===============================
                               EIO=3 (Socket.IO rev. 4,     EIO=4 (Socket.IO rev. 5,
                               socket.io-client 1.x/2.x)    socket.io-client 3+)
=============================  ===========================  ===============================
codec                          ``engineio_v3``              ``engineio_v4``
who pings                      client sends ``2``, server   server sends ``2`` every
                               answers ``3`` at once        pingInterval, client answers
dead after                     nothing received for         no ``3`` within pingTimeout of
                               pingInterval + pingTimeout   a ping
connection to ``/``            implicit: server sends       client sends ``40[{auth}]``,
                               ``40`` right after open      server answers ``40{"sid":…}``
other namespaces               ``40/ns?query,`` →           ``40/ns,{auth}`` →
                               ``40/ns,``                   ``40/ns,{"sid":…}``
refusal                        ``44/ns,"message"``          ``44/ns,{"message":…}``
=============================  ===========================  ===============================
"""

from __future__ import annotations

from dataclasses import dataclass

from . import engineio_v3, engineio_v4
from .engineio import Codec
from .errors import LocalProtocolError

__all__ = ["DIALECTS", "Dialect", "dialect_for"]


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one protocol generation behaves; see the module table."""

    eio: int
    codec: Codec
    client_pings: bool
    implicit_root_namespace: bool
    connect_reply_has_sid: bool
    connect_error_is_object: bool


DIALECTS: dict[int, Dialect] = {
    3: Dialect(
        eio=3,
        codec=engineio_v3,
        client_pings=True,
        implicit_root_namespace=True,
        connect_reply_has_sid=False,
        connect_error_is_object=False,
    ),
    4: Dialect(
        eio=4,
        codec=engineio_v4,
        client_pings=False,
        implicit_root_namespace=False,
        connect_reply_has_sid=True,
        connect_error_is_object=True,
    ),
}


def dialect_for(eio: str | int | None) -> Dialect:
    """The dialect for an ``EIO`` query value (``"3"`` or ``"4"``).

    Raises:
        LocalProtocolError: any other value; the HTTP layer answers 400 before that.
    """
    try:
        return DIALECTS[int(eio)]  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError):
        raise LocalProtocolError(f"unsupported Engine.IO version {eio!r}") from None
