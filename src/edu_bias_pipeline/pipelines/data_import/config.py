"""Typed parameters of the data_import stage (`data_import:` in parameters_data_import.yml).

An importer runs when its `path` is set. Lists may also be given as one string separated by `+`, `;` or
spaces, because `kedro run --params` splits its argument on commas
(`--params data_import.cbbq.categories=age+gender`).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edu_bias_pipeline.params import StageConfig
from edu_bias_pipeline.pipelines.data_import.cbbq import ALL
from edu_bias_pipeline.pipelines.data_import.importers import DEFAULT_UNKNOWN_ANSWERS

PARAMS_HINT = "conf/base/parameters_data_import.yml (or --params data_import.<importer>.<key>=...)"


def _as_list(value: Any) -> Any:
    if isinstance(value, str):
        return [item for item in re.split(r"[+;\s]+", value) if item]
    return value


class CbbqConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str | None = None
    categories: list[str] = Field(default_factory=lambda: [ALL])
    conditions: list[Literal["ambiguous", "disambiguous"]] = Field(default_factory=lambda: ["ambiguous"])
    license: str = "CC BY-SA 4.0"
    unknown_answers: list[str] = Field(default_factory=lambda: list(DEFAULT_UNKNOWN_ANSWERS))
    target_markers: dict[str, list[str]] = Field(default_factory=dict)
    eval_only: bool = False

    _lists = field_validator("categories", "conditions", "unknown_answers", mode="before")(_as_list)

    @field_validator("target_markers", mode="before")
    @classmethod
    def _marker_lists(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: _as_list(v) for k, v in value.items()}
        return value


class CrowsPairsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str | None = None
    license: str = "CC BY-SA 4.0"
    # Its data statement: "It should not be used to train any machine learning models."
    eval_only: Literal[True] = True


class GenericColumns(BaseModel):
    model_config = ConfigDict(extra="forbid")

    chosen: str = "chosen"
    rejected: str = "rejected"
    prompt: str | None = None
    bias_type: str | None = None
    id: str | None = None


class GenericConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str | None = None
    format: Literal["auto", "csv", "tsv", "jsonl"] = "auto"
    columns: GenericColumns = Field(default_factory=GenericColumns)
    bias_type: str | None = None
    bias_type_map: dict[str, str] = Field(default_factory=dict)
    meta_columns: list[str] = Field(default_factory=list)
    source: str = "generic"
    license: str | None = None
    eval_only: bool = False

    _lists = field_validator("meta_columns", mode="before")(_as_list)

    @model_validator(mode="after")
    def _license_with_path(self) -> GenericConfig:
        if self.path and not self.license:
            raise ValueError(
                "data_import.generic.license is required: the license travels into every imported row's meta "
                f"(set it in {PARAMS_HINT}, e.g. --params data_import.generic.license=CC-BY-4.0)"
            )
        return self


class ImportConfig(StageConfig):
    stage = "data_import"

    cbbq: CbbqConfig = Field(default_factory=CbbqConfig)
    crows_pairs: CrowsPairsConfig = Field(default_factory=CrowsPairsConfig)
    generic: GenericConfig = Field(default_factory=GenericConfig)
    skipped_examples_per_reason: int = Field(3, ge=0)

    def enabled(self) -> list[str]:
        return [name for name in ("cbbq", "crows_pairs", "generic") if getattr(self, name).path]
