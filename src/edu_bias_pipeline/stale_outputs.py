"""A failed run leaves no earlier run's outputs behind for the next stage to take as this run's.

When a node fails (a gate refuses, a ratio check raises), the outputs of the nodes that did not complete
are still on disk from an earlier run: `kedro run --pipelines training` after a refused split would train on
the previous split, rc 0. `StaleOutputsHook` removes, on `on_pipeline_error`, every local file (or
directory) output of the failed run's pipeline that this run did not write, and logs them. What this run
wrote stays (data_validation saves its summary, quarantine and Data Docs before its gate fails, on purpose),
and so does anything this run read: only a pipeline's outputs are candidates, never its inputs such as
`--params raw_pairs_path=...`. DVC-tracked outputs come back with `dvc checkout`. A run stopped by a usage
error (a click exception: a bad setting, a busy output dir, a device this machine lacks) removes nothing.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import click
from kedro.framework.hooks import hook_impl

from edu_bias_pipeline import patches

logger = logging.getLogger(__name__)


def local_path(dataset: Any) -> Path | None:
    """The local file or directory a dataset saves to; None for memory datasets and remote storage."""
    if dataset is None:
        return None
    protocol = getattr(dataset, "_protocol", "file")
    if protocol not in (None, "", "file", "local"):
        return None
    filepath = getattr(dataset, "_filepath", None) or getattr(dataset, "_path", None)
    if filepath is None:
        return None
    text = str(filepath)
    return None if "://" in text else Path(text)


def _overlaps(path: Path, others: set[Path]) -> bool:
    return any(path == o or o in path.parents or path in o.parents for o in others)


class StaleOutputsHook:
    """Tracks the datasets this run saved or loaded; on failure removes the outputs it did not write."""

    def __init__(self) -> None:
        self._touched: set[str] = set()
        self._started = 0.0

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        self._touched = set()
        self._started = time.time()

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        self._touched.add(dataset_name)

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any, node: Any) -> None:
        self._touched.add(dataset_name)

    @hook_impl
    def on_pipeline_error(
        self, error: Exception, run_params: dict[str, Any], pipeline: Any, catalog: Any
    ) -> None:
        if isinstance(error, click.ClickException):
            # A usage error (bad setting, busy output dir, unusable device): the stage did no work, so the
            # earlier outputs still describe what is on disk and a typo must not cost the last good run.
            logger.debug("Run stopped by a usage error; outputs left as they are: %s", error)
            return
        removed = remove_stale_outputs(pipeline.all_outputs(), self._touched, catalog, self._started)
        if removed:
            logger.warning(
                "The run failed, so these outputs of its pipeline are an earlier run's and would pass for "
                "this run's: removed %s. Rerun the failed stage once its error is fixed (`dvc checkout` "
                "restores the DVC-cached ones of the last `dvc repro`; the cache: false reports come back "
                "with the rerun).",
                ", ".join(str(p) for p in removed),
            )


def remove_stale_outputs(outputs: set[str], touched: set[str], catalog: Any, started: float) -> list[Path]:
    """Removes the local paths of `outputs` not in `touched` (saved or loaded this run), keeping any path
    that is, contains or lies in a touched dataset's path, or that changed since `started` (a file written
    this run by another process, e.g. a ParallelRunner worker, whose hooks this process does not see)."""
    if not patches.applies("stale_output_paths"):
        return []
    kept = {p.resolve() for name in touched if (p := local_path(catalog.get(name))) is not None}
    removed = []
    for name in sorted(outputs - touched):
        path = local_path(catalog.get(name))
        if path is None or not path.exists():
            continue
        resolved = path.resolve()
        if _overlaps(resolved, kept) or path.stat().st_mtime >= started:
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed.append(path)
    return removed
