"""--plot: latency histogram, latency CDF and delivery rate over time in one PNG (Agg)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.loadtest.worker import BIN_S


def draw(path: str, figures: dict[str, Any], latencies: Sequence[float],
         bins: Sequence[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (hist, cdf, rate) = plt.subplots(1, 3, figsize=(16, 4.5))
    title = (f"{figures['target']} EIO={figures['eio']}: {figures['clients']} clients × "
             f"{figures['events']} events @ {figures['rate'] or 'max'}/s")
    fig.suptitle(title)
    ordered = sorted(latencies)
    if ordered:
        hist.hist(ordered, bins=80, color="tab:blue")
        hist.set_yscale("log")
        n = len(ordered)
        step = max(1, n // 4000)  # a few thousand points draw the same curve
        xs = ordered[::step] + [ordered[-1]]
        ys = [i / n for i in range(0, n, step)] + [1.0]
        cdf.plot(xs, ys, color="tab:green")
        for q in ("p50", "p99"):
            value = figures["latency_ms"][q]
            if value is not None:
                cdf.axvline(value, linestyle="--", color="grey")
                cdf.text(value, 0.05 if q == "p50" else 0.15, f" {q} {value:.1f} ms")
    hist.set_title("latency histogram")
    hist.set_xlabel("publish → receive (ms)")
    hist.set_ylabel("messages (log)")
    cdf.set_title("latency CDF")
    cdf.set_xlabel("publish → receive (ms)")
    cdf.set_ylabel("fraction of messages")
    cdf.grid(alpha=0.3)
    times = [i * BIN_S for i in range(len(bins))]
    per_s = [count / BIN_S for count in bins]
    rate.plot(times, per_s, color="tab:orange", alpha=0.35, linewidth=0.8, label=f"{BIN_S:g} s bins")
    window = max(1, round(1.0 / BIN_S))
    if len(per_s) >= window:
        smooth = [sum(per_s[i - window + 1:i + 1]) / window for i in range(window - 1, len(per_s))]
        rate.plot(times[window - 1:], smooth, color="tab:red", label="1 s mean")
    rate.legend(loc="upper right", fontsize="small")
    rate.set_title("delivery rate")
    rate.set_xlabel("seconds since the first publish")
    rate.set_ylabel("messages / s")
    rate.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
