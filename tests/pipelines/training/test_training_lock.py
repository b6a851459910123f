"""The training lock: taken before the base model is built, refused clearly where the file system cannot lock.

Real Kedro sessions on a project copy; the run holding the lock is a process that took it the way the
training stage does (`lock_training_dirs`).
"""

from __future__ import annotations

import errno
import subprocess
import sys
import textwrap

import pytest
from conftest import run_pipeline
from process_helpers import lock_is_free
from training_fixtures import write_splits

from edu_bias_pipeline.pipelines.training import nodes
from edu_bias_pipeline.pipelines.training.nodes import OutputDirBusyError, OutputDirLockError

BASE = "data/06_models/base_model"
OUT = "data/06_models/dpo_model"
# Takes the training stage's locks for the given dirs, says so, and holds them until stdin closes.
HOLDER = textwrap.dedent(
    """
    import fcntl, os, sys
    from pathlib import Path
    from edu_bias_pipeline.pipelines.training.nodes import lock_path
    for directory in sys.argv[1:]:
        fd = os.open(lock_path(Path(directory)), os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
    print("held", flush=True)
    sys.stdin.read()
    """
)
# If a run were not refused, it would train one step, not a full run.
ONE_STEP = {"training": {"max_steps": 1, "eval_strategy": "no", "save_strategy": "no"}}


@pytest.fixture
def holder(project):
    procs = []

    def hold(*dirs: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, *dirs],
            cwd=project,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout.readline() == "held\n"
        return proc

    yield hold
    for proc in procs:
        proc.stdin.close()
        proc.wait(timeout=60)


def test_a_second_run_is_refused_before_it_touches_the_base_model(project, holder):
    """The first run (the holder) trains from base_model/; the second must not rebuild it under it."""
    write_splits(project, limit=40)
    first = holder(OUT, BASE)
    busy = rf"{OUT} is in use by another training run \(pid {first.pid};"
    with pytest.raises(OutputDirBusyError, match=busy):
        run_pipeline(project, "training", params=ONE_STEP)
    assert not (project / BASE).exists()


def test_another_output_dir_building_the_same_base_model_is_refused_too(project, holder, monkeypatch):
    write_splits(project, limit=40)
    first = holder(BASE)  # a run into another output dir, building the embedded model here
    monkeypatch.setenv("OUTPUT_DIR", "data/06_models/elsewhere")
    with pytest.raises(OutputDirBusyError, match=rf"base model dir \S*{BASE} is in use .*\(pid {first.pid};"):
        run_pipeline(project, "training", params=ONE_STEP)
    assert not (project / BASE).exists()
    # what this run took it gave back: its own output dir is free
    assert lock_is_free(project / "data/06_models/.elsewhere.lock")


def test_a_file_system_without_locks_is_named_with_the_mount_option(project, monkeypatch):
    """Lustre without `-o flock`, NFS without lockd: flock fails with ENOLCK / ENOSYS / EOPNOTSUPP."""
    write_splits(project, limit=40)

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(nodes.fcntl, "flock", no_locks)
    with pytest.raises(OutputDirLockError) as err:
        run_pipeline(project, "training", params=ONE_STEP)
    message = str(err.value)
    assert message.startswith(f"cannot lock training output dir {OUT}: the file system of ")
    assert "does not support file locks (ENOLCK: No locks available)" in message
    assert "-o flock" in message and "lockd" in message
    assert not (project / BASE).exists()
