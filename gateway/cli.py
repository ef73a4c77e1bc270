"""The `gateway` command: parse → settings → run. Nothing else lives here."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
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
  gateway users list
  gateway users update alice --groups staff --roles publisher
  gateway users update alice --disabled true
  gateway users delete alice
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
    serve.add_argument("--workers", type=_workers, metavar="N",
                       help="processes serving the one port, every transport working whichever "
                            "a request reaches (GATEWAY_WORKERS, default 1)")
    serve.add_argument("--log-level", default=argparse.SUPPRESS,  # as before the subcommand
                       choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default: INFO")

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

    list_users = users.add_parser("list", help="list every user",
                                  description="List every user: id, login, roles, groups and "
                                              "whether the account is disabled (never passwords).")
    list_users.add_argument("--json", action="store_true",
                            help="one JSON array, as GET /api/v1/users answers")

    update_user = users.add_parser(
        "update", help="change a user's password, groups, roles or disabled state",
        description="Change what is given, leave the rest. A new password or --disabled true\n"
                    "revokes every session, token and API key of the user at once and closes\n"
                    "their realtime connections on every gateway process.",
        epilog="examples:\n  gateway users update alice --password n3w-s3cret\n"
               "  gateway users update alice --groups staff,eu --roles publisher\n"
               "  gateway users update alice --groups '' --roles ''   (none of either)\n"
               "  gateway users update alice --disabled true",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    update_user.add_argument("login")
    update_user.add_argument("--password", help="a new password (revokes every credential)")
    update_user.add_argument("--groups", help="comma-separated groups replacing the current "
                                              "ones; '' for none")
    update_user.add_argument("--roles", help="comma-separated roles replacing the current ones "
                                             "(admin, readonly, publisher); '' for none")
    update_user.add_argument("--disabled", type=str.lower, choices=["true", "false"],
                             help="true: the user can't authenticate, and every credential is "
                                  "revoked; false: enabled again")

    delete_user = users.add_parser(
        "delete", help="delete a user",
        description="Delete a user: every session, token and API key is revoked, realtime "
                    "connections are closed, the user's hooks are deleted and the login is free "
                    "again. Entities the user created are kept.")
    delete_user.add_argument("login")

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
            return serve(settings, log_level=args.log_level)
        if args.command == "worker":
            from gateway.server import run_worker
            return run_worker(settings)
        if args.command == "users":
            action = {"create": create_user, "list": list_users, "update": update_user,
                      "delete": delete_user}[args.action]
            return with_redis(settings, lambda redis: action(redis, args))
        if args.command == "apikeys":
            return with_redis(settings, lambda redis: create_apikey(redis, args))
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    return 0


def _workers(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{raw!r} is not valid: expected a whole number above 0")
    return value


def apply_flags(settings: Settings, args: argparse.Namespace) -> Settings:
    http = settings.http
    if getattr(args, "host", None):
        http = dataclasses.replace(http, host=args.host)
    if getattr(args, "port", None) is not None:
        http = dataclasses.replace(http, port=args.port)
    if getattr(args, "workers", None) is not None:
        http = dataclasses.replace(http, workers=args.workers)
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


def _names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


async def list_users(redis: Redis, args: Any) -> int:
    from gateway.store.users import Users

    users = await Users(redis).list_all()
    if args.json:
        print(json.dumps([user.admin_view() for user in users]))
        return 0
    if not users:
        print("no users")
        return 0
    rows = [("ID", "LOGIN", "ROLES", "GROUPS", "DISABLED")] + [
        (user.id, user.login, ",".join(user.roles) or "-", ",".join(user.groups) or "-",
         "yes" if user.disabled else "no") for user in users]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    return 0


async def update_user(redis: Redis, args: Any) -> int:
    from gateway.api.users import ROLES
    from gateway.store.users import Users

    if args.password is None and args.groups is None and args.roles is None \
            and args.disabled is None:
        print("gateway: nothing to change: give --password, --groups, --roles or --disabled",
              file=sys.stderr)
        return 2
    if args.password is not None and not args.password:
        print("gateway: the password must not be empty", file=sys.stderr)
        return 2
    roles = None if args.roles is None else _names(args.roles)
    unknown = sorted(set(roles or ()) - ROLES)
    if unknown:
        print(f"gateway: unknown roles {unknown}; roles are {sorted(ROLES)}", file=sys.stderr)
        return 2
    groups = None if args.groups is None else _names(args.groups)
    users = Users(redis)
    user = await users.by_login(args.login)
    if user is None:
        print(f"gateway: no user with login {args.login!r}", file=sys.stderr)
        return 1
    disabled = None if args.disabled is None else args.disabled == "true"
    updated = await users.update(user.id, password=args.password, groups=groups, roles=roles,
                                 disabled=disabled)
    if updated is None:
        print(f"gateway: no user with login {args.login!r}", file=sys.stderr)
        return 1
    ended = args.password is not None or disabled is True
    print(f"updated user {updated.login} ({updated.id}) roles={list(updated.roles)} "
          f"groups={list(updated.groups)} disabled={str(updated.disabled).lower()}"
          + ("; every session, token and API key of the user was revoked" if ended else ""))
    return 0


async def delete_user(redis: Redis, args: Any) -> int:
    from gateway.api.users import remove_user
    from gateway.store.users import Users

    users = Users(redis)
    user = await users.by_login(args.login)
    if user is None or await remove_user(redis, users, user.id) is None:
        print(f"gateway: no user with login {args.login!r}", file=sys.stderr)
        return 1
    print(f"deleted user {user.login} ({user.id}); its sessions, tokens, API keys and hooks "
          "are gone")
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

