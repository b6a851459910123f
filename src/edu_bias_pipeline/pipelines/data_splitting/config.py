"""Typed parameters of the data_splitting stage (`data_splitting:` in parameters_data_splitting.yml)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

from edu_bias_pipeline.params import StageConfig

Balancing = Literal["none", "downsample", "upsample", "weights"]


class SplitRatios(BaseModel):
    model_config = ConfigDict(extra="forbid")

    train: float = Field(0.8, ge=0.0, le=1.0)
    val: float = Field(0.1, ge=0.0, le=1.0)
    test: float = Field(0.1, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitRatios:
        total = self.train + self.val + self.test
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(
                f"ratios must sum to 1, got train={self.train} + val={self.val} + test={self.test}"
                f" = {total:g}"
            )
        if self.train <= 0:
            raise ValueError("ratios.train must be > 0: there would be nothing to train on")
        return self

    def as_dict(self) -> dict[str, float]:
        return {"train": self.train, "val": self.val, "test": self.test}


class SplitConfig(StageConfig):
    stage = "data_splitting"

    seed: int = 42
    ratios: SplitRatios = Field(default_factory=SplitRatios)
    balancing: Balancing = "none"
    max_per_category: PositiveInt | None = None
    min_pairs_per_category: PositiveInt = 10
    group_near_duplicates: bool = True
    # A text held by more than this many pairs is boilerplate and does not group pairs (None: every one does).
    common_text_pairs: PositiveInt | None = 20
    # Largest allowed |realised - configured| ratio per category and split (one pair is always allowed).
    ratio_tolerance: float = Field(0.02, ge=0.0, le=1.0)
