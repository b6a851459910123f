"""Process and lock checks shared by the tests that start and kill training trees."""

from __future__ import annotations

import fcntl
import time
from pathlib import Path


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
