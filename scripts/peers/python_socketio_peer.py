"""Reference peer for scripts/bench_peers: python-socketio 5 (asyncio) on uvicorn.

    python scripts/peers/python_socketio_peer.py --port 3001
    POST /trigger {"lt": "...", "pad": "..."}  -> sio.emit("bench", body) to every client

python-engineio 4 speaks Engine.IO v4 only, so clients use EIO=4 against this peer.
"""

from __future__ import annotations

import argparse
import json
import os

import socketio
import uvicorn

sio = socketio.AsyncServer(
    async_mode="asgi", cors_allowed_origins="*",
    ping_interval=int(os.environ.get("PING_INTERVAL_MS", "25000")) / 1000,
    ping_timeout=int(os.environ.get("PING_TIMEOUT_MS", "60000")) / 1000,
)


async def other(scope, receive, send):  # type: ignore[no-untyped-def]
    """POST /trigger and GET /healthz; everything else 404."""
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    if path == "/trigger" and method == "POST":
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        await sio.emit("bench", json.loads(body))
        status, payload = 204, b""
    elif path == "/healthz":
        status, payload = 200, b'{"status":"ok"}'
    else:
        status, payload = 404, b""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": payload})


app = socketio.ASGIApp(sio, other_asgi_app=other)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=3001)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
