"""dvc.yaml declares every file a stage's Kedro pipeline writes through the catalog, so DVC neither misses an
output (stale after `dvc checkout`) nor lists the full reports as metrics; and every file it reads and
project module it runs as a dep, so `dvc repro` reruns the stage when one changes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
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


# Package markers every stage imports; they hold no behaviour of a stage.
PACKAGE_MARKERS = {"edu_bias_pipeline", "edu_bias_pipeline.pipelines"}

_PROJECT_MODULES = """
import importlib, json, pkgutil, sys
stage, types = sys.argv[1], json.loads(sys.argv[2])
package = importlib.import_module(f"edu_bias_pipeline.pipelines.{stage}")
for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    importlib.import_module(info.name)  # every node module, lazily imported ones included
for dataset_type in types:  # the datasets its catalog entries load and save through
    importlib.import_module(dataset_type.rsplit(".", 1)[0])
print(json.dumps([m.__file__ for n, m in sys.modules.items() if n.startswith("edu_bias_pipeline")
                  and getattr(m, "__file__", None)]))
"""


def _runtime_default(path: str, catalog: dict | None = None) -> str:
    """`${runtime_params:name,default}` -> default: the file a plain `dvc repro` reads;
    `${entry.filepath}` -> that entry's path."""
    match = re.fullmatch(r"\$\{runtime_params:[^,}]+,([^}]+)\}", path.strip())
    if match:
        return match.group(1).strip()
    match = re.fullmatch(r"\$\{([^.}]+)\.filepath\}", path.strip())
    if match and catalog is not None:
        return _runtime_default(catalog[match.group(1)]["filepath"], catalog)
    return path


def _covered(path: str, deps: set[str]) -> bool:
    return any(path == d or Path(path).is_relative_to(d) for d in deps)


def test_each_stage_depends_on_its_catalog_inputs_and_the_project_modules_it_imports() -> None:
    bootstrap_project(PROJECT_ROOT)
    catalog = yaml.safe_load((PROJECT_ROOT / "conf/base/catalog.yml").read_text(encoding="utf-8"))
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    for name in STAGES:
        stage, pipeline = stages[name], pipelines[name]
        deps = set(stage["deps"])
        outs, metrics = _declared(stage)
        entries = {ds: catalog[ds] for ds in pipeline.datasets() if "filepath" in catalog.get(ds, {})}
        files = {ds: _runtime_default(entry["filepath"], catalog) for ds, entry in entries.items()}
        for dataset in pipeline.inputs():
            path = files.get(dataset)
            # An input reading a file the stage itself writes (validated_pairs' fingerprint) is no dep.
            if path is not None and not _covered(path, outs | metrics):
                assert _covered(path, deps), (name, dataset, path)

        types = sorted({e["type"] for e in entries.values() if e["type"].startswith("edu_bias_pipeline.")})
        loaded = subprocess.run(
            [sys.executable, "-c", _PROJECT_MODULES, name, json.dumps(types)],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        ).stdout
        source = PROJECT_ROOT / "src"
        modules = {Path(f).resolve().relative_to(source.resolve()) for f in json.loads(loaded)}
        for module in sorted(modules):
            dotted = ".".join(module.with_suffix("").parts).removesuffix(".__init__")
            if dotted in PACKAGE_MARKERS:
                continue
            assert _covered(f"src/{module.as_posix()}", deps), (name, f"src/{module.as_posix()}")


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


def test_every_dvc_data_dep_is_a_catalog_input_of_its_stage() -> None:
    """Nor does dvc.yaml name an input path of its own: each dep outside src/ is the file of a catalog entry
    the stage reads, or lies in a directory the training parameters name (the models training wrote)."""
    bootstrap_project(PROJECT_ROOT)
    catalog = yaml.safe_load((PROJECT_ROOT / "conf/base/catalog.yml").read_text(encoding="utf-8"))
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    for name in STAGES:
        entries = [catalog.get(ds, {}) for ds in pipelines[name].inputs()]
        # a file entry's path, or each path a LocationsDataset entry hands its node
        paths = [e["filepath"] for e in entries if "filepath" in e]
        paths += [path for e in entries for path in e.get("paths", {}).values()]
        inputs = {_runtime_default(path, catalog) for path in paths}
        for dep in stages[name]["deps"]:
            if not dep.startswith("src/"):
                assert dep in inputs or _covered(dep, set(TRAINING_PARAMETER_PATHS)), (name, dep)


def test_each_stage_tracks_the_parameter_groups_its_nodes_read() -> None:
    """`dvc repro` reruns a stage when a parameter its nodes read changes, and only then."""
    bootstrap_project(PROJECT_ROOT)
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    for name in STAGES:
        read = {
            p.removeprefix("params:").split(".")[0]
            for p in pipelines[name].inputs()
            if p.startswith("params:")
        }
        # a tracked key may be a part of a group (`data_import.cbbq`: the part of the group a stage reads)
        tracked = {
            key.split(".")[0]: file
            for entry in stages[name]["params"]
            for file, keys in entry.items()
            for key in keys
        }
        assert set(tracked) == read, name
        for key, file in tracked.items():
            assert key in yaml.safe_load((PROJECT_ROOT / file).read_text(encoding="utf-8")), (name, file, key)


def _strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_no_parameter_file_repeats_a_catalog_path() -> None:
    """Paths are set once, in the catalog: no parameter of any environment holds a catalog entry's path."""
    catalog = yaml.safe_load((PROJECT_ROOT / "conf/base/catalog.yml").read_text(encoding="utf-8"))
    paths = {_runtime_default(e["filepath"], catalog) for e in catalog.values() if "filepath" in e}
    files = sorted((PROJECT_ROOT / "conf").glob("*/parameters*.yml"))
    assert len(files) >= 5
    for file in files:
        repeated = set(_strings(yaml.safe_load(file.read_text(encoding="utf-8")))) & paths
        assert not repeated, (file.relative_to(PROJECT_ROOT).as_posix(), sorted(repeated))
