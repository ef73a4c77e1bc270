"""The gateway package type-checks under `mypy --strict` (STYLE.md), with no exclusions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.processes import ROOT


def test_gateway_is_mypy_strict_clean(tmp_path: Path) -> None:
    """A fresh cache each run, so a stale one can't hide an error (about 10 s cold)."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "mypy"),
         "gateway"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, f"mypy --strict gateway:\n{result.stdout}{result.stderr}"
