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


# The directories the launched training process writes are `training` parameters (OUTPUT_DIR overrides
# output_dir), not catalog entries: dvc.yaml must equal the base parameters there.
TRAINING_PARAMETER_PATHS = {
    "data/06_models/base_model": "base_model_dir",
    "data/06_models/dpo_model": "output_dir",
}


def test_every_dvc_out_is_the_path_of_a_catalog_entry_of_its_stage() -> None:
    """dvc.yaml repeats no path of its own: each out, metric and plot is the filepath of a catalog entry the
    stage's pipeline reads or writes (the Data Docs directory: `data_docs`)."""
    bootstrap_project(PROJECT_ROOT)
    training = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_training.yml").read_text("utf-8"))
    assert {path: training["training"][key] for path, key in TRAINING_PARAMETER_PATHS.items()} == {
        path: path for path in TRAINING_PARAMETER_PATHS
    }
    catalog = yaml.safe_load((PROJECT_ROOT / "conf/base/catalog.yml").read_text(encoding="utf-8"))
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    for name in STAGES:
        outs, metrics = _declared(stages[name])
        entries = {
            catalog[ds]["filepath"] for ds in pipelines[name].datasets() if "filepath" in catalog.get(ds, {})
        }
        if name == "training":
            entries |= set(TRAINING_PARAMETER_PATHS)
        assert outs | metrics <= entries, (name, sorted((outs | metrics) - entries))
    assert catalog["data_docs"]["filepath"] in _declared(stages["data_validation"])[0]
