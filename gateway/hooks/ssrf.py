"""Which hook targets may be called (contract §6). Pure: parsing and address rules, no I/O.

A target is refused when its URL is not plain http(s), or — unless private targets are allowed —
when any address its host resolves to is not a public unicast address: loopback, private,
link-local, shared (CGNAT), multicast, unspecified or reserved, in IPv4 or IPv6, IPv4-mapped
and NAT64-embedded IPv4 included. Resolution lives in gateway.hooks.resolver; it calls
`check_address` on every answer, at subscription and again right before each attempt.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
SCHEMES = {"http": 80, "https": 443}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Refused whatever this Python's ipaddress says (its tables changed between patch releases):
# IETF protocol assignments (192.0.0.8, the dummy address, reads as global on 3.11.7).
_ALSO_REFUSED = (ipaddress.ip_network("192.0.0.0/24"),)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(Exception):
    """The target URL or one of its addresses may not be called; the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    scheme: str
    host: str  # lowercase; an IPv6 literal without brackets
    port: int


def parse_target(url: object) -> Target:
    if not isinstance(url, str) or not url:
        raise TargetRefused("'target_url' must be a non-empty string")
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"'target_url' is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise TargetRefused("'target_url' must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"'target_url' is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise TargetRefused("'target_url' must be an http:// or https:// URL")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise TargetRefused("'target_url' has no host")
    if port == 0:
        raise TargetRefused("'target_url' has port 0")
    return Target(url=url, scheme=scheme, host=host, port=port or SCHEMES[scheme])


def literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_address(address: IPAddress) -> None:
    """Raise TargetRefused unless `address` is a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (
            ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None)
        if embedded is not None:
            # IPv4-mapped, 6to4 or NAT64 (DNS64 gives every IPv4 host such an address on an
            # IPv6-only network): the IPv4 address inside is what gets reached.
            check_address(embedded)
            return
    reason = _reason(address)
    if reason:
        raise TargetRefused(f"the target resolves to {address}, which is {reason}; hooks may only "
                            "call public addresses (GATEWAY_HOOKS_ALLOW_PRIVATE=1 allows others)")


def _reason(address: IPAddress) -> str | None:
    for name, flag in (("loopback", address.is_loopback), ("unspecified", address.is_unspecified),
                       ("link-local", address.is_link_local), ("multicast", address.is_multicast),
                       ("private", address.is_private), ("reserved", address.is_reserved)):
        if flag:
            return name
    if any(address in network for network in _ALSO_REFUSED):
        return "reserved"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "site-local"
    if not address.is_global:
        return "non-global"
    return None
