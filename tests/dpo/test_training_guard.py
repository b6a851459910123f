"""training.guard: the launched training tree ends with the process that started it, however that ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from process_helpers import alive

from edu_bias_pipeline.dpo.guard import descendants

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

# A launcher like torchrun's agent: a worker in a session of its own (escapes a process-group kill), and
# one in the launcher's group; it writes all pids once they run, then waits.
LAUNCHER = textwrap.dedent(
    """
    import json, os, subprocess, sys, time
    own = subprocess.Popen(["sleep", "600"], start_new_session=True)
    same = subprocess.Popen(["sleep", "600"])
    out = sys.argv[1]
    with open(out + ".tmp", "w") as fh:
        json.dump([os.getpid(), own.pid, same.pid], fh)
    os.replace(out + ".tmp", out)
    time.sleep(600)
    """
)
# What the Kedro node does: start the guard with its own pid, in a session of its own, then wait.
PARENT = textwrap.dedent(
    """
    import subprocess, sys, os, time
    guard = subprocess.Popen(
        [sys.executable, "-m", "edu_bias_pipeline.dpo.guard", str(os.getpid()), "--", *sys.argv[1:]],
        start_new_session=True,
    )
    print(guard.pid, flush=True)
    time.sleep(600)
    """
)


def _start(tmp_path: Path) -> tuple[subprocess.Popen, int, list[int]]:
    pids_file = tmp_path / "pids.json"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, sys.executable, "-c", LAUNCHER, str(pids_file)],
        stdout=subprocess.PIPE,
        text=True,
    )
    guard = int(parent.stdout.readline())
    deadline = time.monotonic() + 60
    while not pids_file.exists():
        assert parent.poll() is None and time.monotonic() < deadline, "the launcher never started"
        time.sleep(0.05)
    tree = json.loads(pids_file.read_text())
    assert set(tree) <= set(descendants(guard))  # the guard sees the worker of another session too
    return parent, guard, tree


def _wait_gone(pids: list[int], bound_s: float = 60) -> list[int]:
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def test_sigkill_of_the_parent_takes_down_the_launcher_and_every_worker(tmp_path):
    parent, guard, tree = _start(tmp_path)
    try:
        os.kill(parent.pid, signal.SIGKILL)  # cannot be caught: only the kernel's death signal helps
        parent.wait()
        assert _wait_gone([guard, *tree]) == []
    finally:
        for pid in [guard, *tree]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_sigterm_to_the_guard_ends_the_tree_and_reports_the_signal(tmp_path):
    parent, guard, tree = _start(tmp_path)
    try:
        os.kill(guard, signal.SIGTERM)
        assert _wait_gone([guard, *tree]) == []
        assert parent.poll() is None  # the parent is not touched
    finally:
        parent.kill()
        parent.wait()
        for pid in [guard, *tree]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_the_launchers_exit_code_passes_through_and_no_worker_outlives_it():
    script = (
        "import subprocess, sys\n"
        "print(subprocess.Popen(['sleep', '600'], start_new_session=True).pid, flush=True)\n"
        "sys.exit(3)"
    )
    guard = [sys.executable, "-m", "edu_bias_pipeline.dpo.guard", str(os.getpid()), "--"]
    done = subprocess.run([*guard, sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3  # EXIT_OOM and friends reach the node unchanged
    worker = int(done.stdout)
    try:
        assert not alive(worker)
    finally:
        if alive(worker):
            os.kill(worker, signal.SIGKILL)
