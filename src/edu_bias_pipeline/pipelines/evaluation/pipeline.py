"""evaluation: the trained model + a pair file -> per-category reward accuracy vs the reference baseline.

`params:evaluation` is typed as `EvaluationConfig` in the scoring node, so Kedro validates it when the
run starts. The model is training's `trained_model` record, an input here, so Kedro runs this stage after
training in every pipeline combination; `evaluation.checkpoint` overrides it. The pair file is a runtime
parameter of the catalog entry (`eval_pairs_path`), so any model can be evaluated on any pair file.
The models are loaded once, by the pair-scoring node, and handed to the CrowS-Pairs and retention nodes
(`eval_models`, a memory dataset passed by reference); the report takes each part's section as an input.
"""

from __future__ import annotations

from kedro.pipeline import Pipeline, node, pipeline

from edu_bias_pipeline.pipelines.evaluation import crows_stereotype as crows
from edu_bias_pipeline.pipelines.evaluation import retention
from edu_bias_pipeline.pipelines.evaluation.length_confound import render_length_confound_section
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
                ["eval_pair_scores", "eval_run_info", "eval_models"],
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
                [
                    "eval_per_category",
                    "eval_metrics",
                    "eval_run_info",
                    "length_confound_section",
                    "crows_pairs_section",
                    "retention_section",
                    "health_section",
                ],
                "eval_report",
                name="render_eval_report",
            ),
            # Length confound of the accuracies above (its numbers are in eval_metrics).
            node(
                render_length_confound_section,
                ["eval_metrics", "params:evaluation"],
                "length_confound_section",
                name="render_length_confound_section",
            ),
            # CrowS-Pairs stereotype score (evaluation.crows_pairs).
            node(
                crows.score_crows_pairs,
                ["crows_pairs", "params:evaluation", "eval_models"],
                ["crows_pair_scores", "crows_pairs_info"],
                name="score_crows_pairs",
            ),
            node(
                crows.crows_pairs_metrics,
                ["crows_pair_scores", "crows_pairs_info", "eval_run_info"],
                "crows_pairs_metrics",
                name="build_crows_pairs_metrics",
            ),
            node(
                crows.crows_pairs_headline,
                "crows_pairs_metrics",
                "crows_pairs_headline",
                name="crows_pairs_headline",
            ),
            node(crows.plot_crows_pairs, "crows_pairs_metrics", "crows_pairs_chart", name="plot_crows_pairs"),
            node(
                crows.render_crows_pairs_section,
                ["crows_pairs_metrics", "benchmark_locations", "params:evaluation"],
                "crows_pairs_section",
                name="render_crows_pairs_section",
            ),
            # Capability retention: KL on the reference's completions, neutral perplexity.
            node(
                retention.score_retention,
                ["evaluation_pairs", "neutral_texts", "params:evaluation", "params:taxonomy", "eval_models"],
                ["retention_scores", "retention_info"],
                name="score_retention",
            ),
            node(
                retention.retention_metrics,
                ["retention_scores", "retention_info", "params:evaluation", "eval_run_info"],
                "retention_metrics",
                name="build_retention_metrics",
            ),
            node(
                retention.retention_headline,
                "retention_metrics",
                "retention_headline",
                name="retention_headline",
            ),
            node(retention.plot_retention, "retention_metrics", "retention_chart", name="plot_retention"),
            node(
                retention.render_retention_section,
                ["retention_metrics", "benchmark_locations"],
                "retention_section",
                name="render_retention_section",
            ),
            node(
                retention.render_health_section,
                ["retention_metrics", "training_health", "eval_run_info"],
                "health_section",
                name="render_health_section",
            ),
        ]
    )
