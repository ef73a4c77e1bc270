"""`python -m gateway.loadtest` / `scripts/loadtest`: parse → RunConfig → Runner → report.

Exit status: 0 when every client got every event exactly once; 1 when messages were lost or
duplicated, clients failed to connect, or connections dropped; 2 when the run could not start.
"""

from __future__ import annotations

import argparse
import os
import sys

from gateway.loadtest.config import RunConfig

EPILOG = """\
examples:
  %(prog)s --url http://127.0.0.1:8000 --login admin --password secret \\
      --clients 1000 --events 200 --rate 50 --json out.json --plot out.png
  %(prog)s --url http://127.0.0.1:3000 --target peer --eio 3 --clients 5000 --events 200 \\
      --rate 50 --procs 2 --server-pid 1234

Each message's data carries "lt": "<seq>:<unix time>" stamped just before publishing; the
latency is receive time minus that stamp (same machine clock). The gateway's rate limits
apply to the publisher: raise GATEWAY_RATE_LIMIT_PER_SECOND/PER_MINUTE for load runs.
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="loadtest", description="Open N realtime clients, publish K events at rate R, and "
        "report connect time, delivery latency, delivered msgs/s, lost and duplicated "
        "messages and server memory per connection (contract §8).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True,
                   help="server base URL, http://host:port (Socket.IO at /socket.io/)")
    p.add_argument("--login", default="", help="user to log in as (POST /api/v1/auth); "
                   "every client uses that session's sid cookie. Not used with --target peer")
    p.add_argument("--password", default="", help="that user's password")
    p.add_argument("--clients", type=int, required=True, help="realtime clients to open (N)")
    p.add_argument("--events", type=int, required=True, help="messages to publish (K)")
    p.add_argument("--rate", type=float, default=10.0,
                   help="messages per second (R, default 10); 0 publishes as fast as the "
                   "server answers, --concurrency requests in flight")
    p.add_argument("--eio", type=int, choices=(3, 4), default=3,
                   help="Engine.IO protocol version (3: client pings; 4: server pings)")
    p.add_argument("--store", default="bench", help="store to subscribe to and write (default bench)")
    p.add_argument("--procs", type=int, default=1,
                   help="client processes sharing the N clients (one event loop each); use "
                   "several when one process can't hold N (about 20k file descriptors each)")
    p.add_argument("--publish", choices=("rest", "redis"), default="rest",
                   help="rest: POST /api/v1/{store} creates one entity per message (the whole "
                   "write pipeline); redis: the gateway's commit script in publish mode, "
                   "straight to Redis (needs --redis-url; events have no owner, so log in "
                   "as an admin to receive them)")
    p.add_argument("--redis-url", default=os.environ.get("GATEWAY_REDIS_URL"),
                   help="Redis for --publish redis (default $GATEWAY_REDIS_URL)")
    p.add_argument("--target", choices=("gateway", "peer"), default="gateway",
                   help="gateway: log in and subscribe; peer: a reference server from "
                   "scripts/peers (no login, no subscribe; messages via its POST /trigger)")
    p.add_argument("--server-pid", type=int, default=None,
                   help="server process id: its RSS before and after connecting gives the "
                   "memory per connection")
    p.add_argument("--concurrency", type=int, default=8,
                   help="publish requests in flight at most (default 8)")
    p.add_argument("--pad", type=int, default=60,
                   help="padding characters in each message's data (default 60: about 100 "
                   "bytes of payload)")
    p.add_argument("--connect-timeout", type=float, default=30.0,
                   help="seconds one client may take to connect and subscribe (default 30)")
    p.add_argument("--connect-concurrency", type=int, default=200,
                   help="clients connecting at once per process (default 200)")
    p.add_argument("--hold", type=float, default=0.0,
                   help="seconds to keep the connections idle, heartbeats on, before "
                   "publishing (counts dropped connections)")
    p.add_argument("--drain-timeout", type=float, default=60.0,
                   help="seconds to wait after the last publish for deliveries in flight "
                   "(default 60; a run also ends after 5 s with nothing new)")
    p.add_argument("--json", dest="json_path", metavar="FILE", help="write the figures as JSON")
    p.add_argument("--plot", dest="plot_path", metavar="FILE.png",
                   help="draw the latency histogram, CDF and delivery rate (PNG)")
    p.add_argument("--worker-nice", type=int, default=10,
                   help="niceness added to the client processes (default 10), so the "
                   "publisher sharing their CPU is not starved and stamps its messages on time")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def config_from(args: argparse.Namespace) -> RunConfig:
    return RunConfig(
        url=args.url, login=args.login, password=args.password, clients=args.clients,
        events=args.events, rate=args.rate, eio=args.eio, store=args.store, procs=args.procs,
        publish=args.publish, target=args.target, server_pid=args.server_pid,
        payload_pad=args.pad, publish_concurrency=args.concurrency,
        connect_timeout_s=args.connect_timeout, connect_concurrency=args.connect_concurrency,
        drain_timeout_s=args.drain_timeout, hold_s=args.hold, json_path=args.json_path,
        plot_path=args.plot_path, progress=not args.no_progress, redis_url=args.redis_url,
        worker_nice=args.worker_nice)


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.clients < 1 or args.events < 1 or args.procs < 1 or args.rate < 0:
        p.error("--clients, --events and --procs must be at least 1, --rate at least 0")
    if args.procs > args.clients:
        p.error("--procs can't exceed --clients")
    if args.target == "gateway" and not args.login:
        p.error("--login and --password are needed with --target gateway")
    from gateway.loadtest.runner import RunError, Runner, write_json
    from gateway.loadtest.stats import text_report

    cfg = config_from(args)
    runner = Runner(cfg)
    try:
        figures = runner.run()
    except RunError as error:
        print(f"loadtest: {error}", file=sys.stderr)
        return 2
    print(text_report(figures))
    if cfg.json_path:
        write_json(cfg.json_path, figures)
    if cfg.plot_path:
        from gateway.loadtest.plot import draw

        draw(cfg.plot_path, figures, runner.latencies, figures["rate_bins"]["counts"])
    d, c = figures["delivery"], figures["connect"]
    failed_publishes = figures["events"] - figures["published"]["ok"]
    return 1 if (d["lost"] or d["duplicated"] or c["failed"] or d["dropped"]
                 or failed_publishes) else 0
