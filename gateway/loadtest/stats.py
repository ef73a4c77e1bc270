"""Figures from the workers' results: percentiles, rates, lost/duplicated, memory."""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from typing import Any

from gateway.loadtest.worker import BIN_S


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def summary(values: Sequence[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    return {
        "p50": percentile(ordered, 50), "p95": percentile(ordered, 95),
        "p99": percentile(ordered, 99), "max": float(ordered[-1]) if ordered else None,
        "mean": (sum(ordered) / len(ordered)) if ordered else None,
    }


def merge_latencies(results: Sequence[dict[str, Any]]) -> array[float]:
    merged = array("f")
    for result in results:
        merged.frombytes(result["latencies_ms"])
    return merged


def merge_bins(results: Sequence[dict[str, Any]]) -> list[int]:
    size = max((len(r["bins"]) for r in results), default=0)
    merged = [0] * size
    for result in results:
        for i, count in enumerate(result["bins"]):
            merged[i] += count
    return merged


def delivery_window(bins: Sequence[int], publish_start_s: float) -> tuple[float, float]:
    """(first, last) receive time in seconds from the run's epoch, from the bins."""
    nonzero = [i for i, count in enumerate(bins) if count]
    if not nonzero:
        return publish_start_s, publish_start_s
    return nonzero[0] * BIN_S, (nonzero[-1] + 1) * BIN_S


def round_floats(value: Any, digits: int = 3) -> Any:
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: round_floats(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [round_floats(v, digits) for v in value]
    return value


def text_report(figures: dict[str, Any]) -> str:
    """The human summary printed at the end of a run."""
    c, lat, d, m = (figures["connect"], figures["latency_ms"], figures["delivery"],
                    figures["memory"])

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} ms"

    lines = [
        f"target     {figures['target']} {figures['url']}  EIO={figures['eio']}  "
        f"clients={figures['clients']}  events={figures['events']}  rate={figures['rate'] or 'max'}/s"
        f"  publish={figures['publish']}  procs={figures['procs']}",
        f"connect    {c['connected']} ok, {c['failed']} failed in {c['total_s']:.2f} s  "
        f"(per client p50 {ms(c['p50_ms'])}, p99 {ms(c['p99_ms'])})",
        f"publish    {figures['published']['ok']}/{figures['events']} ok in "
        f"{figures['published']['duration_s']:.2f} s "
        f"({figures['published']['rate']:.1f}/s)",
        f"latency    p50 {ms(lat['p50'])}  p95 {ms(lat['p95'])}  p99 {ms(lat['p99'])}  "
        f"max {ms(lat['max'])}",
        f"delivered  {d['unique']} of {d['expected']} in {d['duration_s']:.2f} s = "
        f"{d['msgs_per_s']:.0f} msgs/s",
        f"lost       {d['lost']}   duplicated {d['duplicated']}   "
        f"dropped connections {d['dropped']}",
    ]
    util = figures["client"]["cpu_util_max"]
    if util is not None:
        lines.append(f"client     busiest client process used {util * 100:.0f}% of a core while "
                     f"publishing and draining" + ("  (saturated: the client may be the limit)"
                                                   if util > 0.9 else ""))
    if m["per_connection_kb"] is not None:
        lines.append(f"memory     server RSS {m['rss_before_mb']:.1f} → {m['rss_connected_mb']:.1f}"
                     f" MB = {m['per_connection_kb']:.1f} KB per connection "
                     f"(after run {m['rss_after_mb']:.1f} MB)")
    if c["errors"]:
        lines.append(f"errors     {c['errors']}")
    if figures["published"]["errors"]:
        lines.append(f"pub errors {figures['published']['errors']}")
    return "\n".join(lines)
