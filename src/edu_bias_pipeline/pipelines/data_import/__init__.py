"""data_import stage (optional): CBBQ / CrowS-Pairs / any CSV or JSONL -> raw pairs for data_validation."""

from edu_bias_pipeline.pipelines.data_import.pipeline import create_pipeline

__all__ = ["create_pipeline"]
