"""evaluation: the trained model + a pair file -> per-category reward accuracy vs the reference baseline.

`params:evaluation` is typed as `EvaluationConfig` in the scoring node, so Kedro validates it when the
run starts. The model is training's `trained_model` record, an input here, so Kedro runs this stage after
training in every pipeline combination; `evaluation.checkpoint` overrides it. The pair file is a runtime
parameter of the catalog entry (`eval_pairs_path`), so any model can be evaluated on any pair file.
"""

from __future__ import annotations

from kedro.pipeline import Pipeline, node, pipeline

from edu_bias_pipeline.pipelines.evaluation.nodes import (
    build_headline,
    build_metrics,
    compute_category_metrics,
    plot_per_category,
    render_report,
    score_evaluation_pairs,
)


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                score_evaluation_pairs,
                ["evaluation_pairs", "params:evaluation", "params:taxonomy", "trained_model"],
                ["eval_pair_scores", "eval_run_info"],
                name="score_evaluation_pairs",
            ),
            node(
                compute_category_metrics,
                ["eval_pair_scores", "params:taxonomy"],
                "eval_per_category",
                name="compute_category_metrics",
            ),
            node(
                build_metrics,
                ["eval_pair_scores", "eval_per_category", "eval_run_info"],
                "eval_metrics",
                name="build_eval_metrics",
            ),
            node(build_headline, "eval_metrics", "eval_headline", name="build_eval_headline"),
            node(
                plot_per_category,
                ["eval_per_category", "eval_metrics"],
                "eval_chart",
                name="plot_eval_per_category",
            ),
            node(
                render_report,
                ["eval_per_category", "eval_metrics", "eval_run_info"],
                "eval_report",
                name="render_eval_report",
            ),
        ]
    )
