"""A seconds-long smoke of the load-test harness (contract §8) against a real gateway.

Never the benchmark itself: 20 clients × 20 events, both Engine.IO versions.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.processes import ROOT

LOAD_ENV = {"GATEWAY_RATE_LIMIT_PER_SECOND": "100000", "GATEWAY_RATE_LIMIT_PER_MINUTE": "1000000"}


@pytest.fixture(scope="module")
def load_gateway(start_gateway):
    return start_gateway(LOAD_ENV)


@pytest.mark.parametrize("eio", ["3", "4"])
def test_loadtest_delivers_every_event_once_and_writes_json_and_plot(load_gateway, tmp_path, eio):
    out_json, out_png = tmp_path / "out.json", tmp_path / "out.png"
    run = subprocess.run(
        [sys.executable, "-m", "gateway.loadtest", "--url", load_gateway.url,
         "--login", "admin", "--password", "admin-password", "--clients", "20",
         "--events", "20", "--rate", "100", "--eio", eio, "--server-pid",
         str(load_gateway.proc.pid), "--no-progress", "--drain-timeout", "20",
         "--json", str(out_json), "--plot", str(out_png)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    figures = json.loads(out_json.read_text())
    delivery = figures["delivery"]
    assert delivery["lost"] == 0 and delivery["duplicated"] == 0
    assert delivery["expected"] == delivery["unique"] == 400
    assert figures["connect"]["connected"] == 20 and figures["connect"]["failed"] == 0
    for key in ("p50", "p95", "p99", "max"):
        assert figures["latency_ms"][key] is not None and figures["latency_ms"][key] >= 0
    assert figures["delivery"]["msgs_per_s"] > 0
    assert figures["memory"]["per_connection_kb"] is not None
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "lost       0" in run.stdout


def test_loadtest_help_explains_every_flag():
    run = subprocess.run([sys.executable, "-m", "gateway.loadtest", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0
    for flag in ("--url", "--login", "--password", "--clients", "--events", "--rate", "--eio",
                 "--json", "--plot", "--store", "--procs", "--publish", "--server-pid",
                 "--target"):
        assert flag in run.stdout
