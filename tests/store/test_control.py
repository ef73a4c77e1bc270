"""Control-channel messages: every kind survives encode/decode; unknown ones are ignored."""

from __future__ import annotations

import pytest

from gateway import codec
from gateway.store import control


@pytest.mark.parametrize("message", [
    control.CredentialEnded("session", "ab" * 32),
    control.CredentialEnded("token", "cd" * 32),
    control.ApiKeyDeleted("0123456789abcdef"),
    control.UserChanged("u" * 24, ("staff", "eu"), ("admin",), ended=False),
    control.UserChanged("u" * 24, (), (), ended=True),
])
def test_round_trip(message: control.ControlMessage) -> None:
    assert control.decode(control.encode(message)) == message


def test_the_first_releases_session_revocation_is_understood() -> None:
    assert control.decode(codec.pack({"revoke": "ef" * 32})) == control.CredentialEnded("session", "ef" * 32)


@pytest.mark.parametrize("raw", [codec.pack({"t": "future-thing"}), codec.pack([1, 2]),
                                 codec.pack({"t": "credential", "k": "cookie", "d": "x"})])
def test_unknown_messages_are_ignored(raw: bytes) -> None:
    assert control.decode(raw) is None
