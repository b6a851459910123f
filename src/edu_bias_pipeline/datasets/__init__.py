"""Custom Kedro datasets."""

from edu_bias_pipeline.datasets.jsonl import JSONLinesDataset
from edu_bias_pipeline.datasets.raw_lines import RawLinesDataset

__all__ = ["JSONLinesDataset", "RawLinesDataset"]
