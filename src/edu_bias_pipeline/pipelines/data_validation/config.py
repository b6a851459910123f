"""Typed parameters of the data_validation stage (`data_validation:` in parameters_data_validation.yml)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from edu_bias_pipeline.params import StageConfig

PARAMS_HINT = "conf/base/parameters_data_validation.yml (or --params data_validation.<key>=...)"

Severity = Literal["error", "warning"]
SeveritySetting = Literal["error", "warning", "off"]

_IN_CATALOG = (
    "Paths are set once, in conf/base/catalog.yml; remove the key from parameters_data_validation.yml"
)


class ValidationConfig(StageConfig):
    """Bounds, thresholds and severities of the pair checks, and the quality gate."""

    stage = "data_validation"
    # Parameters of earlier releases that repeated a catalog path: the entry that now holds it.
    moved_keys = {
        "input_path": "the input file is the catalog's `raw_pairs` filepath (--params raw_pairs_path=PATH). "
        + _IN_CATALOG,
        "summary_path": f"the summary file is the catalog's `validation_summary` filepath. {_IN_CATALOG}",
        "quarantine_path": "the quarantine file is the catalog's `quarantined_pairs` filepath. "
        + _IN_CATALOG,
        "data_docs_dir": f"the Data Docs directory is the catalog's `data_docs` filepath. {_IN_CATALOG}",
    }

    # Shortest chosen/rejected text in characters, after normalisation; shorter is `length_out_of_bounds`.
    min_chars: int = Field(2, ge=0)
    # Longest chosen/rejected text, in characters after normalisation.
    max_chars: int = Field(1000, ge=1)
    # Longest prompt, in characters; raise it for benchmarks whose prompts carry a long context.
    max_prompt_chars: int = Field(2000, ge=1)
    # `similar_pair` flags a pair whose chosen and rejected both reach this rapidfuzz ratio (0..100)
    # against an earlier pair with the same prompt; lower it to catch looser paraphrases.
    similarity_threshold: float = Field(96.0, ge=0, le=100)
    # Neighbours each pair is compared with in the sorted similarity search; larger finds more, runs longer.
    similarity_window: int = Field(3, ge=1)
    # `category_below_minimum` warns for a bias type with fewer kept pairs than this.
    min_pairs_per_category: int = Field(30, ge=0)
    # The run fails when more than this share of the rows is quarantined (0..1).
    max_error_rate: float = Field(0.1, ge=0, le=1)
    # Per-check severity overrides (check name -> error | warning | off); `off` drops the check.
    severity: dict[str, SeveritySetting] = Field(default_factory=dict)
    # Name of the Great Expectations suite in the Data Docs.
    suite_name: str = "validated_pairs"

    @model_validator(mode="after")
    def _bounds_ordered(self) -> ValidationConfig:
        if self.min_chars > self.max_chars:
            raise ValueError(
                f"data_validation.min_chars ({self.min_chars}) is greater than data_validation.max_chars "
                f"({self.max_chars}): every text would be out of bounds and quarantined. Set min_chars <= "
                f"max_chars in {PARAMS_HINT}"
            )
        return self
