"""data_splitting stage: stratified, group-aware (no text leakage) train/val/test split with balancing."""

from edu_bias_pipeline.pipelines.data_splitting.pipeline import create_pipeline

__all__ = ["create_pipeline"]
