"""`make viz`: the Kedro-Viz site of the project, built with real `kedro viz build` in a project copy that
holds no data, and seen in real headless Chromium with no network: every stage drawn with its nodes,
datasets and parameters under the names the registry, the catalog and the README use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from kedro.framework.project import pipelines
from kedro.framework.startup import bootstrap_project
from PIL import Image

from edu_bias_pipeline.viz_site import DEFAULT_SITE_DIR
from tests.conftest import PROJECT_ROOT, make_project_copy, run_pipeline
from tests.headless_chromium import serve

# The stages of the README's diagram, each a registered pipeline.
STAGES = ("data_import", "data_validation", "data_splitting", "training", "evaluation")
KINDS = ("task", "data", "parameters")  # kedro-viz's node types: nodes, datasets, parameters


def _expected(name: str) -> dict[str, set[str]]:
    """What kedro-viz must show for pipeline `name`, read from the project's registry."""
    pipeline = pipelines[name]
    datasets = pipeline.datasets()
    params = {d for d in datasets if d.startswith("params:")}
    return {"task": {n.name for n in pipeline.nodes}, "data": datasets - params, "parameters": params}


@pytest.fixture(scope="module")
def registry() -> dict[str, dict[str, set[str]]]:
    bootstrap_project(PROJECT_ROOT)
    return {name: _expected(name) for name in pipelines}


def _make_viz(project: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edu_bias_pipeline.viz_site"],  # what `make viz` runs
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = make_project_copy(tmp_path_factory.mktemp("viz") / "project")
    for path in (project / "data").rglob("*"):
        if path.is_file():
            path.unlink()  # the shipped sample too: building the site reads no data
    user_config = project.parent / "user-config"
    user_config.mkdir()
    proc = _make_viz(project, env={**os.environ, "XDG_CONFIG_HOME": str(user_config)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # No node ran and no dataset was saved: the data layers are as empty as before.
    assert [p for p in (project / "data").rglob("*") if p.is_file()] == []
    # Nothing lands in the user's own configuration (kedro-telemetry's user id file).
    assert list(user_config.rglob("*")) == []
    return project / DEFAULT_SITE_DIR


def _api(site: Path, name: str) -> dict[str, Any]:
    return json.loads((site / "api" / name).read_text(encoding="utf-8"))


def _by_kind(nodes: list[dict[str, Any]]) -> dict[str, set[str]]:
    return {kind: {n["name"] for n in nodes if n["type"] == kind} for kind in KINDS}


def test_a_run_writes_nothing_for_kedro_viz(project: Path) -> None:
    """settings.py keeps kedro-viz's run hooks (dataset statistics, run events) out of every session."""
    run_pipeline(project, "data_validation", node_names=["ingest_lines"])  # loads the raw pairs
    assert not (project / ".viz").exists()


def test_a_failed_build_fails_and_keeps_the_previous_site(project: Path) -> None:
    """`kedro viz build` exits 0 when it fails; `make viz` exits 1 with its message."""
    with (project / "conf/base/catalog.yml").open("a", encoding="utf-8") as fh:
        fh.write("\nbroken_entry:\n  type: no_such_package.NoSuchDataset\n")
    previous = project / DEFAULT_SITE_DIR / "index.html"
    previous.parent.mkdir(parents=True)
    previous.write_text("the previous site", encoding="utf-8")

    proc = _make_viz(project)
    assert proc.returncode == 1
    assert "did not finish" in proc.stderr and "'broken_entry'" in proc.stderr, proc.stderr
    assert previous.read_text(encoding="utf-8") == "the previous site"


def test_every_stage_is_registered(registry: dict[str, dict[str, set[str]]]) -> None:
    assert set(registry) == {"__default__", *STAGES}


def test_the_build_lists_every_stage_under_its_registry_and_catalog_names(
    site: Path, registry: dict[str, dict[str, set[str]]]
) -> None:
    main = _api(site, "main")
    assert {p["id"] for p in main["pipelines"]} == {"__default__", *STAGES}
    assert main["selected_pipeline"] == "__default__"
    assert _by_kind(main["nodes"]) == registry["__default__"]
    for stage in STAGES:
        listed = _api(site, f"pipelines/{stage}")
        assert listed["selected_pipeline"] == stage
        assert _by_kind(listed["nodes"]) == registry[stage], stage

    # Every catalog entry is a dataset of some stage, under its catalog name and with its catalog type.
    catalog = yaml.safe_load((PROJECT_ROOT / "conf/base/catalog.yml").read_text(encoding="utf-8"))
    nodes = [n for stage in STAGES for n in _api(site, f"pipelines/{stage}")["nodes"]]
    shown = {n["name"]: n for n in nodes if n["type"] == "data"}
    assert set(catalog) <= set(shown), set(catalog) - set(shown)
    for name, entry in catalog.items():
        assert shown[name]["dataset_type"].rsplit(".", 1)[-1] == entry["type"].rsplit(".", 1)[-1], name


class _DrawnNodes(HTMLParser):
    """The flowchart's nodes: (kind, label, position) of each `<g class="pipeline-node …">` in the SVG."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.nodes: list[tuple[str, str, str]] = []
        self._node: tuple[str, str] | None = None
        self._in_label = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "g" and "pipeline-node" in classes:
            self._node = (a.get("data-node-type") or "", a.get("transform") or "")
        elif tag == "text" and "pipeline-node__text" in classes and self._node:
            self._in_label = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "text":
            self._in_label = False

    def handle_data(self, data: str) -> None:
        if self._in_label and self._node:
            self.nodes.append((self._node[0], data, self._node[1]))
            self._node = None


def _drawn(dom: str) -> tuple[dict[str, set[str]], set[str]]:
    parser = _DrawnNodes()
    parser.feed(dom)
    labels = {kind: {label for k, label, _ in parser.nodes if k == kind} for kind in KINDS}
    return labels, {position for _, _, position in parser.nodes}


def _selected_pipeline(dom: str) -> str:
    start = dom.index('data-test="kedro-pipeline-selector"')
    label = dom.index('class="dropdown__label"><span>', start) + len('class="dropdown__label"><span>')
    return dom[label : dom.index("</span>", label)]


def _rows_drawn(png: Path) -> float:
    """Share of the flowchart's rows (right of the sidebar, above the feature-hint card) holding anything but
    the background colour: a drawn pipeline spans the chart's height, an empty chart's message does not."""
    chart = np.asarray(Image.open(png).convert("RGB").crop((480, 30, 1280, 480)))
    colours, counts = np.unique(chart.reshape(-1, 3), axis=0, return_counts=True)
    background = colours[counts.argmax()]
    return float((chart != background).any(axis=2).any(axis=1).mean())


def test_each_stage_is_drawn_offline_with_its_nodes_datasets_and_parameters(
    site: Path, registry: dict[str, dict[str, set[str]]], tmp_path: Path
) -> None:
    with serve(site) as served:
        for stage in ["__default__", *STAGES]:
            shot = tmp_path / f"{stage}.png" if stage != "__default__" else None
            # pid: the pipeline shown; types: parameters drawn as nodes too (kedro-viz hides them by default)
            result, dom = served.open(f"/?pid={stage}&types=nodes,datasets,parameters", screenshot=shot)
            assert result["title"] == "Kedro-Viz"
            assert served.external_urls(result) == [], stage  # no font, script or data from another host
            assert _selected_pipeline(dom) == stage
            labels, positions = _drawn(dom)
            assert labels == registry[stage], stage
            assert len(positions) == sum(map(len, labels.values())), f"{stage}: nodes not laid out"
            assert "Please check the value of" not in dom  # kedro-viz's message for a bad pid
            if shot is not None:
                assert _rows_drawn(shot) > 0.5, f"{stage}: the flowchart is (nearly) empty ({shot})"
