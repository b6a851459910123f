"""Atomic saves: every catalog file output is complete or absent, and unwritable outputs say what to do."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from conftest import PROJECT_ROOT, make_project_copy, run_pipeline  # noqa: E402
from kedro.io import DatasetError  # noqa: E402

from edu_bias_pipeline import datasets as D  # noqa: E402
from edu_bias_pipeline.files import (  # noqa: E402
    fingerprint_bytes,
    fingerprint_file,
    replace_directory,
    temporary_path,
)

JSONL_ARGS = {
    "load_args": {"lines": True, "dtype": False},
    "save_args": {"orient": "records", "lines": True, "force_ascii": False},
}


def test_failed_save_midway_leaves_the_previous_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "out" / "pairs.jsonl"
    dataset = D.JSONLinesDataset(filepath=str(path), chunk_rows=1, **JSONL_ARGS)
    dataset.save(pd.DataFrame({"a": [1, 2, 3]}))
    before = path.read_bytes()

    # Undecodable bytes in the last row: to_json fails after the first two chunks were written.
    bad = pd.DataFrame({"a": [4, 5, 6], "b": ["ok", "ok", b"\xff"]})
    with pytest.raises(DatasetError):
        dataset.save(bad)  # chunks 1 and 2 were written before chunk 3 failed
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["pairs.jsonl"]


def test_every_file_output_of_the_catalog_saves_atomically() -> None:
    """A catalog entry with a filepath is either read-only input or an atomic type (not a plain
    kedro-datasets class, which writes straight to the target)."""
    from kedro.io.core import parse_dataset_definition

    catalog = yaml.safe_load((PROJECT_ROOT / "conf/base/catalog.yml").read_text(encoding="utf-8"))
    # data_docs only names the directory: the GX node builds the site through files.replace_directory
    read_only = {
        "raw_pairs",
        "evaluation_pairs",
        "validated_pairs_fingerprint",
        "data_docs",
        "trained_model_record",
        "cbbq_qa_source",
    }
    checked = []
    for name, entry in catalog.items():
        if "filepath" not in entry or name in read_only:
            continue
        cls, _ = parse_dataset_definition({k: v for k, v in entry.items() if k == "type"} | {"filepath": "x"})
        assert issubclass(cls, D.AtomicSaveMixin), f"{name}: {entry['type']} does not save atomically"
        checked.append(name)
    assert {"validated_pairs", "validation_summary", "train_pairs", "eval_chart", "eval_report"} <= set(
        checked
    )


@pytest.mark.parametrize(
    ("ours", "theirs", "data", "kwargs"),
    [
        (D.JSONDataset, "json.JSONDataset", {"a": "中"}, {"save_args": {"ensure_ascii": False}}),
        (D.TextDataset, "text.TextDataset", "hello\n", {}),
        (D.CSVDataset, "pandas.CSVDataset", pd.DataFrame({"x": [1, 2]}), {"save_args": {"index": False}}),
        (D.JSONLinesDataset, "pandas.JSONDataset", pd.DataFrame({"a": [1], "b": [["中"]]}), JSONL_ARGS),
    ],
)
def test_atomic_types_write_what_their_kedro_datasets_class_writes(tmp_path, ours, theirs, data, kwargs):
    from kedro.io.core import parse_dataset_definition

    original, _ = parse_dataset_definition({"type": theirs, "filepath": "x"})
    path = tmp_path / "deep" / "dir" / "out"  # directories are created as by kedro-datasets
    ours(filepath=str(path), **kwargs).save(data)
    original(filepath=str(tmp_path / "theirs"), **kwargs).save(data)
    assert path.read_bytes() == (tmp_path / "theirs").read_bytes()
    assert [p.name for p in path.parent.iterdir()] == ["out"]


def test_matplotlib_figure_and_umask(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2])
    path = tmp_path / "chart.png"
    old = os.umask(0o022)
    try:
        D.MatplotlibDataset(filepath=str(path), save_args={"format": "png"}).save(fig)
    finally:
        os.umask(old)
    assert path.read_bytes().startswith(b"\x89PNG")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # the user's umask, not a temp file's 0600


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    stale = temporary_path(path, pid=int(dead.stdout))
    stale.write_text('{"half": ')
    alive = temporary_path(path, pid=os.getppid())  # a running process: its write is in progress
    alive.write_text("{")
    D.JSONDataset(filepath=str(path)).save({"ok": True})
    assert not stale.exists()
    assert alive.exists()


def test_jsonl_load_carries_the_fingerprint_of_the_bytes_parsed(tmp_path: Path) -> None:
    path = tmp_path / "v.jsonl"
    D.JSONLinesDataset(filepath=str(path), **JSONL_ARGS).save(pd.DataFrame({"a": [1, 2]}))
    frame = D.JSONLinesDataset(filepath=str(path), **JSONL_ARGS).load()
    source = frame.attrs["source_file"]
    assert source["sha256"] == fingerprint_file(path)["sha256"]
    assert source["lines"] == 2


@pytest.mark.parametrize("content", [b"", b"\n", b"a", b"a\n", b"a\nb", b"a\n\nb\n", b"x" * 10 + b"\n" * 7])
def test_fingerprint_of_a_file_read_in_blocks_equals_that_of_its_bytes(tmp_path, content) -> None:
    path = tmp_path / "f"
    path.write_bytes(content)
    assert fingerprint_file(path, block=3) == fingerprint_bytes(content)


def test_replace_directory_swaps_whole_or_keeps_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "docs"
    target.mkdir()
    (target / "index.html").write_text("old")

    def failing(tmp: Path) -> None:
        (tmp / "index.html").write_text("half")
        raise RuntimeError("build failed")

    with pytest.raises(RuntimeError):
        replace_directory(target, failing)
    assert (target / "index.html").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs"]

    def build(tmp: Path) -> str:
        (tmp / "index.html").write_text("new")
        return "built"

    assert replace_directory(target, build) == "built"
    assert [p.name for p in target.iterdir()] == ["index.html"]
    assert (target / "index.html").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs"]


def test_raw_pairs_given_a_directory_says_so(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"is a directory; give a file: one JSON object per line"):
        D.RawLinesDataset(filepath=str(tmp_path)).load()


def _can_unshare() -> bool:
    """Whether a private user + mount namespace may be made here (Docker's default seccomp refuses it)."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=30)
    return probe.returncode == 0


def _read_only_data_command(project: Path, command: list[str], read_only_mount: bool) -> list[str]:
    """`command` with the project's data/ not writable. As root (who ignores permission bits): a
    read-only bind mount in a private mount namespace, or, where namespaces are refused, the command run
    as `nobody` over permission bits. As any other user: permission bits."""
    if read_only_mount:
        data = str(project / "data")
        script = 'mount -o bind,ro "$1" "$1" && shift && exec "$@"'
        return ["unshare", "-rm", "sh", "-c", script, "sh", data, *command]
    for dirpath, _, _ in os.walk(project / "data"):
        os.chmod(dirpath, 0o555)
    if os.geteuid() == 0:
        return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    return command


def test_read_only_data_dir_names_the_path_and_what_to_do(tmp_path: Path) -> None:
    read_only_mount = os.geteuid() == 0 and _can_unshare()
    # `nobody` must reach the project: a world-readable directory instead of root's private tmp_path.
    parent = tmp_path if read_only_mount or os.geteuid() != 0 else Path(tempfile.mkdtemp(dir="/tmp"))
    parent.chmod(0o755)
    try:
        project = make_project_copy(parent / "p")
        run_pipeline(project, "data_validation")
        kedro_run = [sys.executable, "-m", "kedro", "run", "--pipelines", "data_splitting"]
        command = _read_only_data_command(project, kedro_run, read_only_mount)
        env = {**os.environ, "COLUMNS": "400"}  # one message per line in Kedro's log
        result = subprocess.run(command, cwd=project, capture_output=True, text=True, env=env, timeout=300)
    finally:
        if parent != tmp_path:
            for dirpath, _, _ in os.walk(parent):
                os.chmod(dirpath, 0o755)
            shutil.rmtree(parent)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "Cannot write output" in output, output[-3000:]
    assert "data/05_model_input" in output
    if read_only_mount:
        assert "is on a read-only file system. Remount it read-write" in output
    else:
        assert "is not writable by this user" in output and "chmod -R u+w" in output
    assert "[Errno" not in output.split("Cannot write output")[-1]


def test_directory_without_write_permission_names_it_and_the_chmod(tmp_path: Path) -> None:
    """EACCES (a directory the user may not write to), as a user to whom permission bits apply."""
    outer = Path(tempfile.mkdtemp(prefix="ro-", dir="/tmp"))
    try:
        (outer / "reports").mkdir()
        outer.chmod(0o755)
        (outer / "reports").chmod(0o555)
        code = (
            "from edu_bias_pipeline.datasets import JSONDataset\n"
            f"JSONDataset(filepath={str(outer / 'reports' / 'summary.json')!r}).save({{'a': 1}})\n"
        )
        command = [sys.executable, "-c", code]
        if os.geteuid() == 0:  # root ignores permission bits: write as nobody
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd="/tmp")
        assert result.returncode != 0
        last = result.stderr.strip().splitlines()[-1]
        assert last == (
            f"kedro.io.core.DatasetError: Cannot write output {outer}/reports/summary.json: {outer}/reports "
            f"is not writable by this user (Permission denied). Make it writable (e.g. `chmod -R u+w "
            f"{outer}/reports`), or run the project from a copy you can write to."
        ), result.stderr[-2000:]
    finally:
        (outer / "reports").chmod(0o755)
        shutil.rmtree(outer)
