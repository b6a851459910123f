"""evaluation: a checkpoint + a pair file -> per-category reward accuracy vs the reference baseline.

`params:evaluation` is typed as `EvaluationConfig` in the scoring node, so Kedro validates it when the
run starts. The model path is a parameter (`evaluation.checkpoint`), the pair file a runtime parameter of
the catalog entry (`eval_pairs_path`), so any checkpoint can be evaluated on any pair file.
"""

from __future__ import annotations

from collections.abc import Sequence

from kedro.pipeline import Pipeline, node, pipeline

from edu_bias_pipeline.pipelines.evaluation.nodes import (
    build_metrics,
    compute_category_metrics,
    plot_per_category,
    render_report,
    score_evaluation_pairs,
)


def create_pipeline(after: Sequence[str] = (), **kwargs) -> Pipeline:
    """`after`: dataset names the scoring node waits for without reading them.

    The model directory is not a Kedro dataset (training writes it from a launched process), so nothing
    orders evaluation after training. The registry passes a training output here when it assembles the
    default run; alone (`kedro run --pipelines evaluation`) the stage needs only the pairs and a model.
    """
    return pipeline(
        [
            node(
                score_evaluation_pairs,
                ["evaluation_pairs", "params:evaluation", "params:taxonomy", *after],
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
