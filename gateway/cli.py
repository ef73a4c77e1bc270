"""The `gateway` command: parse → settings → run. Nothing else lives here."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from gateway import __version__, logs
from gateway.exceptions import ConfigError
from gateway.settings import Settings
from gateway.store.redis import Redis, connect

log = logging.getLogger("gateway")

DESCRIPTION = """\
gateway: a realtime Socket.IO gateway and signed webhook relay over Redis.

Every setting is a GATEWAY_* environment variable (see README.md); the flags below override
them. With GATEWAY_REDIS_URL empty, an embedded Redis is started and persisted under
GATEWAY_DATA_DIR (default ./.gateway).
"""

EPILOG = """\
examples:
  gateway serve --port 8000
  gateway users create alice --password s3cret --groups staff,eu
  gateway users create root --password s3cret --admin
  gateway apikeys create alice --scope read
  GATEWAY_REDIS_URL=redis://localhost:6379/0 gateway worker
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default: INFO")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve", help="serve HTTP, Socket.IO and (unless GATEWAY_HOOKS_WORKER=off) hook deliveries",
        description="Serve the REST API, the Socket.IO endpoint /socket.io/ and, by default, "
                    "deliver REST hooks in the same process.")
    serve.add_argument("--host", help="listen address (GATEWAY_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (GATEWAY_PORT or PORT, default 8000)")
    serve.add_argument("--redis-url", help="Redis URL (GATEWAY_REDIS_URL; empty: embedded)")

    worker = commands.add_parser(
        "worker", help="deliver REST hooks only (for scaled-out deployments)",
        description="Run only the hook delivery worker. Any number may share one Redis.")
    worker.add_argument("--redis-url", help="Redis URL (GATEWAY_REDIS_URL; empty: embedded)")

    users = commands.add_parser("users", help="manage users").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    create_user = users.add_parser("create", help="create a user",
                                   description="Create a user; the password is stored as an "
                                               "argon2id hash.")
    create_user.add_argument("login")
    create_user.add_argument("--password", required=True)
    create_user.add_argument("--admin", action="store_true", help="role admin: may do everything")
    create_user.add_argument("--readonly", action="store_true", help="role readonly: every write is 403")
    create_user.add_argument("--publisher", action="store_true",
                             help="role publisher: may POST /api/v1/events")
    create_user.add_argument("--groups", default="", help="comma-separated groups, e.g. staff,eu")

    apikeys = commands.add_parser("apikeys", help="manage API keys").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    create_key = apikeys.add_parser(
        "create", help="create an API key for a user and print it once",
        description="Create an API key. Exchange it for a 900 s bearer token with "
                    "GET /auth/token and the header 'Authorization: <key>'.")
    create_key.add_argument("login")
    create_key.add_argument("--scope", default="read write", choices=["read", "read write"],
                            help='default: "read write"')
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level)
    try:
        settings = apply_flags(Settings.from_env(), args)
        if args.command == "serve":
            from gateway.server import serve
            return serve(settings)
        if args.command == "worker":
            from gateway.server import run_worker
            return run_worker(settings)
        if args.command == "users":
            return with_redis(settings, lambda redis: create_user(redis, args))
        if args.command == "apikeys":
            return with_redis(settings, lambda redis: create_apikey(redis, args))
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    return 0


def apply_flags(settings: Settings, args: argparse.Namespace) -> Settings:
    http = settings.http
    if getattr(args, "host", None):
        http = dataclasses.replace(http, host=args.host)
    if getattr(args, "port", None) is not None:
        http = dataclasses.replace(http, port=args.port)
    redis = settings.redis
    if getattr(args, "redis_url", None):
        redis = dataclasses.replace(redis, url=args.redis_url)
    return dataclasses.replace(settings, http=http, redis=redis)


def with_redis(settings: Settings, action: Callable[[Redis], Awaitable[int]]) -> int:
    async def run() -> int:
        redis, embedded = await connect(settings.redis)
        try:
            return await action(redis)
        finally:
            await redis.aclose()
            if embedded is not None:
                await asyncio.to_thread(embedded.close)

    return asyncio.run(run())


async def create_user(redis: Redis, args: Any) -> int:
    from gateway.store.users import LoginTaken, Users
    from gateway.api.users import LOGIN

    if not LOGIN.match(args.login):
        print("gateway: a login is 1 to 128 characters, with no spaces or ':'", file=sys.stderr)
        return 2
    if not args.password:
        print("gateway: the password must not be empty", file=sys.stderr)
        return 2
    roles = [role for role, on in (("admin", args.admin), ("readonly", args.readonly),
                                   ("publisher", args.publisher)) if on]
    groups = [group.strip() for group in args.groups.split(",") if group.strip()]
    try:
        user = await Users(redis).create(args.login, args.password, groups=groups, roles=roles)
    except LoginTaken:
        print(f"gateway: a user with login {args.login!r} already exists", file=sys.stderr)
        return 1
    print(f"created user {user.login} ({user.id}) roles={roles} groups={groups}")
    return 0


async def create_apikey(redis: Redis, args: Any) -> int:
    from gateway.auth.credentials import ApiKeys
    from gateway.store.users import Users

    user = await Users(redis).by_login(args.login)
    if user is None:
        print(f"gateway: no user with login {args.login!r}", file=sys.stderr)
        return 1
    apikey, secret = await ApiKeys(redis).create(user.id, args.scope)
    print(f"API key {apikey.id} for {user.login}, scope {apikey.scope!r} (shown once):")
    print(secret)
    return 0

