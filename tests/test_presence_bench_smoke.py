"""bench/presence_cost.py runs end to end (a tiny run); only counts are checked, never timings."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_presence_cost_bench_runs_and_counts_right() -> None:
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler for bench/wsclient.c")
    cmd = [sys.executable, str(ROOT / "bench" / "presence_cost.py"), "--clients", "50",
           "--handshakes", "50", "--rounds", "1", "--window", "1", "--ttl", "3"]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["idle"]["plain"]["websockets"] == 50
    assert result["idle"]["present"]["websockets"] == 50
    # One script run per handshake, and at most one more for its close (closes are gathered).
    assert 1 <= result["per_handshake"]["present"]["redis_evals"] <= 2
    assert result["per_handshake"]["plain"]["redis_evals"] == 0
