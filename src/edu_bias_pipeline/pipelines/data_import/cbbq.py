"""CBBQ on disk: its `<category>/<condition>/<condition>.csv` tree read into question rows, and its categories
mapped onto the project's bias-type taxonomy.

The data_import stage turns these rows into pairs (`importers.import_cbbq`); an evaluation that asks CBBQ's
questions reads the same rows with `read_cbbq_rows` and scores per bias type with `category_bias_types`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from edu_bias_pipeline.params import ParameterError
from edu_bias_pipeline.pipelines.data_import.tables import ImportSourceError, read_csv_table
from edu_bias_pipeline.taxonomy import resolver

CONDITIONS = ("ambiguous", "disambiguous")
ALL = "all"  # in `categories`: every category folder
# The parameter group that names the folder and the categories, in errors (`<group>.path`).
GROUP = "data_import.cbbq"


def cbbq_root(path: Path, group: str = GROUP, setting: str | None = None) -> Path:
    """The folder holding the category folders; the repository root (with `data/`) is accepted too.

    Errors name `setting`, the parameter that gave the path (default `<group>.path`)."""
    setting = setting or f"{group}.path"
    if not path.is_dir():
        raise ImportSourceError(f"{setting} = {str(path)!r} is not a folder: point it at CBBQ's data/")
    for root in (path, path / "data"):
        if root.is_dir() and any(
            (sub / cond).is_dir() for sub in root.iterdir() if sub.is_dir() for cond in CONDITIONS
        ):
            return root
    raise ImportSourceError(
        f"{setting} = {str(path)!r} holds no CBBQ category folders "
        "(<category>/ambiguous/ambiguous.csv, <category>/disambiguous/disambiguous.csv)"
    )


def select_categories(root: Path, categories: Sequence[str], group: str = GROUP) -> list[str]:
    """The category folders under `root` that `categories` names (`all`: every one), in the order given."""
    available = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    wanted = available if ALL in categories else list(categories)
    unknown = [c for c in wanted if c not in available]
    if unknown:
        # A parameter typo: a click error, so `kedro run` prints this line alone, without a traceback.
        raise ParameterError(f"{group}.categories: {unknown} not found under {root}; available: {available}")
    return wanted


@dataclass(frozen=True)
class CbbqFile:
    """One selected category/condition file: its rows as read (`read_csv_table`), or None and why not."""

    path: Path
    category: str
    condition: str
    frame: pd.DataFrame | None
    missing: str = ""


def read_cbbq_files(
    path: Path | str,
    categories: Sequence[str] = (ALL,),
    conditions: Sequence[str] = ("ambiguous",),
    group: str = GROUP,
) -> list[CbbqFile]:
    """Every selected category × condition file under the CBBQ folder `path`, read, in selection order.

    A copy may lack the merged CSV of a category/condition (a partial copy has only the templates): that file
    comes back with `frame` None. Raises ImportSourceError when none of the selected files exists; `group`
    is the parameter group that named `path` and `categories`, for the errors."""
    root = cbbq_root(Path(path).expanduser(), group)
    wanted = select_categories(root, categories, group)
    files = []
    for category in wanted:
        for condition in conditions:
            file = root / category / condition / f"{condition}.csv"
            if file.is_file():
                files.append(CbbqFile(file, category, condition, read_csv_table(file)))
            else:
                note = "only templates_generate_*.csv present" if file.parent.is_dir() else "folder missing"
                files.append(CbbqFile(file, category, condition, None, note))
    if all(f.frame is None for f in files):
        raise ImportSourceError(
            f"CBBQ: none of the selected files exist under {root} (categories {wanted}, conditions "
            f"{list(conditions)}); missing: {[str(f.path) for f in files]}"
        )
    return files


def read_cbbq_rows(
    path: Path | str,
    categories: Sequence[str] = (ALL,),
    conditions: Sequence[str] = CONDITIONS,
    group: str = GROUP,
) -> pd.DataFrame:
    """CBBQ's question rows of the selected categories and conditions, as one table of text cells.

    Columns as in the release (context, question, ans0..ans2, label, category, context_condition,
    bias_targeted_groups, ...) plus `_record` and `_file`; an empty `category` or `context_condition` cell
    takes its folder's name. Files missing from the copy are left out (see `read_cbbq_files`)."""
    frames = []
    for file in read_cbbq_files(path, categories, conditions, group):
        if file.frame is None:
            continue
        frame = file.frame.copy()
        for column, folder in (("category", file.category), ("context_condition", file.condition)):
            cells = frame[column] if column in frame.columns else pd.Series("", index=frame.index)
            frame[column] = cells.where(cells.str.strip() != "", folder)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def category_bias_types(
    categories: Iterable[str], taxonomy: Mapping[str, Sequence[str] | None]
) -> dict[str, str | None]:
    """CBBQ category (folder or `category` cell, e.g. `SES`) -> the taxonomy's canonical bias type, or None
    for a category the taxonomy lacks (add it as an alias under `taxonomy` in the parameters)."""
    canonical = resolver(taxonomy)
    return {category: canonical(category) for category in categories}
