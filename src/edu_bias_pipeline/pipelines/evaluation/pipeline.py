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
from edu_bias_pipeline.pipelines.evaluation.cbbq_qa import (
    compute_cbbq_metrics,
    read_cbbq_questions,
    score_cbbq_questions,
    select_cbbq_questions,
)
from edu_bias_pipeline.pipelines.evaluation.cbbq_qa_report import plot_cbbq_qa, render_cbbq_section
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
            node(
                build_headline,
                ["eval_metrics", "cbbq_qa_headline"],
                "eval_headline",
                name="build_eval_headline",
            ),
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
                    "cbbq_qa_section",
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
            # CBBQ as multiple-choice questions, in the benchmark's own metric (evaluation.cbbq_qa).
            node(
                read_cbbq_questions,
                ["cbbq_qa_source", "params:evaluation", "params:data_import", "params:taxonomy"],
                ["cbbq_qa_questions", "cbbq_qa_source_info"],
                name="read_cbbq_questions",
            ),
            node(
                select_cbbq_questions,
                [
                    "cbbq_qa_questions",
                    "params:evaluation",
                    "cbbq_qa_training_data",
                    "cbbq_qa_source_info",
                    "trained_model",
                ],
                ["cbbq_qa_selected", "cbbq_qa_selection"],
                name="select_cbbq_questions",
            ),
            node(
                score_cbbq_questions,
                ["cbbq_qa_selected", "params:evaluation", "eval_models", "eval_run_info"],
                ["cbbq_qa_scores", "cbbq_qa_run_info"],
                name="score_cbbq_questions",
            ),
            node(
                compute_cbbq_metrics,
                ["cbbq_qa_scores", "cbbq_qa_selection", "cbbq_qa_run_info", "params:evaluation"],
                ["cbbq_qa_metrics", "cbbq_qa_table", "cbbq_qa_headline"],
                name="compute_cbbq_metrics",
            ),
            node(plot_cbbq_qa, "cbbq_qa_table", "cbbq_qa_chart", name="plot_cbbq_qa"),
            node(
                render_cbbq_section,
                ["cbbq_qa_table", "cbbq_qa_metrics", "cbbq_qa_selection", "cbbq_qa_run_info"],
                "cbbq_qa_section",
                name="render_cbbq_section",
            ),
        ]
    )
