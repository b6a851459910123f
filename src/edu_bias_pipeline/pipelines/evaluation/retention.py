"""Capability retention: what alignment cost, measured as drift from the reference model.

Two measurements, both through the one scorer (`scoring.score_sequences`, batched like the pair scorer):

- KL on the reference's own completions. For each evaluated pair's prompt (rendered as the scorer renders
  it: the pair's prompt, or the bias-judgement instruction), the reference model writes one completion
  (seeded sampling at temperature 1 with no top-k/top-p cut by default, or greedy decoding, one completion
  per distinct prompt). At every completion position the exact KL(π ‖ π_ref) of the two next-token
  distributions over the whole vocabulary is computed; the reported figure is the mean over all completion
  tokens (Σ KL / Σ tokens), with a 95% bootstrap interval over completions. 0 for an unchanged model.
- Perplexity on neutral text. Each passage of a neutral corpus (team-written education texts by default)
  is scored unconditionally like CrowS-Pairs sentences (`scoring.encode_texts`: one bos/eos prefix token,
  no template, no eos): perplexity = exp(Σ NLL / Σ tokens) over the passages of a scope, for the trained
  model and the reference (baseline), their ratio, and 95% bootstrap intervals over passages. The KL on
  these texts comes from the same passes.

A trained model whose neutral perplexity rose by more than `perplexity_ratio_max` (trained / baseline) is
flagged in the report's model-health section, beside the training-health checks of its training run.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from edu_bias_pipeline.pipelines.evaluation.parts import part_headline, scope_cell, switched_off_figure
from edu_bias_pipeline.pipelines.evaluation.stats import ratio_bootstrap

logger = logging.getLogger(__name__)

SAMPLE, TEXT = "reference_sample", "neutral_text"
ALL_TEXTS = "all"  # the scope of passages without a `lang`
SCORE_COLUMNS = [
    "kind",
    "item_id",
    "scope",
    "tokens",
    "policy_logp",
    "reference_logp",
    "kl_sum",
    "truncated",
    "text",
]
PERPLEXITY_ROSE = (
    "neutral_perplexity_rose: the trained model's perplexity on neutral text is {ratio:.2f}× the "
    "reference's (allowed: {limit:.2f}×): alignment degraded ordinary language modelling; consider a "
    "larger beta, a lower learning rate or fewer steps"
)


class RetentionConfig(BaseModel):
    """`evaluation.retention`: KL to the reference on its own completions, perplexity on neutral text."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True,
        description="Measure the drift (KL and neutral perplexity). Off: the outputs say so and nothing "
        "is generated or scored.",
    )
    decoding: Literal["sample", "greedy"] = Field(
        "sample",
        description="How the reference writes the completions the KL is measured on: `sample` draws from its "
        "full distribution (temperature below, no top-k/top-p); `greedy` takes its most likely tokens, one "
        "completion per distinct prompt.",
    )
    temperature: float = Field(
        1.0, gt=0, description="Sampling temperature (1.0 = the model's distribution)."
    )
    max_new_tokens: PositiveInt = Field(32, description="Length limit of each reference completion.")
    max_prompts: PositiveInt | None = Field(
        None,
        description="Use at most this many evaluated pairs' prompts (a seeded sample); null uses every pair.",
    )
    seed: int = Field(0, description="Seed of the sampling, the prompt sample and the bootstrap.")
    perplexity_ratio_max: float = Field(
        1.5,
        gt=0,
        description="Flag the trained model when its neutral-text perplexity exceeds the reference's by more "
        "than this factor (overall, all passages).",
    )
    bootstrap_resamples: PositiveInt = Field(1000, description="Resamples of the 95% bootstrap intervals.")


# --------------------------------------------------------------------------------------- input
def read_neutral_texts(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """id / scope / text of each passage; a missing `text` column or an empty text names its line."""
    if frame is None or len(frame) == 0:
        raise ValueError(f"{source}: the neutral text file is empty; give at least one passage")
    if "text" not in frame.columns:
        raise ValueError(
            f'{source}: every line needs a \'text\' field (JSON Lines: {{"text": "...", "lang": "en"}}), '
            f"found fields {sorted(map(str, frame.columns))}"
        )
    bad = [
        f"line {i}"
        for i, text in enumerate(frame["text"], start=1)
        if not isinstance(text, str) or not text.strip()
    ]
    if bad:
        raise ValueError(f"{source}: 'text' must be a non-empty string ({', '.join(bad[:5])})")
    ids = (
        frame["id"].astype(str)
        if "id" in frame.columns
        else pd.Series([f"text-{i}" for i in range(1, len(frame) + 1)], index=frame.index)
    )
    langs = frame["lang"] if "lang" in frame.columns else pd.Series(ALL_TEXTS, index=frame.index)
    scopes = [str(v).strip() if isinstance(v, str) and v.strip() else ALL_TEXTS for v in langs]
    return pd.DataFrame({"item_id": ids.tolist(), "scope": scopes, "text": frame["text"].tolist()})


# --------------------------------------------------------------------------------------- scoring node
def score_retention(
    evaluation_pairs: pd.DataFrame,
    neutral_texts: pd.DataFrame,
    config: Any,
    taxonomy: dict[str, Any],
    eval_models: Any,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per item (reference completion or neutral passage): tokens, summed log-probs under both models and
    the summed per-token KL(π ‖ π_ref)."""
    from edu_bias_pipeline import pairs as P
    from edu_bias_pipeline.pipelines.evaluation.config import EvaluationConfig
    from edu_bias_pipeline.pipelines.evaluation.nodes import prepare_pairs
    from edu_bias_pipeline.scoring import (
        encode_prompts,
        encode_texts,
        generate_from_reference,
        score_sequences,
    )

    cfg = EvaluationConfig.parse(config)
    ret = cfg.retention
    if not ret.enabled:
        return pd.DataFrame(columns=SCORE_COLUMNS), {"enabled": False}
    models = eval_models
    texts = read_neutral_texts(neutral_texts, "neutral_texts")
    batch_size = cfg.batch_size or (256 if models.device.type == "cuda" else 16)

    rows = prepare_pairs(evaluation_pairs, taxonomy or {})
    if ret.max_prompts is not None and len(rows) > ret.max_prompts:
        picks = np.random.default_rng(ret.seed).choice(len(rows), size=ret.max_prompts, replace=False)
        rows = [rows[i] for i in sorted(picks)]
    if ret.decoding == "greedy":  # the same prompt decodes to the same completion: once is enough
        rows = list({r[P.PROMPT]: r for r in reversed(rows)}.values())[::-1]
    prompt_ids = encode_prompts(models.tokenizer, [r[P.PROMPT] for r in rows], models.metadata.instruction)
    logger.info(
        "Retention: %s %d reference completions (max %d tokens)", ret.decoding, len(rows), ret.max_new_tokens
    )
    samples = generate_from_reference(
        models,
        prompt_ids,
        max_new_tokens=ret.max_new_tokens,
        do_sample=ret.decoding == "sample",
        temperature=ret.temperature,
        seed=ret.seed,
        # a generation step costs one token per prompt: batches wider than the scorer's
        batch_size=cfg.batch_size or (256 if models.device.type == "cuda" else 64),
    )
    sample_scores = score_sequences(
        models, samples, batch_size=batch_size, with_kl=True, progress=cfg.progress
    )
    encoded = encode_texts(models.tokenizer, texts["text"].tolist(), models.context_length())
    text_scores = score_sequences(models, encoded, batch_size=batch_size, with_kl=True, progress=cfg.progress)

    decoded = models.tokenizer.batch_decode(
        [s.input_ids[s.n_prompt :] for s in samples], skip_special_tokens=True
    )
    frame = pd.concat(
        [
            pd.DataFrame(
                {
                    "kind": SAMPLE,
                    "item_id": [r[P.PAIR_ID] for r in rows],
                    "scope": [r[P.BIAS_TYPE] for r in rows],
                    "tokens": sample_scores.tokens,
                    "policy_logp": sample_scores.policy,
                    "reference_logp": sample_scores.reference,
                    "kl_sum": sample_scores.kl,
                    "truncated": False,
                    "text": decoded,
                }
            ),
            pd.DataFrame(
                {
                    "kind": TEXT,
                    "item_id": texts["item_id"],
                    "scope": texts["scope"],
                    "tokens": text_scores.tokens,
                    "policy_logp": text_scores.policy,
                    "reference_logp": text_scores.reference,
                    "kl_sum": text_scores.kl,
                    "truncated": [e.truncated for e in encoded],
                    "text": texts["text"],
                }
            ),
        ],
        ignore_index=True,
    )
    info = {
        "enabled": True,
        "decoding": ret.decoding,
        "temperature": ret.temperature,
        "max_new_tokens": ret.max_new_tokens,
        "seed": ret.seed,
        "pairs_available": len(evaluation_pairs),
    }
    return frame[SCORE_COLUMNS], info


# --------------------------------------------------------------------------------------- metrics
def perplexity(nll_sum: float, tokens: int) -> float:
    """exp(Σ NLL / Σ tokens); nan without tokens."""
    return math.exp(nll_sum / tokens) if tokens else math.nan


def drift_metrics(scores: pd.DataFrame, cfg: RetentionConfig) -> dict[str, float | int]:
    """The formulas over per-item scores, flat `metric/scope` keys (scope = overall, a bias type for the
    completions, a `lang` for the passages). Only finite numbers are written."""
    out: dict[str, float | int] = {}

    def interval(metric: str, scope: str, num: pd.Series, den: pd.Series, transform=None) -> None:
        low, high = ratio_bootstrap(
            num.tolist(), den.tolist(), resamples=cfg.bootstrap_resamples, seed=cfg.seed, transform=transform
        )
        if math.isfinite(low) and math.isfinite(high):
            out[f"{metric}_ci_low/{scope}"], out[f"{metric}_ci_high/{scope}"] = low, high

    samples = scores[scores["kind"] == SAMPLE]
    for scope, group in [("overall", samples), *sorted(samples.groupby("scope"))]:
        tokens = int(group["tokens"].sum())
        out[f"samples/{scope}"] = len(group)
        out[f"sample_tokens/{scope}"] = tokens
        if tokens:
            out[f"sample_kl_per_token/{scope}"] = float(group["kl_sum"].sum()) / tokens
            interval("sample_kl_per_token", scope, group["kl_sum"], group["tokens"])

    texts = scores[scores["kind"] == TEXT]
    for scope, group in [("overall", texts), *sorted(texts.groupby("scope"))]:
        tokens = int(group["tokens"].sum())
        out[f"texts/{scope}"] = len(group)
        out[f"text_tokens/{scope}"] = tokens
        if not tokens:
            continue
        for family, column in (("trained", "policy_logp"), ("baseline", "reference_logp")):
            out[f"perplexity_{family}/{scope}"] = perplexity(-float(group[column].sum()), tokens)
            interval(f"perplexity_{family}", scope, -group[column], group["tokens"], transform=np.exp)
        out[f"perplexity_ratio/{scope}"] = (
            out[f"perplexity_trained/{scope}"] / out[f"perplexity_baseline/{scope}"]
        )
        # log ratio = (Σ NLL_trained − Σ NLL_baseline) / Σ tokens, resampled as one ratio of sums
        interval(
            "perplexity_ratio",
            scope,
            group["reference_logp"] - group["policy_logp"],
            group["tokens"],
            transform=np.exp,
        )
        out[f"neutral_kl_per_token/{scope}"] = float(group["kl_sum"].sum()) / tokens
    if "perplexity_ratio/overall" in out:
        out["perplexity_rose/overall"] = int(out["perplexity_ratio/overall"] > cfg.perplexity_ratio_max)
    out["perplexity_ratio_max"] = cfg.perplexity_ratio_max
    out["texts/truncated"] = int(texts["truncated"].sum())
    return {k: v for k, v in out.items() if not isinstance(v, float) or math.isfinite(v)}


def retention_metrics(
    retention_scores: pd.DataFrame,
    retention_info: Mapping[str, Any],
    config: Any,
    eval_run_info: Mapping[str, Any],
) -> dict[str, Any]:
    """`retention_metrics.json`: the drift figures, how the completions were made, the model scored."""
    from edu_bias_pipeline.pipelines.evaluation.config import EvaluationConfig
    from edu_bias_pipeline.pipelines.evaluation.nodes import model_identity

    identity = model_identity(eval_run_info)
    if not retention_info.get("enabled"):
        return {"enabled": False, **identity}
    cfg = EvaluationConfig.parse(config).retention
    decoding = (
        f"sampled at temperature {cfg.temperature}, seed {cfg.seed}" if cfg.decoding == "sample" else "greedy"
    )
    return {
        "enabled": True,
        **drift_metrics(retention_scores, cfg),
        "decoding": f"{decoding}, at most {cfg.max_new_tokens} new tokens",
        **identity,
    }


HEADLINE_KEYS = (
    "sample_kl_per_token/overall",
    "perplexity_ratio/overall",
    "perplexity_rose/overall",
)


def retention_headline(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """What `dvc metrics show` lists for the cost of alignment."""
    return part_headline(metrics, "retention", HEADLINE_KEYS)


# --------------------------------------------------------------------------------------- chart
def _text_scopes(metrics: Mapping[str, Any]) -> list[str]:
    scopes = sorted(k.split("/", 1)[1] for k in metrics if k.startswith("perplexity_trained/"))
    return [s for s in scopes if s != "overall"] + ["overall"]


def _err(metrics: Mapping[str, Any], metric: str, scope: str) -> tuple[float, float]:
    value = metrics[f"{metric}/{scope}"]
    low = metrics.get(f"{metric}_ci_low/{scope}", value)
    high = metrics.get(f"{metric}_ci_high/{scope}", value)
    return max(0.0, value - low), max(0.0, high - value)


def plot_retention(metrics: Mapping[str, Any]):
    """Left: neutral-text perplexity of both models per scope; right: KL(π ‖ π_ref) per token on the
    reference's completions and on the neutral texts. 95% bootstrap intervals."""
    from matplotlib.figure import Figure

    if not metrics.get("enabled"):
        return switched_off_figure("Retention switched off (evaluation.retention.enabled: false)")
    fig = Figure(figsize=(10, 3.8))
    left, right = fig.subplots(1, 2)
    scopes = _text_scopes(metrics)
    width = 0.38
    for s, (family, label, colour) in enumerate(
        (("baseline", "baseline (reference)", "#9e9e9e"), ("trained", "trained", "#1f77b4"))
    ):
        metric = f"perplexity_{family}"
        xs = [i + (s - 0.5) * width for i in range(len(scopes))]
        values = [metrics[f"{metric}/{scope}"] for scope in scopes]
        errs = list(zip(*(_err(metrics, metric, scope) for scope in scopes), strict=True))
        left.bar(xs, values, width=width, color=colour, label=label, yerr=errs, capsize=2)
    left.set_xticks(range(len(scopes)), [f"{s}\n(n={metrics[f'texts/{s}']})" for s in scopes], fontsize=8)
    left.set_yscale("log")
    left.set_ylabel("perplexity on neutral text (log scale)")
    left.set_title(
        f"Neutral perplexity: trained / baseline = {metrics['perplexity_ratio/overall']:.2f}", fontsize=10
    )
    left.legend(fontsize=8, frameon=False)

    bars = [("reference completions", "sample_kl_per_token", "overall")]
    bars += [(f"neutral text: {s}", "neutral_kl_per_token", s) for s in scopes]
    bars = [b for b in bars if f"{b[1]}/{b[2]}" in metrics]
    values = [metrics[f"{metric}/{scope}"] for _, metric, scope in bars]
    errs = list(zip(*(_err(metrics, metric, scope) for _, metric, scope in bars), strict=True))
    right.barh(range(len(bars)), values, color="#ff7f0e", xerr=errs if bars else None, capsize=2)
    right.set_yticks(range(len(bars)), [b[0] for b in bars], fontsize=8)
    right.set_xlabel("KL(π ‖ π_ref) per token (nats)")
    right.set_title("Drift from the reference (0 = unchanged)", fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------- report
def _value(metrics: Mapping[str, Any], metric: str, scope: str, fmt: str = "{:.3f}") -> str:
    key = f"{metric}/{scope}"
    if key not in metrics:
        return "–"
    text = fmt.format(metrics[key])
    if f"{metric}_ci_low/{scope}" in metrics:
        low, high = metrics[f"{metric}_ci_low/{scope}"], metrics[f"{metric}_ci_high/{scope}"]
        text += f" [{fmt.format(low)}–{fmt.format(high)}]"
    return text


def render_retention_section(metrics: Mapping[str, Any], locations: Mapping[str, str]) -> str:
    """The report's cost-of-alignment section: KL on the reference's completions, neutral perplexity."""
    lines = ["## Cost of alignment: drift from the reference", ""]
    if not metrics.get("enabled"):
        return "\n".join([*lines, "Switched off (`evaluation.retention.enabled: false`).", ""])
    lines += [
        f"- KL(π ‖ π_ref) per token on {metrics['samples/overall']} completions the reference wrote for the "
        f"evaluated prompts ({metrics['decoding']}): "
        f"**{_value(metrics, 'sample_kl_per_token', 'overall', '{:.4f}')}** nats "
        "(exact KL of the next-token distributions, averaged over completion tokens; 0 = unchanged model).",
        f"- neutral text: `{locations['neutral_texts']}`, {metrics['texts/overall']} passages, "
        f"{metrics['text_tokens/overall']} tokens, scored without instruction or template"
        + (
            f" ({metrics['texts/truncated']} truncated to the model's context length)"
            if metrics["texts/truncated"]
            else ""
        )
        + ". Perplexity = exp(mean negative log-likelihood per token); brackets: 95% bootstrap interval "
        "over passages (over completions for the KL).",
        "",
        "| neutral text | passages | tokens | baseline perplexity | trained perplexity | trained / baseline "
        "| KL per token |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for scope in _text_scopes(metrics):
        name = scope_cell(scope)
        lines.append(
            f"| {name} | {metrics[f'texts/{scope}']} | {metrics[f'text_tokens/{scope}']} "
            f"| {_value(metrics, 'perplexity_baseline', scope, '{:.1f}')} "
            f"| {_value(metrics, 'perplexity_trained', scope, '{:.1f}')} "
            f"| {_value(metrics, 'perplexity_ratio', scope, '{:.2f}')} "
            f"| {_value(metrics, 'neutral_kl_per_token', scope, '{:.4f}')} |"
        )
    lines.append("")
    return "\n".join(lines)


def render_health_section(
    retention: Mapping[str, Any], training_health: Mapping[str, Any], eval_run_info: Mapping[str, Any]
) -> str:
    """Model health: the training-health checks of the scored model's training run, and the neutral
    perplexity check, side by side."""
    lines = ["## Model health", ""]
    run = training_health.get("run") or {}
    scored_run = (eval_run_info.get("training_run") or {}).get("fingerprint")
    if not training_health:
        lines.append("- training-health checks: no training metrics here (the model was trained elsewhere).")
    elif scored_run is None or run.get("fingerprint") != scored_run:
        lines.append(
            f"- training-health checks: the training metrics here describe run `{run.get('fingerprint')}`, "
            "not the scored model's, so they are not shown."
        )
    else:
        warnings = (training_health.get("health") or {}).get("warnings") or []
        checks = (training_health.get("health") or {}).get("checks") or {}
        if warnings:
            lines += [f"- training health: ⚠ {w}" for w in warnings]
        else:
            lines.append(f"- training health: all {len(checks)} checks passed ({', '.join(sorted(checks))}).")
    if not retention.get("enabled"):
        lines.append("- neutral perplexity: not measured (`evaluation.retention.enabled: false`).")
    elif "perplexity_rose/overall" not in retention:
        lines.append("- neutral perplexity: no scored tokens, not checked.")
    elif retention["perplexity_rose/overall"]:
        ratio, limit = retention["perplexity_ratio/overall"], retention["perplexity_ratio_max"]
        lines.append("- ⚠ " + PERPLEXITY_ROSE.format(ratio=ratio, limit=limit))
    else:
        ratio, limit = retention["perplexity_ratio/overall"], retention["perplexity_ratio_max"]
        lines.append(
            f"- neutral perplexity: trained / baseline = {ratio:.2f}, within the allowed {limit:.2f}× "
            "(`evaluation.retention.perplexity_ratio_max`)."
        )
    lines.append("")
    return "\n".join(lines)
