"""`dvc plots show` draws every plot of dvc.yaml with no network: real DVC, real headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from edu_bias_pipeline.assets import dvc_plots_template
from tests.conftest import PROJECT_ROOT
from tests.headless_chromium import external_urls, open_page, require_chromium

DVC = str(Path(sys.executable).parent / "dvc")


def _plot_data(repo: Path) -> None:
    """Small files shaped like the stages' outputs (the training node's curves, evaluation's CSV)."""
    reporting = repo / "data" / "08_reporting"
    reporting.mkdir(parents=True)
    train = [
        {
            "step": s,
            "train/loss": 0.7 - s / 100,
            "train/reward_accuracy": s / 10,
            "train/reward_margin": s / 50,
            "train/lr": 1e-3,
        }
        for s in range(1, 8)
    ]
    val = [
        {
            "step": s,
            "eval/loss": 0.7 - s / 90,
            "eval/rewards/accuracies": s / 9,
            "eval/rewards/margins": s / 40,
        }
        for s in (3, 6)
    ]
    (reporting / "training_curve.json").write_text(json.dumps(train), encoding="utf-8")
    (reporting / "validation_curve.json").write_text(json.dumps(val), encoding="utf-8")
    (reporting / "eval_per_category.csv").write_text(
        "bias_type,reward_accuracy,pairs\nregion,0.75,8\ngender_sexuality,0.5,6\n", encoding="utf-8"
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.bar(["train", "val", "test"], [8, 1, 1])
    fig.savefig(reporting / "split_per_category.png")
    plt.close(fig)


def test_committed_template_is_the_generated_one() -> None:
    """.dvc/plots_page.html inlines the shipped Vega files; regenerate it when they change."""
    committed = (PROJECT_ROOT / ".dvc" / "plots_page.html").read_text(encoding="utf-8")
    assert committed == dvc_plots_template(), (
        "regenerate: python -c 'from edu_bias_pipeline.assets import dvc_plots_template as t; "
        'open(".dvc/plots_page.html", "w").write(t())\''
    )


def test_dvc_plots_show_draws_every_plot_offline(tmp_path: Path) -> None:
    require_chromium()
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run([DVC, "init", "--no-scm", "-q"], cwd=repo, check=True)
    for rel in ("dvc.yaml", ".dvc/config", ".dvc/plots_page.html"):
        shutil.copy2(PROJECT_ROOT / rel, repo / rel)
    _plot_data(repo)

    out = subprocess.run(
        [DVC, "plots", "show", "-o", "plots_out"], cwd=repo, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    page = repo / "plots_out" / "index.html"
    assert "cdn.jsdelivr.net" not in page.read_text(encoding="utf-8")

    dvc_yaml = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    vega_plots = len(dvc_yaml["plots"])
    image_plots = sum(len(stage.get("plots", [])) for stage in dvc_yaml["stages"].values())
    probe, _ = open_page(page, screenshot=tmp_path / "plots.png")
    assert external_urls(probe) == []
    assert probe["vega_embeds"] == vega_plots == 3
    assert probe["vega_drawn"] == vega_plots  # each Vega plot drew its canvas/svg, none is blank
    assert probe["images"] == probe["images_drawn"] == image_plots
