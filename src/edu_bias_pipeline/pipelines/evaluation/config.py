"""Typed parameters of the evaluation stage (`evaluation:` in parameters_evaluation.yml)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, field_validator

from edu_bias_pipeline.params import StageConfig
from edu_bias_pipeline.pipelines.evaluation.crows_stereotype import CrowsPairsConfig
from edu_bias_pipeline.pipelines.evaluation.length_confound import LengthConfoundConfig
from edu_bias_pipeline.pipelines.evaluation.retention import RetentionConfig
from edu_bias_pipeline.scoring import Dtype


class CbbqQaConfig(BaseModel):
    """CBBQ scored as the multiple-choice benchmark it is (`evaluation.cbbq_qa`): each answer's log-likelihood
    after the context and question, the argmax as the model's answer, BBQ's and CBBQ's bias scores.

    The questions come from the catalog entry `cbbq_qa_source`: the sample shipped in the repository unless
    `--params cbbq_qa_path=/path/to/CBBQ/data` names a full copy of the benchmark.
    """

    model_config = ConfigDict(extra="forbid")

    # false: no CBBQ scoring at all (the outputs then say it was switched off).
    enabled: bool = True
    # CBBQ category folder names (age, SES, gender, ...); `all` = every category folder present.
    categories: list[str] = Field(default_factory=lambda: ["all"])
    # Context conditions to score, as CBBQ names its folders.
    conditions: list[Literal["ambiguous", "disambiguous"]] = Field(
        default_factory=lambda: ["ambiguous", "disambiguous"]
    )
    # Questions drawn per category and condition (half negative, half non-negative where the data allow),
    # seeded; null scores every question. Keep it small on a CPU; null on a GPU for the whole benchmark.
    sample_per_category: PositiveInt | None = 24
    seed: int = 0
    # What "trained on" means for leaving questions out: `item` drops the questions whose pairs are in the
    # train or val split; `template` also drops every other question generated from the same CBBQ template
    # (same category and question_index: the same text with other names filled in).
    exclude_trained: Literal["item", "template"] = "template"
    # Questions per forward pass (each pass stacks their three answers); null = evaluation.batch_size, else
    # 16 on CPU and 128 on a GPU.
    batch_size: PositiveInt | None = None
    # Bootstrap resamples behind each bias score's 95% interval; 0 turns the intervals off.
    bootstrap_resamples: NonNegativeInt = 1000

    @field_validator("categories", "conditions", mode="before")
    @classmethod
    def _plus_separated(cls, value: Any) -> Any:
        # `kedro run --params` splits on commas, so lists come as `age+gender` on the command line.
        if isinstance(value, str):
            return [item for item in re.split(r"[+;\s]+", value) if item]
        return value

    @field_validator("categories", "conditions")
    @classmethod
    def _each_once(cls, value: list[str]) -> list[str]:
        # A name given twice (`ambiguous+ambiguous`) would score its questions twice and count them twice.
        return list(dict.fromkeys(value))


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
    cbbq_qa: CbbqQaConfig = Field(default_factory=CbbqQaConfig)
