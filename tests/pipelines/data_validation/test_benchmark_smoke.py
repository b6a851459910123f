"""benchmarks/validate_scale.py still runs (tiny N): the performance figures stay reproducible."""

from __future__ import annotations

import subprocess
import sys

from conftest import PROJECT_ROOT


def test_validate_scale_benchmark_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "benchmarks" / "validate_scale.py"), "--n", "2000"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=PROJECT_ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "stage core: 2000 rows" in done.stdout
    assert "build_data_docs (GX)" in done.stdout
