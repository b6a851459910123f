"""Evaluation nodes: score every pair under the trained model and its reference, then summarise per bias type.

Definitions (per pair; logp = log-probability of the statement's tokens + eos after the prompt, summed):
- implicit reward r(y) = beta * (logp_policy(y) - logp_reference(y)); correct when r(chosen) > r(rejected)
- trained preference: logp_policy(chosen) > logp_policy(rejected)      (the aligned model's own choice)
- baseline preference: logp_reference(chosen) > logp_reference(rejected) (the choice before training)
- "normalized" variants use the mean log-prob per completion token instead of the sum.
Ties count as wrong everywhere. Intervals are 95% Wilson score intervals.

torch is imported only through `scoring.load_scoring_models`, inside the scoring node.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from edu_bias_pipeline import pairs as P
from edu_bias_pipeline.datasets.jsonl import SOURCE_ATTR
from edu_bias_pipeline.pipelines.evaluation.config import EvaluationConfig
from edu_bias_pipeline.pipelines.evaluation.length_confound import length_metrics
from edu_bias_pipeline.pipelines.evaluation.model import (
    SOURCE_OVERRIDE,
    choose_model,
    load_models,
    reference_description,
)
from edu_bias_pipeline.pipelines.evaluation.parts import md_text
from edu_bias_pipeline.scoring import ScoringModels, implicit_reward, score_pairs, wilson_interval
from edu_bias_pipeline.split_files import evaluation_file_status
from edu_bias_pipeline.taxonomy import resolver

logger = logging.getLogger(__name__)

INPUT_NAME = "evaluation_pairs"
UNKNOWN_BIAS_TYPE = "unknown"

# The three accuracy families: a pair counts as correct when its chosen score beats its rejected score.
OUTCOME_COLUMNS = {
    "reward": ("reward_chosen", "reward_rejected"),  # implicit DPO reward
    "trained": ("policy_chosen_logp", "policy_rejected_logp"),
    "baseline": ("reference_chosen_logp", "reference_rejected_logp"),
}
# (metric, per-pair boolean column), summed and length-normalised.
ACCURACIES = {
    f"{family}_accuracy{suffix}": f"{family}_correct{suffix}"
    for family in OUTCOME_COLUMNS
    for suffix in ("", "_normalized")
}
WITH_INTERVAL = ("reward_accuracy", "trained_accuracy", "baseline_accuracy")
MARGINS = {
    "reward_margin": "reward_margin",  # mean r(chosen) - r(rejected)
    "trained_margin": "trained_logp_margin",  # mean logp_policy(chosen) - logp_policy(rejected)
    "baseline_margin": "baseline_logp_margin",  # mean logp_reference(chosen) - logp_reference(rejected)
}
STATUS_PRESENT, STATUS_MISSING, STATUS_EXTRA = "present", "missing", "not_in_taxonomy"


# --------------------------------------------------------------------------------------- input
def prepare_pairs(frame: pd.DataFrame, taxonomy: Mapping[str, Sequence[str] | None]) -> list[dict[str, Any]]:
    """Rows to score, from split output (`bias_type` column) or a raw pair file (`meta.bias_type`).

    Raises one ValueError listing every bad row (line number and field), so nothing is dropped silently.
    """
    if frame is None or len(frame) == 0:
        raise ValueError(f"{INPUT_NAME}: the pair file is empty; nothing to evaluate")
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    canonical = resolver(taxonomy)
    # PairFileDataset records each row's line in the file; other frames count rows from 1.
    file_lines = frame.attrs.get("file_lines") or range(1, len(frame) + 1)
    for raw, file_line in zip(frame.to_dict(orient="records"), file_lines, strict=True):
        line = raw.get(P.SOURCE_LINE) if not P.is_missing(raw.get(P.SOURCE_LINE)) else file_line
        where = f"line {file_line}" + (f" (source_line {line})" if line != file_line else "")
        texts = {}
        for name in (P.CHOSEN, P.REJECTED):
            value = raw.get(name)
            if not isinstance(value, str) or not value.strip():
                errors.append(f"{where}: field {name!r} must be a non-empty string, got {value!r}")
            else:
                texts[name] = value
        prompt = raw.get(P.PROMPT)
        if P.is_missing(prompt) or prompt == "":
            prompt = None
        elif not isinstance(prompt, str):
            errors.append(f"{where}: field 'prompt' must be a string or null, got {type(prompt).__name__}")
        if len(texts) < 2 or (prompt is not None and not isinstance(prompt, str)):
            continue
        rows.append(
            {
                P.PAIR_ID: raw.get(P.PAIR_ID)
                if isinstance(raw.get(P.PAIR_ID), str)
                else P.pair_id(prompt, texts[P.CHOSEN], texts[P.REJECTED]),
                P.SOURCE_LINE: int(line),
                P.BIAS_TYPE: _bias_type(raw, canonical),
                P.PROMPT: prompt,
                P.CHOSEN: texts[P.CHOSEN],
                P.REJECTED: texts[P.REJECTED],
            }
        )
    P.raise_listed(frame.attrs.get("filepath") or INPUT_NAME, errors)
    return rows


def _bias_type(raw: Mapping[str, Any], canonical: Callable[[Any], str | None]) -> str:
    label = raw.get(P.BIAS_TYPE)
    if P.is_missing(label):
        meta = raw.get(P.META)
        label = meta.get("bias_type") if isinstance(meta, dict) else None
    if P.is_missing(label) or not str(label).strip():
        return UNKNOWN_BIAS_TYPE
    # Validated files already hold canonical names; raw pair files may use aliases. Unknown labels are
    # kept as written and reported as "not in taxonomy".
    return canonical(str(label)) or str(label).strip()


# --------------------------------------------------------------------------------------- scoring node
def score_evaluation_pairs(
    evaluation_pairs: pd.DataFrame,
    config: EvaluationConfig,
    taxonomy: dict[str, list[str] | None],
    trained_model: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Any], ScoringModels]:
    """Log-probs of every pair's chosen and rejected statement under the model and its reference.

    The model is `trained_model`'s (training's record of what it wrote) unless `evaluation.checkpoint`
    overrides it. Returns the per-pair scores, a description of what was evaluated (for the report) and
    the loaded models, which the benchmark and retention nodes score with (loaded once per run).
    """
    cfg = EvaluationConfig.parse(config)
    choice = choose_model(cfg.checkpoint, trained_model)
    source = evaluation_pairs.attrs.get(SOURCE_ATTR)
    # refuses a test split written after the scored model was trained (it may hold pairs trained on)
    split_files = (trained_model or {}).get("split_files") if choice.training_run else None
    status = evaluation_file_status(source, split_files)
    rows = prepare_pairs(evaluation_pairs, taxonomy or {})
    models = load_models(cfg, choice)
    logger.info("Scoring %d pairs with %s (from %s)", len(rows), choice.path, choice.source)
    scores = score_pairs(
        models,
        [r[P.PROMPT] for r in rows],
        [r[P.CHOSEN] for r in rows],
        [r[P.REJECTED] for r in rows],
        batch_size=cfg.batch_size or (256 if models.device.type == "cuda" else 16),
        progress=cfg.progress,
        reference_cache_dir=cfg.reference_cache_dir,
    )
    beta = models.metadata.beta
    frame = pd.DataFrame(
        {
            P.PAIR_ID: [r[P.PAIR_ID] for r in rows],
            P.SOURCE_LINE: [r[P.SOURCE_LINE] for r in rows],
            P.BIAS_TYPE: [r[P.BIAS_TYPE] for r in rows],
            "policy_chosen_logp": scores.policy_chosen,
            "policy_rejected_logp": scores.policy_rejected,
            "reference_chosen_logp": scores.reference_chosen,
            "reference_rejected_logp": scores.reference_rejected,
            "chosen_tokens": scores.chosen_tokens,
            "rejected_tokens": scores.rejected_tokens,
            "truncated": scores.truncated,
        }
    )
    frame["reward_chosen"] = implicit_reward(
        beta, frame["policy_chosen_logp"], frame["reference_chosen_logp"]
    )
    frame["reward_rejected"] = implicit_reward(
        beta, frame["policy_rejected_logp"], frame["reference_rejected_logp"]
    )
    frame["reward_margin"] = frame["reward_chosen"] - frame["reward_rejected"]
    meta = models.metadata
    run_info = {
        "model": choice.path,
        "model_source": choice.source,
        "model_not_scored": choice.not_scored,
        "training_run": choice.training_run,
        "is_adapter": meta.is_adapter,
        "reference": reference_description(meta),
        "beta": beta,
        "instruction": meta.instruction,
        "max_length": meta.max_length,
        "metadata_source": meta.source,
        "dtype": str(models.dtype).replace("torch.", ""),
        "device": str(models.device),
        "pairs_file": {**(source or {}), "status": status},
        "n_pairs": len(frame),
        "n_truncated": int(frame["truncated"].sum()),
        "reference_logps": scores.reference_cache or "computed (not cached)",
    }
    return frame, run_info, models


# --------------------------------------------------------------------------------------- metrics
def _per_token(logp: pd.Series, tokens: pd.Series) -> pd.Series:
    return logp / tokens.where(tokens > 0)


def add_pair_outcomes(scores: pd.DataFrame) -> pd.DataFrame:
    """Per-pair booleans behind every accuracy (strict '>': ties and empty completions count as wrong)."""
    s = scores.copy()
    nc, nr = s["chosen_tokens"], s["rejected_tokens"]
    for family, (chosen, rejected) in OUTCOME_COLUMNS.items():
        s[f"{family}_correct"] = s[chosen] > s[rejected]
        per_token = _per_token(s[chosen], nc) > _per_token(s[rejected], nr)
        s[f"{family}_correct_normalized"] = per_token.fillna(False)
    s["trained_logp_margin"] = s["policy_chosen_logp"] - s["policy_rejected_logp"]
    s["baseline_logp_margin"] = s["reference_chosen_logp"] - s["reference_rejected_logp"]
    return s


def _summarise(group: pd.DataFrame) -> dict[str, Any]:
    n = len(group)
    out: dict[str, Any] = {"n": n}
    for metric, column in ACCURACIES.items():
        k = int(group[column].sum())
        out[metric] = k / n if n else math.nan
        if metric in WITH_INTERVAL:
            out[f"{metric}_ci_low"], out[f"{metric}_ci_high"] = wilson_interval(k, n)
    for metric, column in MARGINS.items():
        out[metric] = float(group[column].mean()) if n else math.nan
    out["accuracy_change"] = out["trained_accuracy"] - out["baseline_accuracy"] if n else math.nan
    return out


def compute_category_metrics(
    pair_scores: pd.DataFrame, taxonomy: dict[str, list[str] | None]
) -> pd.DataFrame:
    """One row per bias type: every taxonomy category (n = 0 and status 'missing' when the evaluated split
    has none) plus any category found in the pairs but not in the taxonomy ('not_in_taxonomy')."""
    scored = add_pair_outcomes(pair_scores)
    known = list((taxonomy or {}).keys())
    present = sorted(scored[P.BIAS_TYPE].unique())
    records = []
    for category in sorted(set(known) | set(present)):
        group = scored[scored[P.BIAS_TYPE] == category]
        status = STATUS_EXTRA if category not in known else STATUS_PRESENT if len(group) else STATUS_MISSING
        records.append({P.BIAS_TYPE: category, "status": status, **_summarise(group)})
    frame = pd.DataFrame.from_records(records)
    missing = frame.loc[frame["status"] == STATUS_MISSING, P.BIAS_TYPE].tolist()
    if missing:
        logger.warning("Bias types with no evaluation pairs (reported as n=0): %s", ", ".join(missing))
    extra = frame.loc[frame["status"] == STATUS_EXTRA, P.BIAS_TYPE].tolist()
    if extra:
        logger.warning("Bias types in the evaluation pairs but not in the taxonomy: %s", ", ".join(extra))
    return frame


def build_metrics(
    pair_scores: pd.DataFrame, per_category: pd.DataFrame, run_info: dict[str, Any]
) -> dict[str, float | int]:
    """Every metric as flat `<metric>/<scope>` keys: scope = overall (micro), macro, or a bias type.

    Missing categories get only `n/<bias_type> = 0`, so every `<metric>/<scope>` value is a finite number
    (no NaN). Beside them, the model scored is named by strings: `model`, `model_source` and the
    `training_run/*` keys (e.g. `training_run/finished_at`), which may also hold integers; the pair file
    scored by the `pairs_file/*` strings (path, sha256, and whether it is held out from the model's training).
    """
    scored = add_pair_outcomes(pair_scores)
    overall = _summarise(scored)
    present = per_category[per_category["n"] > 0]
    metrics: dict[str, float | int] = {}
    for key, value in overall.items():
        metrics[f"{key}/overall"] = value
    for metric in ACCURACIES:
        metrics[f"{metric}/macro"] = float(present[metric].mean())
    metrics["accuracy_change/macro"] = float(present["accuracy_change"].mean())
    for row in per_category.to_dict(orient="records"):
        category = row[P.BIAS_TYPE]
        metrics[f"n/{category}"] = int(row["n"])
        if row["n"] == 0:
            continue
        for key, value in row.items():
            if key not in (P.BIAS_TYPE, "status", "n"):
                metrics[f"{key}/{category}"] = float(value)
    metrics.update(length_metrics(scored, OUTCOME_COLUMNS))
    metrics["categories/evaluated"] = int((per_category["n"] > 0).sum())
    metrics["categories/missing"] = int((per_category["status"] == STATUS_MISSING).sum())
    metrics["pairs/truncated"] = int(run_info.get("n_truncated", 0))
    metrics["pairs/reward_ties"] = int((scored["reward_margin"] == 0).sum())
    metrics["beta"] = float(run_info["beta"])
    numbers = {k: (int(v) if isinstance(v, bool) else v) for k, v in metrics.items()}
    pairs_file = {
        f"pairs_file/{key}": value
        for key, value in (run_info.get("pairs_file") or {}).items()
        if key in ("path", "sha256", "status")
    }
    return {**numbers, **model_identity(run_info), **pairs_file}


def model_identity(run_info: Mapping[str, Any]) -> dict[str, str | int]:
    """Which model the numbers belong to: its path, where that path came from, and its training run."""
    identity: dict[str, str | int] = {"model": run_info["model"], "model_source": run_info["model_source"]}
    for key, value in (run_info.get("training_run") or {}).items():
        identity[f"training_run/{key}"] = value
    return identity


# The overall numbers of the headline file: what `dvc metrics show` / `dvc exp show` compare runs by.
HEADLINE_OVERALL = (
    "n/overall",
    "reward_accuracy/overall",
    "trained_accuracy/overall",
    "baseline_accuracy/overall",
    "reward_accuracy/macro",
)


def build_headline(metrics: Mapping[str, Any], *benchmarks: Mapping[str, Any]) -> dict[str, Any]:
    """A few flat keys: the model scored (and its training run), overall accuracies, reward accuracy per
    evaluated category, then each benchmark's few headline keys (`cbbq_qa/...`). `eval_metrics.json` and the
    benchmarks' own metrics files keep every metric; DVC lists this file as the stage's metrics.
    """
    headline: dict[str, Any] = {"model": metrics["model"]}
    if "training_run/fingerprint" in metrics:
        headline["training_run/fingerprint"] = metrics["training_run/fingerprint"]
    headline.update({key: metrics[key] for key in HEADLINE_OVERALL})
    for key in sorted(metrics):
        scope = key.partition("/")[2]
        if key.startswith("reward_accuracy/") and scope not in ("overall", "macro"):
            headline[key] = metrics[key]
    for benchmark in benchmarks:
        headline.update(benchmark)
    return headline


# --------------------------------------------------------------------------------------- chart
SERIES = (
    ("baseline_accuracy", "baseline (reference prefers unbiased)", "#9e9e9e"),
    ("trained_accuracy", "trained (policy prefers unbiased)", "#1f77b4"),
    ("reward_accuracy", "reward accuracy (implicit DPO reward)", "#ff7f0e"),
)


def plot_per_category(per_category: pd.DataFrame, metrics: dict[str, Any]):
    """Horizontal grouped bars per bias type with 95% Wilson intervals; categories without pairs stay on
    the chart, labelled, so a gap is visible rather than silently absent."""
    from matplotlib.figure import Figure

    rows = per_category.sort_values(P.BIAS_TYPE, ascending=False).to_dict(orient="records")
    overall = {"bias_type": "overall", "n": metrics["n/overall"], "status": STATUS_PRESENT}
    for metric, _, _ in SERIES:
        overall[metric] = metrics[f"{metric}/overall"]
        overall[f"{metric}_ci_low"] = metrics[f"{metric}_ci_low/overall"]
        overall[f"{metric}_ci_high"] = metrics[f"{metric}_ci_high/overall"]
    rows.append(overall)

    height = 0.26
    fig = Figure(figsize=(9, 0.55 * len(rows) + 1.6))
    ax = fig.add_subplot()
    for s, (metric, label, colour) in enumerate(SERIES):
        ys, xs, err_lo, err_hi = [], [], [], []
        for y, row in enumerate(rows):
            if row["n"] == 0:
                continue
            ys.append(y + (1 - s) * height)
            xs.append(row[metric])
            # Rounding can put a Wilson bound a hair past the estimate at 0% or 100%.
            err_lo.append(max(0.0, row[metric] - row[f"{metric}_ci_low"]))
            err_hi.append(max(0.0, row[f"{metric}_ci_high"] - row[metric]))
        ax.barh(
            ys,
            xs,
            height=height,
            color=colour,
            label=label,
            xerr=[err_lo, err_hi],
            error_kw={"elinewidth": 0.8, "capsize": 2},
        )
    for y, row in enumerate(rows):
        if row["n"] == 0:
            ax.text(0.01, y, "no evaluation pairs", va="center", fontsize=8, color="#b71c1c")
    ax.set_yticks(range(len(rows)), [f"{r['bias_type']} (n={r['n']})" for r in rows], fontsize=8)
    ax.axvline(0.5, color="black", linewidth=0.7, linestyle="--")
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of pairs where the unbiased statement wins (95% Wilson interval)")
    ax.set_title("Per-category preference for the unbiased statement: trained vs baseline")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.06), ncol=3, fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------- report
def _pct(value: float, low: float | None = None, high: float | None = None) -> str:
    if P.is_missing(value):
        return "–"
    text = f"{100 * value:.1f}%"
    if low is not None and high is not None:
        text += f" [{100 * low:.0f}–{100 * high:.0f}]"
    return text


def _num(value: float, digits: int = 3) -> str:
    if P.is_missing(value):
        return "–"
    return f"{value:+.{digits}f}"


def _model_origin(run_info: Mapping[str, Any]) -> str:
    if run_info["model_source"] != SOURCE_OVERRIDE:
        return "the model the training stage recorded (trained_model)"
    text = "named by the evaluation.checkpoint override"
    if run_info.get("model_not_scored"):
        text += f" (not the model training recorded, `{run_info['model_not_scored']}`)"
    return text


def _training_run(run_info: Mapping[str, Any]) -> str:
    run = run_info.get("training_run") or {}
    if not run:
        return "not recorded (the scored model is not the final model the training stage recorded)"
    parts = [f"fingerprint `{run['fingerprint']}`"] if run.get("fingerprint") else []
    if run.get("global_step") is not None:
        parts.append(f"{run['global_step']} steps")
    if run.get("finished_at"):
        parts.append(f"final model saved {run['finished_at']}")
    return ", ".join(parts) or "recorded without details"


def _pairs_file(pairs_file: Mapping[str, Any] | None) -> str:
    if not pairs_file:
        return "not recorded"
    sha = str(pairs_file.get("sha256") or "")[:12]
    return f"{md_text(str(pairs_file.get('path')))} (sha256 {sha}…), {pairs_file.get('status')}"


def render_report(
    per_category: pd.DataFrame, metrics: dict[str, Any], run_info: dict[str, Any], *sections: str
) -> str:
    """A short Markdown report: what was evaluated, trained vs baseline per bias type, what is missing,
    then `sections` (Markdown rendered by the length-confound, benchmark and retention nodes) in order."""
    lines = [
        "# Evaluation: per-category bias preference",
        "",
        f"- model scored: `{run_info['model']}` "
        f"({'LoRA adapter' if run_info['is_adapter'] else 'full model'}), {_model_origin(run_info)}",
        f"- training run: {_training_run(run_info)}",
        f"- reference (baseline): {run_info['reference']}; its log-probs: {run_info['reference_logps']}",
        f"- beta: {run_info['beta']}, dtype: {run_info['dtype']}, device: {run_info['device']}, "
        f"metadata: {run_info['metadata_source']}",
        f"- pairs evaluated: {run_info['n_pairs']}"
        + (
            f" ({run_info['n_truncated']} truncated to max_length={run_info['max_length']})"
            if run_info.get("n_truncated")
            else ""
        ),
        f"- pairs file: {_pairs_file(run_info.get('pairs_file'))}",
        "",
        "Baseline = the reference model prefers the unbiased statement (log-prob, before training); "
        "trained = the aligned model prefers it; reward accuracy = the implicit DPO reward "
        "beta·(log π − log π_ref) is higher for the unbiased statement. Ties count as wrong. "
        "Brackets: 95% Wilson interval. Δ = trained − baseline.",
        "",
        "| bias type | n | baseline | trained | Δ | reward accuracy | reward margin "
        "| baseline (per token) | trained (per token) | reward acc. (per token) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def with_ci(r: Mapping[str, Any], metric: str) -> str:
        return _pct(r[metric], r.get(f"{metric}_ci_low"), r.get(f"{metric}_ci_high"))

    def row_line(name: str, r: Mapping[str, Any]) -> str:
        return (
            f"| {name} | {r['n']} "
            f"| {with_ci(r, 'baseline_accuracy')} | {with_ci(r, 'trained_accuracy')} "
            f"| {_num(r['accuracy_change'] * 100 if r['n'] else math.nan, 1)} pp "
            f"| {with_ci(r, 'reward_accuracy')} "
            f"| {_num(r['reward_margin'])} "
            f"| {_pct(r['baseline_accuracy_normalized'])} | {_pct(r['trained_accuracy_normalized'])} "
            f"| {_pct(r['reward_accuracy_normalized'])} |"
        )

    for r in per_category[per_category["n"] > 0].to_dict(orient="records"):
        lines.append(row_line(md_text(r[P.BIAS_TYPE]), r))
    overall = {k.split("/")[0]: v for k, v in metrics.items() if k.endswith("/overall")}
    lines.append(row_line("**overall (micro)**", overall))
    macro = {k.split("/")[0]: v for k, v in metrics.items() if k.endswith("/macro")}
    macro.update({"n": int(metrics["categories/evaluated"]), "reward_margin": math.nan})
    lines.append(row_line("**overall (macro, n = categories)**", macro))
    ties, n_pairs = int(metrics.get("pairs/reward_ties", 0)), int(metrics.get("n/overall", 0))
    if n_pairs and ties == n_pairs:
        lines += [
            "",
            f"**Every pair's reward ties ({ties} of {n_pairs}): the scored model gives both statements the "
            "same log-probs as its reference (an untrained adapter, or the reference itself), so the 0% "
            "reward accuracy above says nothing about alignment.**",
        ]
    elif ties:
        lines += ["", f"{ties} of {n_pairs} pairs have exactly equal rewards (ties, counted wrong above)."]

    missing = per_category[per_category["status"] == STATUS_MISSING][P.BIAS_TYPE].tolist()
    extra = per_category[per_category["status"] == STATUS_EXTRA][P.BIAS_TYPE].tolist()
    lines += ["", "## Categories without evaluation pairs", ""]
    if missing:
        lines.append(
            "These taxonomy categories have no pairs in the evaluated file, so nothing is known "
            "about them: " + ", ".join(md_text(c) for c in missing) + "."
        )
    else:
        lines.append("None: every taxonomy category has at least one evaluation pair.")
    if extra:
        lines += [
            "",
            "Categories in the evaluated pairs that are not in the taxonomy: "
            + ", ".join(md_text(c) for c in extra)
            + ".",
        ]
    small = per_category[(per_category["n"] > 0) & (per_category["n"] < 30)][P.BIAS_TYPE].tolist()
    if small:
        names = ", ".join(map(md_text, small))
        lines += ["", f"Fewer than 30 pairs (wide intervals, read with care): {names}."]
    lines.append("")
    for section in sections:
        lines += [section.rstrip("\n"), ""]
    return "\n".join(lines)
