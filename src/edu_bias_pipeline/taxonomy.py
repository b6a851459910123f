"""Bias-type taxonomy: canonical names and their aliases (the `taxonomy` table in parameters).

Shared by the validation stage and the importers, so it stays free of heavy imports.
"""

from __future__ import annotations

import copy
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

_SEPARATORS = re.compile(r"[\s\-]+")


def label_key(label: str) -> str:
    """The form labels are compared in: NFKC, case-folded, trimmed, '-' and spaces read as '_'."""
    folded = unicodedata.normalize("NFKC", label).strip().casefold()
    return _SEPARATORS.sub("_", folded)


def alias_table(taxonomy: Mapping[str, Sequence[str] | None]) -> dict[str, str]:
    """Every accepted spelling (canonical names and aliases, in `label_key` form) -> canonical name.

    Raises ValueError when one alias points at two canonical names: the table would be ambiguous.
    """
    table: dict[str, str] = {}
    for canonical, aliases in taxonomy.items():
        for spelling in (canonical, *(aliases or ())):
            key = label_key(str(spelling))
            previous = table.setdefault(key, canonical)
            if previous != canonical:
                raise ValueError(f"taxonomy alias {spelling!r} maps to both {previous!r} and {canonical!r}")
    return table


def _freeze(taxonomy: Mapping[str, Sequence[str] | None]) -> dict[str, tuple[str, ...]]:
    return {str(k): tuple(str(a) for a in (v or ())) for k, v in taxonomy.items()}


# The last taxonomy asked about (a deep copy) and its alias table. Importers and evaluation look labels up
# row by row, so the check that the table still fits must cost far less than rebuilding it: comparing
# with the copy does (about 1 us); freezing the mapping into a hashable key each call cost ~10 us.
_last: tuple[dict[str, Any], dict[str, str]] | None = None


def _lookup_table(taxonomy: Mapping[str, Sequence[str] | None]) -> dict[str, str]:
    global _last
    last = _last
    if last is not None and last[0] == taxonomy:
        return last[1]
    table = alias_table(_freeze(taxonomy))
    _last = (copy.deepcopy(dict(taxonomy)), table)
    return table


def canonical_bias_type(label: Any, taxonomy: Mapping[str, Sequence[str] | None]) -> str | None:
    """The canonical taxonomy name for `label` (a canonical name or an alias), or None if unknown.

    >>> canonical_bias_type("Gender", {"gender_sexuality": ["gender"]})
    'gender_sexuality'
    """
    if not isinstance(label, str) or not label.strip():
        return None
    return _lookup_table(taxonomy).get(label_key(label))
