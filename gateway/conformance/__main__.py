"""``python -m gateway.conformance [--host H] [--port 3000]``: the suites' reference server."""

from __future__ import annotations

import argparse

import uvicorn

from gateway.conformance.app import ConformanceSettings, create_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.conformance",
        description="Reference server for the socketio/engine.io-protocol and "
                    "socketio/socket.io-protocol test suites (see docs/conformance.md).")
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    parser.add_argument("--port", type=int, default=3000, help="default: 3000")
    parser.add_argument("--log-level", default="warning",
                        choices=["debug", "info", "warning", "error"], help="default: warning")
    args = parser.parse_args(argv)
    # engine.io >= 4 leaves permessage-deflate off by default; with it on, node's ws client
    # inflates frames on its thread pool and the suites' timing assumptions no longer hold
    uvicorn.run(create_app(ConformanceSettings()), host=args.host, port=args.port,
                log_level=args.log_level, access_log=args.log_level == "debug",
                ws_per_message_deflate=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
