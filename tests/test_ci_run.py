"""`.ci/run` installs Chromium through apt-get only when it may (root, or passwordless sudo); otherwise it
says what is needed and goes on (the Chromium tests then fail under CI=true, which is right)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def _ci_copy(root: Path) -> tuple[Path, Path]:
    """.ci/run with Chromium missing, `make test` a no-op, and apt-get a stub recording its calls."""
    script = (PROJECT_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "/usr/bin/chromium" in script and "make test" in script
    script = script.replace("/usr/bin/chromium", str(root / "no-chromium")).replace("make test", "true")
    (root / ".ci").mkdir()
    (root / ".ci" / "run").write_text(script, encoding="utf-8")
    (root / ".ci" / "run").chmod(0o755)
    stubs = root / "bin"
    stubs.mkdir()
    calls = root / "apt-calls"
    (stubs / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n', encoding="utf-8")
    (stubs / "apt-get").chmod(0o755)
    return root / ".ci" / "run", calls


def _run(command: list[str], stubs: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, cwd="/tmp")


@pytest.fixture
def root() -> Path:
    path = Path(tempfile.mkdtemp(dir="/tmp"))
    path.chmod(0o777)  # a user other than root runs the copy and writes the stub's record
    yield path
    shutil.rmtree(path)


def test_without_root_or_sudo_it_names_chromium_and_never_calls_apt_get(root: Path) -> None:
    run, calls = _ci_copy(root)
    command = [*NOBODY, str(run)] if os.geteuid() == 0 else [str(run)]
    if os.geteuid() != 0 and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        pytest.skip("this user has passwordless sudo: .ci/run may use apt-get")
    result = _run(command, root / "bin")
    assert result.returncode == 0, result.stderr
    assert not calls.exists(), calls.read_text()
    assert "Debian package 'chromium'" in result.stderr and "fail" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="installing as root needs root")
def test_as_root_it_installs_chromium_with_apt_get(root: Path) -> None:
    run, calls = _ci_copy(root)
    result = _run([str(run)], root / "bin")
    assert result.returncode == 0, result.stderr
    assert "install -y -qq --no-install-recommends chromium" in calls.read_text()
