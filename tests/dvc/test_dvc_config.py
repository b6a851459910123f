"""DVC settings live in the project: analytics are off in the committed .dvc/config, and neither the
Makefile's install recipe nor running DVC writes the user's global DVC config (~/.config/dvc)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

DVC = str(Path(sys.executable).parent / "dvc")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


def isolated_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "DVC_"))}
    env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1")
    return env


def global_config_dirs(home: Path) -> list[Path]:
    return [p for p in (home / ".config" / "dvc", home / ".config" / "iterative") if p.exists()]


# The DVC commands the README and docs/ tell users to run that need no remote or data (a fresh clone).
PROJECT_DVC_COMMANDS = [
    ["status"],
    ["dag"],
    ["repro", "--dry"],
    ["metrics", "show"],
    ["params", "diff"],
    ["exp", "show"],
    ["checkout"],
]


def test_install_recipe_does_not_write_global_dvc_config(home: Path) -> None:
    # `make -n -B`: the commands `make venv` would run, printed, not run.
    recipe = subprocess.run(
        ["make", "-n", "-B", "venv"],
        cwd=PROJECT_ROOT,
        env=isolated_env(home),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "pip install" in recipe, recipe  # it is the install recipe
    assert "--global" not in recipe and "~/.config" not in recipe and ".config/dvc" not in recipe, recipe
    assert global_config_dirs(home) == []


def test_project_dvc_commands_do_not_write_global_dvc_config(tmp_path: Path, home: Path) -> None:
    """The DVC commands the project runs, in a copy of its DVC setup, with HOME in a temp dir."""
    repo = tmp_path / "repo"
    (repo / ".dvc").mkdir(parents=True)
    for name in (".dvc/config", "dvc.yaml", "dvc.lock"):
        if (PROJECT_ROOT / name).exists():
            (repo / name).write_bytes((PROJECT_ROOT / name).read_bytes())
    shutil.copytree(PROJECT_ROOT / "conf" / "base", repo / "conf" / "base")
    env = isolated_env(home)
    for git in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
    ):
        subprocess.run(["git", *git], cwd=repo, env=env, check=True)
    ran = []
    for args in PROJECT_DVC_COMMANDS:
        result = subprocess.run([DVC, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
        if result.returncode == 0:
            ran.append(args[0])
        assert global_config_dirs(home) == [], (args, result.stderr[-2000:])
    assert {"status", "dag", "metrics", "exp"} <= set(ran), ran  # they ran: the check above means something


def test_analytics_are_off_in_the_project_config(tmp_path: Path, home: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".dvc").mkdir(parents=True)
    (repo / ".dvc" / "config").write_bytes((PROJECT_ROOT / ".dvc" / "config").read_bytes())
    env = isolated_env(home)  # no DVC_NO_ANALYTICS: the setting alone must turn analytics off
    subprocess.run(["git", "init", "-q"], cwd=repo, env=env, check=True)
    shown = subprocess.run(
        [DVC, "config", "--show-origin", "core.analytics"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert shown == [".dvc/config", "false"], shown
    enabled = subprocess.run(
        [sys.executable, "-c", "from dvc.analytics import is_enabled; print(is_enabled())"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert enabled == "False"
    subprocess.run([DVC, "status"], cwd=repo, env=env, capture_output=True, check=True)
    assert global_config_dirs(home) == []


def test_project_config_is_committed() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "--error-unmatch", ".dvc/config"], cwd=PROJECT_ROOT, capture_output=True
    )
    assert tracked.returncode == 0, ".dvc/config must be committed"


def test_bytecode_caches_do_not_change_a_stage_s_code_hash(tmp_path: Path, home: Path) -> None:
    # The committed dvc.lock is computed where `__pycache__` exists; a fresh clone has none. With the
    # project's .dvcignore both hash the same: a fresh clone's `dvc status` is clean.
    repo = tmp_path / "repo"
    (repo / "code").mkdir(parents=True)
    (repo / "code" / "nodes.py").write_text("x = 1\n", encoding="utf-8")
    shutil.copy2(PROJECT_ROOT / ".dvcignore", repo / ".dvcignore")
    (repo / "dvc.yaml").write_text("stages:\n  s:\n    cmd: echo ran\n    deps: [code]\n", encoding="utf-8")
    env = isolated_env(home)
    for cmd in (["git", "init", "-q"], [DVC, "init", "-q"], [DVC, "repro", "-q"]):
        subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True)
    cache = repo / "code" / "__pycache__"
    cache.mkdir()
    (cache / "nodes.cpython-312.pyc").write_bytes(b"\x00bytecode")
    status = subprocess.run([DVC, "status"], cwd=repo, env=env, capture_output=True, text=True, check=True)
    assert "up to date" in status.stdout, status.stdout
