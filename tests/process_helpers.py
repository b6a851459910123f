"""Process and lock checks shared by the tests that start and kill training trees and Kedro runs."""

from __future__ import annotations

import fcntl
import signal
import subprocess
import sys
import time
from pathlib import Path

# `kedro run ARGS` in which the process SIGKILLs itself the moment an atomic JSON save of a file named
# sys.argv[1] starts: the state a kill -9 between two saves of a node leaves, reached every time (a
# polling parent races the child and sometimes loses).
_KILL_BEFORE_SAVING = """
import os, signal, sys
from edu_bias_pipeline.datasets import atomic
from kedro.framework.cli import main

name = sys.argv.pop(1)
save = atomic.JSONDataset.save
def save_or_die(self, data):
    if str(self._filepath).endswith(name):
        os.kill(os.getpid(), signal.SIGKILL)
    save(self, data)
atomic.JSONDataset.save = save_or_die
sys.argv = ["kedro", "run", *sys.argv[1:]]
main()
"""


def kedro_run_killed_before_saving(project: Path, file_name: str, *args: str, timeout: float = 300) -> None:
    """Run `kedro run *args` in `project`, killed (SIGKILL) as the save of `file_name` starts."""
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_BEFORE_SAVING, file_name, *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-3000:])


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, ended but not yet reaped, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def lock_is_free(lock_file: Path) -> bool:
    """Whether nobody holds the flock on `lock_file` (probed by taking and dropping it)."""
    if not lock_file.exists():
        return True
    with open(lock_file, "r+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def wait_until_locks_free(lock_files: list[Path], bound_s: float = 120) -> None:
    """Wait (at most `bound_s`) until every lock is free: after Kedro is killed, the training guard (in a
    session of its own) ends the training tree within its grace period, and the tree holds the locks."""
    deadline = time.monotonic() + bound_s
    while not all(lock_is_free(f) for f in lock_files):
        assert time.monotonic() < deadline, f"{lock_files} still held {bound_s:.0f} s after the kill"
        time.sleep(0.2)
