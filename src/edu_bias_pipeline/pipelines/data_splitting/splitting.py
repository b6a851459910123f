"""Pure split logic: leakage groups, per-category targets, group-to-split assignment, balancing.

Everything here works on plain Python lists/dicts so it can be property-tested without Kedro; the nodes
turn DataFrames into these inputs and back. Randomness always comes from a `random.Random` seeded with a
string that names the seed *and* the category, so one category's split does not change when another
category gains or loses pairs.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from edu_bias_pipeline.pairs import near_duplicate_key, normalize_text

SPLITS = ("train", "val", "test")

K = TypeVar("K", bound=Hashable)


class UnionFind:
    """Disjoint sets over 0..n-1; the representative of a set is its smallest member (stable ids)."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            lo, hi = (ra, rb) if ra < rb else (rb, ra)
            self.parent[hi] = lo


Key = tuple[str, str]

# A text is shown in the report and in messages cut to this many characters.
TEXT_PREVIEW_CHARS = 80


def preview(text: str) -> str:
    return text if len(text) <= TEXT_PREVIEW_CHARS else text[: TEXT_PREVIEW_CHARS - 1] + "…"


def text_keys(texts: Iterable[str | None], near_duplicates: bool) -> set[Key]:
    """The keys under which two pairs count as sharing a text, whatever role (prompt, chosen, rejected).

    A missing or blank text (a pair without prompt) has no key. An empty near-duplicate key (a text of only
    punctuation/symbols) is skipped: it would glue together every such text although they share nothing;
    the exact normalised key still catches true repeats.
    """
    keys: set[Key] = set()
    for text in texts:
        if not text or not text.strip():
            continue
        keys.add(("exact", normalize_text(text)))
        if near_duplicates:
            folded = near_duplicate_key(text)
            if folded:
                keys.add(("near", folded))
    return keys


@dataclass
class Grouping:
    """Leakage groups and how they were formed.

    `group_of[i]` is the id of pair i's group (the index of its first pair). `pairs_per_key` counts the
    pairs holding each text key; `common` are the keys held by more than the threshold's pairs, which do
    not link pairs. `shown[key]` is the text a key is reported under (its smallest normalised form, so the
    report does not depend on input order).
    """

    group_of: list[int]
    pairs_per_key: dict[Key, int]
    common: set[Key]
    shown: dict[Key, str]
    common_text_pairs: int | None
    first_pair: dict[Key, int]

    def linking_keys(self) -> list[Key]:
        """Keys that joined two or more pairs (shared, not common), sorted for deterministic reports."""
        return sorted(k for k, n in self.pairs_per_key.items() if n > 1 and k not in self.common)


def group_pairs(
    texts_per_pair: Sequence[Sequence[str | None]],
    near_duplicates: bool = True,
    common_text_pairs: int | None = None,
) -> Grouping:
    """Group pairs that share a text key, directly or through a chain (union-find), ignoring common keys.

    A key held by more than `common_text_pairs` pairs is boilerplate (a stock prompt, a generic "cannot be
    determined" answer): it says nothing about which pairs belong together, and letting it link would
    chain the whole corpus into one group. `None` lets every shared key link.
    """
    keys_per_pair = [text_keys(texts, near_duplicates) for texts in texts_per_pair]
    pairs_per_key: Counter[Key] = Counter()
    shown: dict[Key, str] = {}
    for texts, keys in zip(texts_per_pair, keys_per_pair, strict=True):
        pairs_per_key.update(keys)
        for text in texts:
            if not text or not text.strip():
                continue
            norm = normalize_text(text)
            shown[("exact", norm)] = norm
            if near_duplicates and (folded := near_duplicate_key(text)):
                key = ("near", folded)
                shown[key] = min(shown.get(key, norm), norm)
    common = (
        set() if common_text_pairs is None else {k for k, n in pairs_per_key.items() if n > common_text_pairs}
    )
    uf = UnionFind(len(texts_per_pair))
    first_with_key: dict[Key, int] = {}
    for i, keys in enumerate(keys_per_pair):
        for key in keys:
            if key in common:
                continue
            j = first_with_key.setdefault(key, i)
            if j != i:
                uf.union(i, j)
    group_of = [uf.find(i) for i in range(len(texts_per_pair))]
    return Grouping(group_of, dict(pairs_per_key), common, shown, common_text_pairs, first_with_key)


def leakage_groups(
    texts_per_pair: Sequence[Sequence[str | None]],
    near_duplicates: bool = True,
    common_text_pairs: int | None = None,
) -> list[int]:
    """Group id per pair (see `group_pairs`); the id of a group is the index of its first pair."""
    return group_pairs(texts_per_pair, near_duplicates, common_text_pairs).group_of


def group_links(grouping: Grouping) -> dict[int, tuple[int, Key]]:
    """Per multi-pair group: (number of shared texts linking it, the most-shared one of them).

    A text's exact and near-duplicate forms count as one text. The most-shared linking text is what a
    person looks at to see why a group is large; ties go to the smallest key, so the choice does not
    depend on input order.
    """
    texts: dict[int, set[str]] = defaultdict(set)
    best: dict[int, Key] = {}
    for key in grouping.linking_keys():
        g = grouping.group_of[grouping.first_pair[key]]
        texts[g].add(grouping.shown[key])
        if g not in best or grouping.pairs_per_key[key] > grouping.pairs_per_key[best[g]]:
            best[g] = key
    return {g: (len(texts[g]), best[g]) for g in best}


def size_distribution(sizes: Sequence[int]) -> dict[str, object]:
    """Group sizes: count, max, mean, nearest-rank percentiles, and the pairs in groups of each size."""
    ordered = sorted(sizes)
    if not ordered:
        return {"count": 0}

    def percentile(q: float) -> int:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    buckets = {"1": (1, 1), "2-5": (2, 5), "6-20": (6, 20), "21-100": (21, 100), "101+": (101, math.inf)}
    return {
        "count": len(ordered),
        "max": ordered[-1],
        "mean": round(sum(ordered) / len(ordered), 3),
        "percentiles": {"p50": percentile(0.5), "p90": percentile(0.9), "p99": percentile(0.99)},
        "pairs_by_group_size": {
            label: sum(n for n in ordered if lo <= n <= hi) for label, (lo, hi) in buckets.items()
        },
    }


def ratio_misses(
    counts: Mapping[str, Mapping[str, int]], ratios: Mapping[str, float], tolerance: float
) -> list[dict[str, object]]:
    """Splits whose realised share of a category misses the configured ratio by more than `tolerance`.

    One pair of deviation is always allowed: it is the rounding of ratio x n to whole pairs.
    """
    misses: list[dict[str, object]] = []
    for category, by_split in sorted(counts.items()):
        n = sum(by_split.values())
        if n == 0:
            continue
        allowed = max(1.0, tolerance * n)
        for split in SPLITS:
            got = by_split.get(split, 0)
            if abs(got - ratios[split] * n) > allowed + 1e-9:
                misses.append(
                    {
                        "category": category,
                        "split": split,
                        "pairs": got,
                        "of": n,
                        "realised": round(got / n, 4),
                        "configured": ratios[split],
                    }
                )
    return misses


def majority_label(labels: Iterable[str]) -> str:
    """Most frequent label; ties go to the alphabetically first one (deterministic)."""
    counts = Counter(labels)
    return min(counts, key=lambda label: (-counts[label], label))


def allocate_targets(n: int, ratios: Mapping[str, float]) -> dict[str, int]:
    """Integer split sizes summing to n, each within 1 of ratio * n (largest-remainder rounding).

    Ties in the remainders go to the split listed first (train before val before test).
    """
    exact = {s: ratios[s] * n for s in SPLITS}
    sizes = {s: int(exact[s]) for s in SPLITS}
    leftover = n - sum(sizes.values())
    by_remainder = sorted(SPLITS, key=lambda s: (-(exact[s] - sizes[s]), SPLITS.index(s)))
    for s in by_remainder[:leftover]:
        sizes[s] += 1
    return sizes


def category_rng(seed: int, purpose: str, category: str) -> random.Random:
    # String seeds are hashed (SHA-512) by `random`, identically on every platform and Python 3 version.
    return random.Random(f"{seed}:{purpose}:{category}")


def assign_groups(
    groups: Mapping[Hashable, int],
    targets: Mapping[str, int],
    rng: random.Random,
    order_key: Mapping[Hashable, str] | None = None,
) -> dict[Hashable, str]:
    """Place whole groups (id -> size) into splits, getting as close to `targets` as group sizes allow.

    Groups are shuffled, then taken largest first (stable, so equal sizes keep the shuffled order), each
    into the split still furthest below its target. With single-pair groups this meets the targets exactly;
    larger groups can overshoot a split by less than their size.
    """
    ids = sorted(groups, key=lambda g: (order_key or {}).get(g, str(g)))
    rng.shuffle(ids)
    ids.sort(key=lambda g: -groups[g])
    filled = dict.fromkeys(SPLITS, 0)
    placement: dict[Hashable, str] = {}
    for g in ids:
        split = max(SPLITS, key=lambda s: (targets[s] - filled[s], -SPLITS.index(s)))
        placement[g] = split
        filled[split] += groups[g]
    return placement


def downsample_indices(
    by_category: Mapping[str, Sequence[int]], cap: int, seed: int
) -> tuple[list[int], dict[str, int]]:
    """Keep at most `cap` rows per category (random, seeded); returns kept indices and drops per category."""
    kept: list[int] = []
    dropped: dict[str, int] = {}
    for category, idx in sorted(by_category.items()):
        if len(idx) > cap:
            chosen = category_rng(seed, "downsample", category).sample(list(idx), cap)
            kept.extend(chosen)
            dropped[category] = len(idx) - cap
        else:
            kept.extend(idx)
    return sorted(kept), dropped


def upsample_indices(by_category: Mapping[str, Sequence[int]], seed: int) -> tuple[list[int], dict[str, int]]:
    """Repeat rows of the smaller categories until each has as many as the largest.

    Whole passes over a category first, then a seeded sample without replacement for the remainder, so no
    pair is repeated twice more often than another. Returns indices (with repeats, sorted so that copies
    sit next to their original) and rows added per category.
    """
    if not by_category:
        return [], {}
    target = max(len(idx) for idx in by_category.values())
    out: list[int] = []
    added: dict[str, int] = {}
    for category, idx in sorted(by_category.items()):
        idx = list(idx)
        out.extend(idx)
        extra = target - len(idx)
        if extra <= 0 or not idx:
            continue
        full, rest = divmod(extra, len(idx))
        out.extend(idx * full)
        out.extend(category_rng(seed, "upsample", category).sample(idx, rest))
        added[category] = extra
    return sorted(out), added


def balanced_weights(counts: Mapping[str, int]) -> dict[str, float]:
    """Per-category weight n_total / (k * n_category): every category carries the same total weight, and
    the mean weight over the rows is 1, so the loss scale is unchanged."""
    present = {c: n for c, n in counts.items() if n > 0}
    if not present:
        return {}
    total, k = sum(present.values()), len(present)
    return {c: round(total / (k * n), 6) for c, n in sorted(present.items())}


def group_by(values: Sequence[K], indices: Iterable[int]) -> dict[K, list[int]]:
    """Indices grouped by their value, groups in order of first appearance."""
    out: dict[K, list[int]] = defaultdict(list)
    for i in indices:
        out[values[i]].append(i)
    return dict(out)
