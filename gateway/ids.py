"""Identifiers: ObjectIds for entities and users, opaque random secrets, digests to store them.

An ObjectId is 12 bytes as 24 lowercase hex characters: 4 bytes of creation time in seconds,
5 random bytes fixed per process, and a 3-byte counter, so ids made by one process in one second
never collide and ids from many processes almost never do.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import secrets
import threading
import time

_PROCESS_RANDOM = os.urandom(5)
_counter = itertools.count(int.from_bytes(os.urandom(3), "big"))
_lock = threading.Lock()

OBJECT_ID = re.compile(r"[0-9a-f]{24}")


def object_id(now: float | None = None) -> str:
    seconds = int(time.time() if now is None else now)
    with _lock:
        count = next(_counter) & 0xFFFFFF
    return (
        seconds.to_bytes(4, "big") + _PROCESS_RANDOM + count.to_bytes(3, "big")
    ).hex()


def is_object_id(value: object) -> bool:
    return isinstance(value, str) and OBJECT_ID.fullmatch(value) is not None


def secret_token(prefix: str = "") -> str:
    """256 bits from the OS's CSPRNG, URL-safe."""
    return prefix + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """What we store instead of a secret: a dump of Redis reveals no usable credential.

    A plain SHA-256 is enough here (unlike passwords) because the secrets are 256 random bits.
    """
    return hashlib.sha256(secret.encode()).hexdigest()
