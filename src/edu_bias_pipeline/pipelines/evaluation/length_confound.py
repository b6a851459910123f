"""Length confound of the pair accuracies: summed log-probs favour shorter statements.

For each accuracy family (baseline, trained, reward: chosen score > rejected score), over the pairs of
each scope (overall, each bias type), with length = completion tokens as scored (statement + eos, after
truncation; the `chosen_tokens` / `rejected_tokens` of the pair scores):

- `<family>_shorter_wins`: over pairs whose statements differ in length, the share where the shorter
  statement has the strictly higher score (a tie is no win);
- `<family>_accuracy_unbiased_shorter` / `<family>_accuracy_unbiased_longer`: the family's accuracy over
  the pairs whose unbiased (chosen) statement is the shorter / the longer one;
- `pairs_unbiased_shorter`, `pairs_unbiased_longer`, `pairs_equal_length`: how many pairs each holds.

A family's preference counts as explained mostly by length (the rule the report states) when both groups
hold at least `min_pairs` pairs, the shorter statement wins at least `shorter_wins_min` of the unequal
pairs, and the accuracy when the unbiased statement is shorter exceeds the accuracy when it is longer by
at least `accuracy_gap_min`; and the same with shorter and longer swapped (a per-token score can favour
longer statements). These figures are arithmetic on scores the stage already has, so they are always on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from edu_bias_pipeline.pipelines.evaluation.parts import scope_cell
from edu_bias_pipeline.pipelines.evaluation.stats import share_keys

FAMILY_NAMES = {
    "baseline": "the baseline (reference model)",
    "trained": "the trained model",
    "reward": "the implicit DPO reward",
}


class LengthConfoundConfig(BaseModel):
    """`evaluation.length_confound`: when the report says a preference is explained mostly by length."""

    model_config = ConfigDict(extra="forbid")

    shorter_wins_min: float = Field(
        0.75,
        gt=0.5,
        le=1.0,
        description="Share of unequal-length pairs the shorter (or longer) statement must win.",
    )
    accuracy_gap_min: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="How much higher the accuracy must be when the unbiased statement is the shorter (or "
        "longer) one than when it is the other, as a fraction (0.5 = 50 points).",
    )
    min_pairs: PositiveInt = Field(
        5, description="Fewest pairs in each of the two groups before any verdict is given."
    )


def shorter_won(
    first_len: pd.Series, second_len: pd.Series, first_score: pd.Series, second_score: pd.Series
) -> tuple[pd.Series, pd.Series]:
    """Per pair: whether the shorter of the two texts has the strictly higher score, and whether the two
    differ in length at all (pairs of equal length have no shorter text and never win)."""
    won = ((first_len < second_len) & (first_score > second_score)) | (
        (first_len > second_len) & (second_score > first_score)
    )
    return won, first_len != second_len


def length_metrics(
    scored_pairs: pd.DataFrame, families: Mapping[str, tuple[str, str]]
) -> dict[str, float | int]:
    """The flat `metric/scope` keys above. `families` maps a family to its (chosen, rejected) score
    columns; a share over an empty group is left out, so every value is a finite number."""
    out: dict[str, float | int] = {}
    scopes = [("overall", scored_pairs), *sorted(scored_pairs.groupby("bias_type"))]
    for scope, group in scopes:
        chosen_len, rejected_len = group["chosen_tokens"], group["rejected_tokens"]
        unbiased_shorter = chosen_len < rejected_len
        unbiased_longer = chosen_len > rejected_len
        out[f"pairs_unbiased_shorter/{scope}"] = int(unbiased_shorter.sum())
        out[f"pairs_unbiased_longer/{scope}"] = int(unbiased_longer.sum())
        out[f"pairs_equal_length/{scope}"] = int((chosen_len == rejected_len).sum())
        for family, (chosen, rejected) in families.items():
            correct = group[chosen] > group[rejected]
            won, unequal = shorter_won(chosen_len, rejected_len, group[chosen], group[rejected])
            out.update(share_keys(f"{family}_shorter_wins", scope, int(won.sum()), int(unequal.sum())))
            for side, mask in (("shorter", unbiased_shorter), ("longer", unbiased_longer)):
                out.update(
                    share_keys(
                        f"{family}_accuracy_unbiased_{side}", scope, int(correct[mask].sum()), int(mask.sum())
                    )
                )
    return out


def length_verdict(
    metrics: Mapping[str, Any], family: str, scope: str, cfg: LengthConfoundConfig
) -> str | None:
    """'shorter' / 'longer' when the family's preference in `scope` is explained mostly by that length,
    None otherwise (or when a group is too small to tell)."""
    n_short = metrics.get(f"pairs_unbiased_shorter/{scope}", 0)
    n_long = metrics.get(f"pairs_unbiased_longer/{scope}", 0)
    if n_short < cfg.min_pairs or n_long < cfg.min_pairs:
        return None
    wins = metrics[f"{family}_shorter_wins/{scope}"]
    gap = (
        metrics[f"{family}_accuracy_unbiased_shorter/{scope}"]
        - metrics[f"{family}_accuracy_unbiased_longer/{scope}"]
    )
    if wins >= cfg.shorter_wins_min and gap >= cfg.accuracy_gap_min:
        return "shorter"
    if 1 - wins >= cfg.shorter_wins_min and -gap >= cfg.accuracy_gap_min:
        return "longer"
    return None


def _pct(metrics: Mapping[str, Any], key: str) -> str:
    return f"{100 * metrics[key]:.0f}%" if key in metrics else "–"


def _split(metrics: Mapping[str, Any], family: str, scope: str) -> str:
    return (
        f"{_pct(metrics, f'{family}_accuracy_unbiased_shorter/{scope}')} / "
        f"{_pct(metrics, f'{family}_accuracy_unbiased_longer/{scope}')}"
    )


def _count(metrics: Mapping[str, Any], family: str, side: str, scope: str) -> str:
    n = metrics[f"pairs_unbiased_{side}/{scope}"]
    k = round(metrics.get(f"{family}_accuracy_unbiased_{side}/{scope}", 0.0) * n)
    return f"{k} of {n}"


def render_length_confound_section(eval_metrics: Mapping[str, Any], config: Any) -> str:
    """The report's length-confound section: the verdict in words per family, then the table per scope."""
    from edu_bias_pipeline.pipelines.evaluation.config import EvaluationConfig

    cfg = EvaluationConfig.parse(config).length_confound
    lines = [
        "## Length confound",
        "",
        "Summed log-probabilities favour shorter statements. Length = tokens scored (statement + eos). "
        "Shorter wins = share of the pairs of unequal length where the shorter statement scores higher; "
        "accuracy split = accuracy when the unbiased statement is the shorter / the longer one. A preference "
        f"counts as explained mostly by length when the shorter (or longer) statement wins ≥ "
        f"{100 * cfg.shorter_wins_min:.0f}% of those pairs and the accuracy differs by ≥ "
        f"{100 * cfg.accuracy_gap_min:.0f} points between the two groups, each holding ≥ {cfg.min_pairs} "
        "pairs (`evaluation.length_confound`).",
        "",
    ]
    scope = "overall"
    for family in FAMILY_NAMES:
        name = FAMILY_NAMES[family]
        if f"{family}_shorter_wins/{scope}" not in eval_metrics:
            lines.append(f"- {name}: every pair's statements have the same length; nothing to separate.")
            continue
        verdict = length_verdict(eval_metrics, family, scope, cfg)
        unequal = eval_metrics["n/overall"] - eval_metrics[f"pairs_equal_length/{scope}"]
        shorter_wins = eval_metrics[f"{family}_shorter_wins/{scope}"]
        side, wins = ("longer", 1 - shorter_wins) if verdict == "longer" else ("shorter", shorter_wins)
        facts = (
            f"the {side} statement wins {100 * wins:.0f}% of the {unequal} pairs of unequal length; it "
            f"prefers the unbiased statement in {_count(eval_metrics, family, 'shorter', scope)} pairs where "
            f"that is the shorter one and in {_count(eval_metrics, family, 'longer', scope)} where it is the "
            "longer one"
        )
        if verdict is not None:
            lines.append(
                f"- **The preference of {name} is explained mostly by length**: {facts}. Its accuracy "
                "measures statement length more than bias; the per-token columns of the table above "
                "remove most of this effect."
            )
        else:
            lines.append(f"- {name}: not explained by length by this rule ({facts}).")
    lines += [
        "",
        "| bias type | unbiased shorter / longer / equal | baseline: shorter wins | baseline acc. "
        "(unbiased shorter / longer) | trained: shorter wins | trained acc. | reward: shorter wins "
        "| reward acc. |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    scopes = sorted(
        k.split("/", 1)[1]
        for k in eval_metrics
        if k.startswith("pairs_equal_length/") and k != "pairs_equal_length/overall"
    )
    for scope in [*scopes, "overall"]:
        groups = (
            f"pairs_unbiased_shorter/{scope}",
            f"pairs_unbiased_longer/{scope}",
            f"pairs_equal_length/{scope}",
        )
        cells = [" / ".join(str(eval_metrics[key]) for key in groups)]
        for family in FAMILY_NAMES:
            flag = " (length)" if length_verdict(eval_metrics, family, scope, cfg) else ""
            cells += [
                _pct(eval_metrics, f"{family}_shorter_wins/{scope}") + flag,
                _split(eval_metrics, family, scope),
            ]
        name = scope_cell(scope)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)
