"""The launched training tree dies with the Kedro process that started it.

`python -m edu_bias_pipeline.dpo.guard PARENT_PID -- LAUNCHER ARGV...`

The Kedro node starts this guard instead of the launcher itself. The guard asks the kernel for SIGTERM when
its parent dies (`PR_SET_PDEATHSIG`: this also covers a SIGKILL of Kedro, which Kedro cannot catch),
becomes the subreaper of everything it starts (so a launcher's workers that start their own sessions, as
torch elastic's do, stay its descendants even after their parent is gone), and starts the launcher in its
own session. When it is told to stop (SIGTERM, SIGINT, SIGHUP, or its parent is gone) it sends SIGTERM to
every descendant, gives them `GRACE_S` seconds to end, and kills what is left. When the launcher ends on
its own, stray descendants are killed too: nothing of a run outlives it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
GRACE_S = 10.0
_POLL_S = 0.2
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _prctl(option: int, value: int) -> bool:
    """Linux prctl; False where it is not available (then the guard polls its parent pid instead)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _die_with_parent() -> None:
    """For the launcher (runs in the forked child before exec): SIGTERM when the guard dies."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def descendants(root: int) -> list[int]:
    """Live processes below `root` (from /proc; empty where /proc is missing)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")"
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) < 2 or fields[0] == "Z":
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            found.append(pid)
            todo.append(pid)
    return found


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _reap() -> None:
    """Collect exited orphans that were reparented to this guard (it is their subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def stop_tree(child: subprocess.Popen, grace_s: float = GRACE_S) -> None:
    """SIGTERM every descendant (the launcher's session first), then SIGKILL what outlives `grace_s`."""
    me = os.getpid()
    try:
        os.killpg(child.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
    _signal_all(descendants(me), signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        child.poll()
        _reap()
        if not descendants(me):
            return
        time.sleep(_POLL_S)
    _signal_all(descendants(me), signal.SIGKILL)
    child.wait()
    _reap()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: python -m edu_bias_pipeline.dpo.guard PARENT_PID -- ARGV...\n")
        return 2
    parent, command = int(argv[0]), argv[2:]
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    if os.getppid() != parent:  # the parent died before the death signal was armed
        return 128 + signal.SIGTERM

    stop: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        stop.append(signum)

    for sig in _STOP_SIGNALS:
        signal.signal(sig, on_signal)
    # single-threaded here, so preexec_fn is safe
    child = subprocess.Popen(command, start_new_session=True, preexec_fn=_die_with_parent)
    while child.poll() is None and not stop and os.getppid() == parent:
        try:
            child.wait(timeout=_POLL_S)
        except subprocess.TimeoutExpired:
            pass
    if child.returncode is None:
        stop_tree(child)
        return 128 + (stop[0] if stop else signal.SIGTERM)
    leftovers = descendants(os.getpid())
    if leftovers:
        _signal_all(leftovers, signal.SIGKILL)
    _reap()
    return child.returncode if child.returncode >= 0 else 128 - child.returncode


if __name__ == "__main__":
    sys.exit(main())
