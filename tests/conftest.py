"""Shared test fixtures: a throwaway copy of the project that real Kedro sessions run in."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from edu_bias_pipeline.offline import apply_offline_defaults

apply_offline_defaults()

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("EDU_BIAS_SHARED_DIR", PROJECT_ROOT.parent / "shared"))
SAMPLE_PAIRS = PROJECT_ROOT / "data" / "01_raw" / "edu_bias_pairs.jsonl"
# The evaluation stage's shipped benchmark data (CBBQ sample, CrowS-Pairs, neutral texts).
BENCHMARKS = PROJECT_ROOT / "data" / "01_raw" / "benchmarks"
DATA_LAYERS = (
    "01_raw",
    "02_intermediate",
    "03_primary",
    "04_feature",
    "05_model_input",
    "06_models",
    "07_model_output",
    "08_reporting",
)


def make_project_copy(dest: Path) -> Path:
    """A runnable copy of the project: its conf/ and the shipped raw data, empty output layers."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(PROJECT_ROOT / "pyproject.toml", dest / "pyproject.toml")
    shutil.copytree(PROJECT_ROOT / "conf", dest / "conf", ignore=shutil.ignore_patterns("local"))
    (dest / "conf" / "local").mkdir(exist_ok=True)
    # The package is imported from the editable install; an empty src/ only satisfies Kedro's source_dir
    # check (a symlink would not: Kedro resolves it and then finds it outside the project root).
    (dest / "src").mkdir(exist_ok=True)
    for layer in DATA_LAYERS:
        (dest / "data" / layer).mkdir(parents=True, exist_ok=True)
    if SAMPLE_PAIRS.exists():
        shutil.copy2(SAMPLE_PAIRS, dest / "data" / "01_raw" / SAMPLE_PAIRS.name)
    if BENCHMARKS.is_dir():
        shutil.copytree(BENCHMARKS, dest / "data" / "01_raw" / BENCHMARKS.name, dirs_exist_ok=True)
    return dest


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project_copy(tmp_path / "project")


def run_pipeline(
    project_path: Path,
    pipeline: str | list[str],
    params: dict[str, Any] | None = None,
    env: str | None = None,
    **run_kwargs: Any,
) -> dict[str, Any]:
    """Run named pipeline(s) in a real KedroSession rooted at `project_path`."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    names = [pipeline] if isinstance(pipeline, str) else list(pipeline)
    bootstrap_project(project_path)
    cwd = Path.cwd()
    os.chdir(project_path)  # catalog paths are relative to the project root
    try:
        with KedroSession.create(project_path=project_path, env=env, runtime_params=params) as session:
            return session.run(pipeline_names=names, **run_kwargs)
    finally:
        os.chdir(cwd)


def training_parameters(env: str | None = None, runtime: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `training:` parameters Kedro's config loader gives a run with `--env env --params runtime`.

    The loader is built as a session builds it (settings.py's class and arguments, merge strategy included).
    No env: conf/base alone (a developer's git-ignored conf/local/ is not read)."""
    from edu_bias_pipeline import settings

    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=str(PROJECT_ROOT / "conf"),
        env=env or "base",
        runtime_params=runtime,
        **settings.CONFIG_LOADER_ARGS,
    )
    return loader["parameters"]["training"]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """Rows may be dicts (dumped as JSON) or raw strings/bytes (written verbatim, one per line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        for row in rows:
            if isinstance(row, bytes):
                fh.write(row + b"\n")
            elif isinstance(row, str):
                fh.write(row.encode("utf-8") + b"\n")
            else:
                fh.write(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
