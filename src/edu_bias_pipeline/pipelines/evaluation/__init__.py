"""evaluation stage: per-category implicit-reward accuracy of a trained checkpoint vs its reference."""

from edu_bias_pipeline.pipelines.evaluation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
