"""data_import: downloaded benchmarks -> imported pairs (catalog `imported_pairs`) + an import report."""

from kedro.pipeline import Pipeline, node, pipeline

from edu_bias_pipeline.pipelines.data_import.nodes import (
    check_import_params,
    combine_imports,
    import_cbbq_source,
    import_crows_pairs_source,
    import_generic_source,
)


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(check_import_params, "params:data_import", "import_config", name="check_import_params"),
            node(import_cbbq_source, ["import_config", "params:taxonomy"], "cbbq_import", name="import_cbbq"),
            node(
                import_crows_pairs_source,
                ["import_config", "params:taxonomy"],
                "crows_pairs_import",
                name="import_crows_pairs",
            ),
            node(
                import_generic_source,
                ["import_config", "params:taxonomy"],
                "generic_import",
                name="import_generic",
            ),
            node(
                combine_imports,
                [
                    "import_config",
                    "data_import_locations",
                    "cbbq_import",
                    "crows_pairs_import",
                    "generic_import",
                ],
                ["imported_pairs", "import_report", "import_skipped"],
                name="combine_imports",
            ),
        ]
    )
