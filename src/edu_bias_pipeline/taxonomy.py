"""Bias-type taxonomy: canonical names and their aliases (the `taxonomy` table in parameters).

Shared by the validation stage and the importers, so it stays free of heavy imports.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
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


def resolver(taxonomy: Mapping[str, Sequence[str] | None]) -> Callable[[Any], str | None]:
    """`canonical_bias_type` for one taxonomy, its alias table built once: for row-by-row lookups."""
    table = alias_table(taxonomy)

    def canonical(label: Any) -> str | None:
        if not isinstance(label, str) or not label.strip():
            return None
        return table.get(label_key(label))

    return canonical


def canonical_bias_type(label: Any, taxonomy: Mapping[str, Sequence[str] | None]) -> str | None:
    """The canonical taxonomy name for `label` (a canonical name or an alias), or None if unknown.

    >>> canonical_bias_type("Gender", {"gender_sexuality": ["gender"]})
    'gender_sexuality'
    """
    return resolver(taxonomy)(label)
