"""Resolving a hook target and checking every answer (the I/O half of gateway.hooks.ssrf).

The delivery connects to the address checked here (`Resolved.address`), never resolving the
name again, so a DNS answer that changes between check and connect (rebinding) can't reach a
private address.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

from gateway.hooks.ssrf import IPAddress, Target, TargetRefused, check_address, literal_address

RESOLVE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Resolved:
    target: Target
    address: IPAddress | None  # None: private targets allowed, let the HTTP client resolve


async def resolve(target: Target, *, allow_private: bool) -> Resolved:
    """Every A/AAAA answer must be public unless `allow_private`; the first one is pinned."""
    if allow_private:
        return Resolved(target, None)
    literal = literal_address(target.host)
    if literal is not None:
        check_address(literal)
        return Resolved(target, literal)
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM),
            RESOLVE_TIMEOUT_S)
    except (OSError, UnicodeError, asyncio.TimeoutError) as exc:
        raise TargetRefused(f"the host {target.host!r} does not resolve: "
                            f"{exc or type(exc).__name__}") from None
    addresses = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = literal_address(str(sockaddr[0]).split("%", 1)[0])
        if address is None:
            raise TargetRefused(f"the host {target.host!r} resolves to {sockaddr[0]!r}")
        check_address(address)
        addresses.append(address)
    if not addresses:
        raise TargetRefused(f"the host {target.host!r} has no addresses")
    return Resolved(target, addresses[0])
