"""StaleOutputsHook's choice of what a failed run removes, over a real Kedro DataCatalog."""

from __future__ import annotations

import os
import time
from pathlib import Path

from kedro.io import DataCatalog, MemoryDataset

from edu_bias_pipeline.datasets import JSONDataset, TextDataset
from edu_bias_pipeline.stale_outputs import remove_stale_outputs


def test_removes_only_old_outputs_this_run_neither_wrote_nor_read(tmp_path: Path) -> None:
    old = time.time() - 3600
    paths = {name: tmp_path / f"{name}.json" for name in ("stale", "saved", "read_too", "fresh")}
    for path in paths.values():
        path.write_text("{}")
        os.utime(path, (old, old))
    site = tmp_path / "site"  # a directory output (a report site)
    (site / "pages").mkdir(parents=True)
    (site / "pages" / "index.html").write_text("old")
    os.utime(site, (old, old))
    catalog = DataCatalog(
        {
            **{name: JSONDataset(filepath=str(path)) for name, path in paths.items()},
            "site": TextDataset(filepath=str(site)),
            "input_same_file": JSONDataset(filepath=str(paths["read_too"])),  # e.g. --params raw_pairs_path
            "in_memory": MemoryDataset(),
        }
    )
    started = time.time()
    paths["fresh"].write_text("{}")  # written during the run by another process (ParallelRunner worker)
    outputs = {"stale", "saved", "read_too", "fresh", "site", "in_memory"}
    removed = remove_stale_outputs(outputs, {"saved", "input_same_file"}, catalog, started)
    assert sorted(removed) == sorted([paths["stale"], site])
    assert not paths["stale"].exists() and not site.exists()
    assert paths["saved"].exists() and paths["read_too"].exists() and paths["fresh"].exists()
