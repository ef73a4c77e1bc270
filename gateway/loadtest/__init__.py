"""Load-test harness (contract §8): many raw Engine.IO clients against a gateway or a peer.

    cli ──► runner ──┬─► worker processes (--procs): one event loop each, thousands of
                     │     wsclient.EioClient protocols; heartbeats; per-client receipt counts
                     ├─► publisher: K changes at rate R (REST, Redis, or a peer's trigger)
                     └─► stats ──► report (text, --json) and plot (--plot)

Each published message carries a marker `"lt":"<seq>:<unix time>"` in its data; a client finds
it with a byte search (no JSON parse per message), so one client core can count ~100k messages/s.
Latency is receive time minus that publish time, on the same machine clock.
"""
