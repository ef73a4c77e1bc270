"""Password hashing: argon2id, slow and salted, run off the event loop."""

from __future__ import annotations

import asyncio
import hashlib

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# 64 MiB, 3 passes: argon2-cffi's RFC 9106 "low memory" profile, ~50 ms a hash on one core.
_hasher = PasswordHasher()

# A hash of nothing anyone knows, verified against when the login is unknown, so a failed
# login takes as long whether or not the login exists.
_DUMMY_HASH = _hasher.hash("gateway: no such user")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    def verify() -> bool:
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


def hash_fingerprint(password_hash: str) -> str:
    """Names a password hash without revealing it: a connection opened with Basic remembers
    it, so a process that missed the news of a new password still finds out (a new hash)."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:32]
