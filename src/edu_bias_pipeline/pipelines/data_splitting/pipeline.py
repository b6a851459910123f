"""data_splitting: validated pairs -> leakage-free, stratified train/val/test (+ report and chart).

`params:data_splitting` is typed as `SplitConfig` in the node signatures, so Kedro validates it (and
fails with the offending key) when the run starts, before any node loads data.
"""

from kedro.pipeline import Pipeline, node, pipeline

from edu_bias_pipeline.pipelines.data_splitting.gate import check_validated_pairs
from edu_bias_pipeline.pipelines.data_splitting.headline import split_headline
from edu_bias_pipeline.pipelines.data_splitting.nodes import (
    assign_splits,
    balance_splits,
    build_split_report,
    plot_split_chart,
)

PARAMS = "params:data_splitting"


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            # First: refuse a validated_pairs file whose validation failed or that the summary does not
            # describe (a run killed between the two saves); nothing is split from such a file.
            node(
                check_validated_pairs,
                ["validated_pairs", "validation_summary"],
                "gated_validated_pairs",
                name="check_validated_pairs",
            ),
            node(
                assign_splits,
                ["gated_validated_pairs", PARAMS],
                ["split_assignments", "split_notes"],
                name="assign_splits",
            ),
            node(
                balance_splits,
                ["split_assignments", PARAMS, "split_notes"],
                ["train_pairs", "val_pairs", "test_pairs", "split_balancing"],
                name="balance_splits",
            ),
            node(
                build_split_report,
                [
                    "split_assignments",
                    "train_pairs",
                    "val_pairs",
                    "test_pairs",
                    "split_notes",
                    "split_balancing",
                    PARAMS,
                ],
                "split_report",
                name="build_split_report",
            ),
            node(plot_split_chart, "split_report", "split_chart", name="plot_split_chart"),
            node(split_headline, "split_report", "split_headline", name="split_headline"),
        ]
    )
