"""Typed parameters of the evaluation stage (`evaluation:` in parameters_evaluation.yml)."""

from __future__ import annotations

from pydantic import Field, PositiveInt

from edu_bias_pipeline.params import StageConfig
from edu_bias_pipeline.pipelines.evaluation.crows_stereotype import CrowsPairsConfig
from edu_bias_pipeline.pipelines.evaluation.length_confound import LengthConfoundConfig
from edu_bias_pipeline.pipelines.evaluation.retention import RetentionConfig
from edu_bias_pipeline.scoring import Dtype


class EvaluationConfig(StageConfig):
    """Which model to evaluate and how to run the scoring passes.

    `checkpoint` null (the default) scores the model training recorded in `trained_model`; a path scores
    that model instead (any final/ or checkpoint-N/, or a model trained elsewhere) and the report says so.
    `reference_model`, `beta`, `instruction` and `max_length` default to the checkpoint's
    `edu_bias_training.json` (or, for a `checkpoint-N` directory, the run's `final/` one); a value set
    here overrides it, and is required where there is no metadata at all (a model trained elsewhere).
    """

    stage = "evaluation"

    checkpoint: str | None = None
    reference_model: str | None = None
    beta: float | None = Field(None, gt=0)
    instruction: str | None = None
    max_length: PositiveInt | None = None
    # Pairs per forward pass; null = 16 on CPU, 256 on a GPU (small batches leave an H100 idle).
    batch_size: PositiveInt | None = None
    # auto: bf16 on a GPU that supports it, float32 on CPU. float64 exists for the correctness tests.
    dtype: Dtype = "auto"
    device: str = "auto"
    trust_remote_code: bool = False
    # null: a progress bar only for long runs (>= 512 pairs)
    progress: bool | None = None
    # Reference log-probs kept here and reused by later runs on the same pairs and reference weights (only
    # for checkpoints whose training recorded the reference's hash: the gpu profile's runs); null: off.
    reference_cache_dir: str | None = "data/06_models/reference_cache"
    # CrowS-Pairs stereotype score, capability retention (KL, neutral perplexity), length-confound rule.
    crows_pairs: CrowsPairsConfig = Field(default_factory=CrowsPairsConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    length_confound: LengthConfoundConfig = Field(default_factory=LengthConfoundConfig)
