"""Custom Kedro datasets. Every file output of the catalog is one of these: saves are atomic."""

from edu_bias_pipeline.datasets.atomic import (
    AtomicSaveMixin,
    CSVDataset,
    JSONDataset,
    MatplotlibDataset,
    TextDataset,
)
from edu_bias_pipeline.datasets.fingerprint import FileFingerprintDataset
from edu_bias_pipeline.datasets.jsonl import JSONLinesDataset
from edu_bias_pipeline.datasets.location import LocationDataset, LocationsDataset
from edu_bias_pipeline.datasets.optional_json import OptionalJSONDataset
from edu_bias_pipeline.datasets.pair_file import PairFileDataset
from edu_bias_pipeline.datasets.raw_lines import RawLinesDataset
from edu_bias_pipeline.datasets.trained_model import TrainedModelDataset

__all__ = [
    "AtomicSaveMixin",
    "CSVDataset",
    "FileFingerprintDataset",
    "JSONDataset",
    "JSONLinesDataset",
    "LocationDataset",
    "LocationsDataset",
    "MatplotlibDataset",
    "OptionalJSONDataset",
    "PairFileDataset",
    "RawLinesDataset",
    "TextDataset",
    "TrainedModelDataset",
]
