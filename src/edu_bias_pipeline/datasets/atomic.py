"""kedro-datasets file datasets whose saves are all-or-nothing (see `edu_bias_pipeline.files`)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import DatasetError
from kedro.io.core import get_filepath_str
from kedro_datasets.json import JSONDataset as _JSONDataset
from kedro_datasets.matplotlib import MatplotlibDataset as _MatplotlibDataset
from kedro_datasets.pandas import CSVDataset as _CSVDataset
from kedro_datasets.text import TextDataset as _TextDataset

from edu_bias_pipeline import patches
from edu_bias_pipeline.files import OutputNotWritableError, atomic_path, not_writable_error


class AtomicSaveMixin:
    """Put before a kedro-datasets file dataset: its `save` writes `.<name>.tmp-<pid>` beside the target
    (the dataset's own code, redirected through `_get_save_path`), which is synced and renamed into place.

    A kill or an error mid-save leaves the previous file untouched; a write refused by the file system
    (read-only `data/`, full disk) fails with a message naming the path and what to do. Datasets on
    object stores (s3://, gs://, ...) save as before: an object upload is all-or-nothing already.
    """

    _atomic_tmp: PurePosixPath | None = None

    def _get_save_path(self) -> PurePosixPath:
        if self._atomic_tmp is not None:
            return self._atomic_tmp
        return super()._get_save_path()  # type: ignore[misc]

    def save(self, data: Any) -> None:
        if getattr(self, "_protocol", "file") != "file":
            super().save(data)  # type: ignore[misc]
            return
        patches.require("atomic_saves")
        target = Path(get_filepath_str(super()._get_save_path(), "file"))  # type: ignore[misc]
        try:
            with atomic_path(target) as tmp:
                self._atomic_tmp = PurePosixPath(tmp.as_posix())
                try:
                    super().save(data)  # type: ignore[misc]
                except DatasetError as exc:
                    # kedro wraps the OSError of its own open(); unwrap it for a message users can act on
                    if isinstance(exc.__cause__, OSError):
                        raise exc.__cause__ from None
                    raise
                finally:
                    self._atomic_tmp = None
        except OutputNotWritableError as exc:
            raise DatasetError(str(exc)) from exc
        except OSError as exc:  # raised before or after the atomic write (e.g. the target's directory)
            raise DatasetError(str(not_writable_error(target, exc))) from exc
        invalidate = getattr(self, "_invalidate_cache", None)
        if invalidate is not None:
            invalidate()


class JSONDataset(AtomicSaveMixin, _JSONDataset):
    """`json.JSONDataset`, saved atomically."""


class TextDataset(AtomicSaveMixin, _TextDataset):
    """`text.TextDataset`, saved atomically."""


class CSVDataset(AtomicSaveMixin, _CSVDataset):
    """`pandas.CSVDataset`, saved atomically."""


class MatplotlibDataset(AtomicSaveMixin, _MatplotlibDataset):
    """`matplotlib.MatplotlibDataset` for one figure per file, saved atomically."""

    def save(self, data: Any) -> None:
        if isinstance(data, list | dict):
            # kedro-datasets writes these as a directory of images and removes the old one first; that
            # removal goes to the real path, so it is not routed through a temporary name here.
            kind = type(data).__name__
            raise DatasetError(f"{type(self).__name__} saves one figure per file, got a {kind}")
        super().save(data)
