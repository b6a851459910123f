"""Pure split logic: leakage groups, per-category targets, group-to-split assignment, balancing.

Everything here works on plain Python lists/dicts so it can be property-tested without Kedro; the nodes
turn DataFrames into these inputs and back. Randomness always comes from a `random.Random` seeded with a
string that names the seed *and* the category, so one category's split does not change when another
category gains or loses pairs.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
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


def text_keys(texts: Iterable[str], near_duplicates: bool) -> set[tuple[str, str]]:
    """The keys under which two pairs count as sharing a text, whatever role (chosen/rejected) it plays.

    An empty near-duplicate key (a text of only punctuation/symbols) is skipped: it would glue together
    every such text although they share nothing; the exact normalised key still catches true repeats.
    """
    keys: set[tuple[str, str]] = set()
    for text in texts:
        keys.add(("exact", normalize_text(text)))
        if near_duplicates:
            folded = near_duplicate_key(text)
            if folded:
                keys.add(("near", folded))
    return keys


def leakage_groups(texts_per_pair: Sequence[Sequence[str]], near_duplicates: bool = True) -> list[int]:
    """Group id per pair such that pairs sharing a key (directly or through a chain) share the group.

    The id of a group is the index of its first pair.
    """
    uf = UnionFind(len(texts_per_pair))
    first_with_key: dict[tuple[str, str], int] = {}
    for i, texts in enumerate(texts_per_pair):
        for key in text_keys(texts, near_duplicates):
            j = first_with_key.setdefault(key, i)
            if j != i:
                uf.union(i, j)
    return [uf.find(i) for i in range(len(texts_per_pair))]


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
