"""Custom Kedro datasets."""

from edu_bias_pipeline.datasets.jsonl import JSONLinesDataset
from edu_bias_pipeline.datasets.pair_file import PairFileDataset
from edu_bias_pipeline.datasets.raw_lines import RawLinesDataset
from edu_bias_pipeline.datasets.trained_model import TrainedModelDataset

__all__ = ["JSONLinesDataset", "PairFileDataset", "RawLinesDataset", "TrainedModelDataset"]
