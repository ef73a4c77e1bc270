"""The SSRF rules (gateway.hooks.ssrf): URL parsing and which addresses a hook may call."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.hooks.ssrf import TargetRefused, check_address, parse_target


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.255.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.0.1",
    "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1", "239.255.255.250",
    "255.255.255.255", "240.0.0.1", "192.0.0.8", "198.18.0.1", "192.0.2.1",
    "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "fec0::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",  # IPv4-mapped
    "64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b::a9fe:a9fe",  # NAT64 of private IPv4
    "2002:7f00:1::", "2002:a00:1::", "2002:c0a8:101::1",  # 6to4 of private IPv4
    "2001:db8::1", "100::1",  # documentation, discard-only
])
def test_non_public_addresses_are_refused(address: str) -> None:
    with pytest.raises(TargetRefused, match="public addresses"):
        check_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", [
    "93.184.216.34", "8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1",
    "2606:4700:4700::1111", "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",  # embedding a public IPv4
])
def test_public_addresses_are_allowed(address: str) -> None:
    check_address(ipaddress.ip_address(address))


def test_the_refusal_names_the_address_and_the_reason() -> None:
    with pytest.raises(TargetRefused) as caught:
        check_address(ipaddress.ip_address("::ffff:10.0.0.1"))
    assert "10.0.0.1" in str(caught.value) and "private" in str(caught.value)


@pytest.mark.parametrize(("url", "scheme", "host", "port"), [
    ("http://example.com/hook", "http", "example.com", 80),
    ("https://Example.COM./x?y=1", "https", "example.com", 443),
    ("HTTP://example.com:8080", "http", "example.com", 8080),
    ("http://[2606:4700::1]:81/", "http", "2606:4700::1", 81),
    ("https://user:pw@hooks.example.com/a", "https", "hooks.example.com", 443),
])
def test_targets_parse_to_scheme_host_and_port(url: str, scheme: str, host: str,
                                               port: int) -> None:
    target = parse_target(url)
    assert (target.url, target.scheme, target.host, target.port) == (url, scheme, host, port)


@pytest.mark.parametrize("url", [
    None, 42, "", "example.com/hook", "ftp://example.com/", "file:///etc/passwd",
    "javascript:alert(1)", "http://", "http://exa mple.com/", "http://example.com/\r\nx: y",
    "http://example.com:0/", "http://example.com:99999/", "http://[::1/", "https://" + "a" * 2100,
])
def test_malformed_targets_are_refused(url: object) -> None:
    with pytest.raises(TargetRefused, match="target_url"):
        parse_target(url)
