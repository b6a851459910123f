"""dvc.yaml declares every file a stage's Kedro pipeline writes through the catalog, so DVC neither misses an
output (stale after `dvc checkout`) nor lists the full reports as metrics."""

from __future__ import annotations

from pathlib import Path

import yaml
from kedro.framework.project import pipelines
from kedro.framework.startup import bootstrap_project

from tests.conftest import PROJECT_ROOT

STAGES = ("data_validation", "data_splitting", "training", "evaluation")


def _declared(stage: dict) -> tuple[set[str], set[str]]:
    def paths(entries: list) -> set[str]:
        return {next(iter(e)) if isinstance(e, dict) else e for e in entries or []}

    return paths(stage.get("outs")) | paths(stage.get("plots")), paths(stage.get("metrics"))


def test_each_stage_declares_its_catalog_outputs_and_only_headlines_as_metrics() -> None:
    bootstrap_project(PROJECT_ROOT)
    catalog = yaml.safe_load((PROJECT_ROOT / "conf/base/catalog.yml").read_text(encoding="utf-8"))
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    for name in STAGES:
        outs, metrics = _declared(stages[name])
        produced = pipelines[name].all_outputs()
        written = {catalog[ds]["filepath"] for ds in produced if "filepath" in catalog.get(ds, {})}
        declared = outs | metrics
        for path in written:
            assert any(path == d or Path(path).is_relative_to(d) for d in declared), (name, path)
        assert metrics and all(m.endswith("_headline.json") for m in metrics), (name, metrics)
        assert metrics <= written, (name, metrics - written)
