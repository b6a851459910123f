"""Small statistics shared by the benchmark and cost-of-alignment metrics: shares with Wilson intervals,
percentile bootstrap intervals of a ratio of sums. Pure functions (numpy only)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from edu_bias_pipeline.scoring import wilson_interval


def share_keys(metric: str, scope: str, successes: int, n: int) -> dict[str, float]:
    """`metric/scope` with its 95% Wilson interval (`metric_ci_low/scope`, `metric_ci_high/scope`);
    nothing when n == 0, so every value written is a finite number."""
    if n == 0:
        return {}
    low, high = wilson_interval(successes, n)
    return {
        f"{metric}/{scope}": successes / n,
        f"{metric}_ci_low/{scope}": low,
        f"{metric}_ci_high/{scope}": high,
    }


def ratio_bootstrap(
    numerators: Sequence[float],
    denominators: Sequence[float],
    *,
    resamples: int,
    seed: int,
    transform=None,
) -> tuple[float, float]:
    """95% percentile bootstrap interval of sum(numerators) / sum(denominators) (then `transform`, e.g. exp),
    resampling items with replacement; (nan, nan) without items."""
    num = np.asarray(numerators, dtype=np.float64)
    den = np.asarray(denominators, dtype=np.float64)
    if len(num) == 0 or resamples < 1:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(num), size=(resamples, len(num)))
    dens = den[picks].sum(axis=1)
    values = num[picks].sum(axis=1) / np.where(dens > 0, dens, np.nan)
    if transform is not None:
        values = transform(values)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return (math.nan, math.nan)
    low, high = np.percentile(values, [2.5, 97.5])
    return (float(low), float(high))
