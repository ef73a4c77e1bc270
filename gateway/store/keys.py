"""Every Redis key and channel the gateway uses, in one place.

All names start with ``gw:`` so a shared Redis can host other data. Store names are restricted
to ``[A-Za-z0-9_-]`` by the API, so they are safe inside key names.
"""

from __future__ import annotations

PREFIX = "gw:"

# Users, credentials and sessions
USERS = PREFIX + "users"  # hash: user id -> msgpack user record (with password hash)
USER_LOGINS = PREFIX + "user-logins"  # hash: login -> user id


def session(sid_digest: str) -> str:
    """A cookie session, keyed by the SHA-256 of its id: a leaked dump reveals no usable sid."""
    return f"{PREFIX}session:{sid_digest}"


def user_sessions(user_id: str) -> str:
    """Sorted set of a user's session digests, scored by expiry (ms): what to revoke when the
    user's password changes or the user is disabled or deleted. Pruned of expired members on
    every add; the key itself expires with its last member."""
    return f"{PREFIX}user-sessions:{user_id}"


def user_tokens(user_id: str) -> str:
    """Sorted set of a user's token digests (login, API-key access and one-time tokens),
    scored by expiry (ms), kept like `user_sessions`."""
    return f"{PREFIX}user-tokens:{user_id}"


def token(token_digest: str) -> str:
    """A bearer token (login token, API-key access token or one-time token), by SHA-256."""
    return f"{PREFIX}token:{token_digest}"


APIKEYS = PREFIX + "apikeys"  # hash: key id -> msgpack {user, scope, digest, createdAt}


def user_apikeys(user_id: str) -> str:
    return f"{PREFIX}user-apikeys:{user_id}"


def apikey_tokens(key_id: str) -> str:
    """Sorted set of the access-token digests exchanged for one API key, scored by expiry (ms):
    deleting the key deletes them."""
    return f"{PREFIX}apikey-tokens:{key_id}"


def ratelimit(user_id: str, window: str) -> str:
    return f"{PREFIX}rl:{user_id}:{window}"


def login_failures(address: str) -> str:
    return f"{PREFIX}auth-failures:{address}"


def ban(address: str) -> str:
    return f"{PREFIX}ban:{address}"


# Entities and events
def entity(store: str, entity_id: str) -> str:
    return f"{PREFIX}e:{store}:{entity_id}"


def entity_index(store: str) -> str:
    """Sorted set of entity ids by creation time (ms): paging without loading the store."""
    return f"{PREFIX}ix:{store}"


def events_channel(store: str) -> str:
    """Pub/sub: the store's events, for realtime fan-out. One channel per store, so a process
    subscribes to the stores its connections watch and its fan-in is what its clients want."""
    return f"{PREFIX}events:{store}"


EVENTS_CHANNEL_PREFIX = PREFIX + "events:"


def history(store: str) -> str:
    """Stream of the store's recent events (GATEWAY_HISTORY_SIZE), for `since` recovery."""
    return f"{PREFIX}history:{store}"


CONTROL_CHANNEL = PREFIX + "control"  # pub/sub: session revocations and other signals
HOOK_INBOX = PREFIX + "hooks:inbox"  # stream: events awaiting hook matching (durable)
HOOK_COUNT = PREFIX + "hooks:count"  # number of hooks; writes skip HOOK_INBOX when absent

# REST hooks (gateway.hooks): subscriptions, their indexes, the delivery queue and log
HOOKS = PREFIX + "hooks"  # hash: hook id -> msgpack hook record (with its secret)
HOOK_JOBS = PREFIX + "hooks:jobs"  # stream: delivery jobs (field d = delivery id), group "delivery"
HOOK_DELAYED = PREFIX + "hooks:delayed"  # sorted set: delivery id by due time (ms), for retries


def user_hooks(user_id: str) -> str:
    """Set of the hook ids a user owns."""
    return f"{PREFIX}user-hooks:{user_id}"


def hook_index(store: str, event: str) -> str:
    """Set of hook ids subscribed to `event` (a type, `<prefix>.*` or `*`) on `store` (or `*`)."""
    return f"{PREFIX}hooks:ix:{store}:{event}"


def hook_log(hook_id: str) -> str:
    """Sorted set of a hook's delivery ids by creation time (ms): the bounded delivery log."""
    return f"{PREFIX}hook-log:{hook_id}"


def hook_delivery(delivery_id: str) -> str:
    """Hash: one delivery (hook, event, body, status, tries, next)."""
    return f"{PREFIX}hook-delivery:{delivery_id}"


def hook_attempts(delivery_id: str) -> str:
    """List of a delivery's attempts, msgpack {at, statusCode, error, durationMs}."""
    return f"{PREFIX}hook-attempts:{delivery_id}"
