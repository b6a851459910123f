"""benchmarks/trl_anchor.py, the bare-TRL baseline of docs/performance.md, starts from a clone: its imports
(TRL and the project's architecture table) resolve from any directory without PYTHONPATH. It trains on CUDA
only, so this does not train."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_trl_anchor_starts_and_lists_its_options(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "trl_anchor.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for option in ("--arch", "--batch", "--accum", "--lora", "--precompute", "--gc", "--deepspeed"):
        assert option in proc.stdout, proc.stdout
