"""Where a catalog entry lives, as data: for nodes that name a file in a report or write a directory
themselves, so the path is set once, in the catalog.

`LocationDataset` loads its own `filepath`; `LocationsDataset` loads a dict of named paths, each usually
interpolated from another entry (`${validation_summary.filepath}`). Both are read-only.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError


class LocationDataset(AbstractDataset[None, str]):
    """Loads `filepath` itself (as written in the catalog): the place a node writes, e.g. a Data Docs site
    that Great Expectations builds as a directory of files."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = str(PurePosixPath(filepath))
        self.metadata = metadata

    def load(self) -> str:
        return self._filepath

    def save(self, data: None) -> None:
        raise DatasetError(f"{type(self).__name__} is read-only: it names {self._filepath}, a node writes it")

    def _exists(self) -> bool:
        return True

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath}


class LocationsDataset(AbstractDataset[None, dict[str, str]]):
    """Loads `paths` (name → path) as given: the files a report names, each taken from its catalog entry."""

    def __init__(self, paths: dict[str, str], metadata: dict[str, Any] | None = None) -> None:
        self._paths = {str(name): str(PurePosixPath(path)) for name, path in paths.items()}
        self.metadata = metadata

    def load(self) -> dict[str, str]:
        return dict(self._paths)

    def save(self, data: None) -> None:
        raise DatasetError(f"{type(self).__name__} is read-only: it names the files other entries write")

    def _exists(self) -> bool:
        return True

    def _describe(self) -> dict[str, Any]:
        return {"paths": self._paths}
