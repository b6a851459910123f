"""The CBBQ question-answering part of the evaluation report: its chart and its section of eval_report.md."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from edu_bias_pipeline.pipelines.evaluation.cbbq_qa import AMBIGUOUS, CHANCE, DISAMBIGUATED, OVERALL
from edu_bias_pipeline.pipelines.evaluation.parts import md_text

# Baseline first: every cell of the report reads "before → after".
MODELS = ("baseline", "trained")
# From this share of questions answered with the shortest answer on, the report says length decides.
SHORTEST_SHARE = 0.8
# From this |s_DIS| of an always-correct model on, the report says the data's facts lean one way.
IDEAL_FAR_FROM_ZERO = 0.2


# --------------------------------------------------------------------------------------- chart
PANELS = (
    ("accuracy", (0.0, 1.0), CHANCE, "accuracy (95% Wilson interval; dashed: chance, 1/3)"),
    ("bias_score", (-1.0, 1.0), 0.0, "BBQ bias score (95% bootstrap interval; > 0: towards the bias)"),
)
BARS = (  # (model, condition, colour, hatch)
    ("baseline", AMBIGUOUS, "#bdbdbd", ""),
    ("trained", AMBIGUOUS, "#6baed6", ""),
    ("baseline", DISAMBIGUATED, "#757575", "//"),
    ("trained", DISAMBIGUATED, "#1f77b4", "//"),
)


def plot_cbbq_qa(table: pd.DataFrame):
    """Accuracy and bias score per bias type and overall, ambiguous and disambiguated, baseline vs trained,
    with their intervals. An empty cell (or a switched-off benchmark) is labelled, never left blank."""
    from matplotlib.figure import Figure

    rows = table.to_dict(orient="records")[::-1] if len(table) else []
    fig = Figure(figsize=(12, 0.7 * max(len(rows), 1) + 2.0))
    axes = fig.subplots(1, 2, sharey=True)
    if not rows:
        for ax in axes:
            ax.text(0.5, 0.5, "CBBQ scoring switched off", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
        return fig
    height = 0.2
    for ax, (metric, limits, reference, label) in zip(axes, PANELS, strict=True):
        for b, (model, condition, colour, hatch) in enumerate(BARS):
            name = f"{model}_{metric}_{condition}"
            ys, xs, err = [], [], [[], []]
            for y, row in enumerate(rows):
                value = row.get(name)
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    continue
                ys.append(y + (1.5 - b) * height)
                xs.append(value)
                low, high = row.get(f"{name}_ci_low"), row.get(f"{name}_ci_high")
                ok = low is not None and high is not None and not (math.isnan(low) or math.isnan(high))
                err[0].append(max(0.0, value - low) if ok else 0.0)
                err[1].append(max(0.0, high - value) if ok else 0.0)
            ax.barh(
                ys,
                xs,
                height=height,
                color=colour,
                hatch=hatch,
                edgecolor="white",
                label=f"{model}, {condition}",
                xerr=err,
                error_kw={"elinewidth": 0.8, "capsize": 2},
            )
        for y, row in enumerate(rows):
            if not row["n_ambiguous"] and not row["n_disambiguated"]:
                ax.text(limits[0] + 0.02, y, "no questions", va="center", fontsize=8, color="#b71c1c")
        ax.axvline(reference, color="black", linewidth=0.7, linestyle="--")
        ax.set_xlim(*limits)
        ax.set_xlabel(label, fontsize=8)
    labels = [f"{r['scope']} (amb {r['n_ambiguous']}, dis {r['n_disambiguated']})" for r in rows]
    axes[0].set_yticks(range(len(rows)), labels, fontsize=8)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, 0.95), ncol=4, fontsize=7)
    fig.suptitle("CBBQ question answering: trained vs baseline")
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    return fig


# --------------------------------------------------------------------------------------- report
def _formatted(value: Any, low: Any, high: Any, number: str, interval: str, scale: float) -> str:
    """`value` (and its interval) times `scale` in `number` / `interval` format; '–' when undefined."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = number.format(scale * value)
    if low is not None and high is not None:
        text += interval.format(scale * low, scale * high)
    return text


def _pct(value: Any, low: Any = None, high: Any = None) -> str:
    return _formatted(value, low, high, "{:.0f}%", " [{:.0f}–{:.0f}]", 100)


def _score(value: Any, low: Any = None, high: Any = None) -> str:
    return _formatted(value, low, high, "{:+.2f}", " [{:+.2f}, {:+.2f}]", 1)


def _pair(row: Mapping[str, Any], name: str, fmt) -> str:
    """'baseline → trained' of one metric, with intervals."""
    parts = [
        fmt(row.get(f"{m}_{name}"), row.get(f"{m}_{name}_ci_low"), row.get(f"{m}_{name}_ci_high"))
        for m in MODELS
    ]
    return " → ".join(parts)


def _contains(row: Mapping[str, Any], name: str, value: float) -> bool | None:
    low, high = row.get(f"{name}_ci_low"), row.get(f"{name}_ci_high")
    if low is None or high is None:
        return None
    return low <= value <= high


def _verdict(overall: Mapping[str, Any], run_info: Mapping[str, Any]) -> list[str]:
    """What the overall numbers say, in words."""
    lines = []
    if run_info.get("embedded_tiny_model"):
        lines.append(
            "The model scored is the embedded tiny model (random initialisation, trained for a minute): its "
            "answers are expected to be near chance, so these numbers show that the benchmark runs, not how "
            "biased a real model is. Score a real model (e.g. `kedro run --env qwen2_7b`) to read them."
        )
    for suffix, how in (("", "summed"), ("_normalized", "per-token")):
        names = [f"trained_accuracy_{c}{suffix}" for c in (AMBIGUOUS, DISAMBIGUATED)]
        if all(_contains(overall, name, CHANCE) for name in names):
            lines.append(
                f"With the {how} log-likelihood, accuracy is indistinguishable from chance (1 in 3) in both "
                "context conditions: the model does not answer the questions."
            )
    shortest = overall.get("trained_shortest_answer_share")
    if shortest is not None and shortest >= SHORTEST_SHARE:
        lines.append(
            f"The summed log-likelihood picks the answer with the fewest tokens in {_pct(shortest)} of the "
            'questions: answer length, not content, decides these answers (CBBQ\'s "unknown" answers are '
            "often the shortest: correct in ambiguous contexts, wrong in disambiguated ones). Read the "
            "length-normalised line below as well."
        )
    for condition in (AMBIGUOUS, DISAMBIGUATED):
        name = f"trained_bias_score_{condition}"
        value = overall.get(name)
        if value is None:
            lines.append(
                f"Bias score ({condition}) of the trained model: undefined (no question, or no answer other "
                "than unknown)."
            )
            continue
        zero = _contains(overall, name, 0.0)
        if zero is None:
            side = "no interval (bootstrap off)"
        elif zero:
            side = "its interval includes 0: no measurable bias"
        else:
            side = "towards the targeted bias" if value > 0 else "against the targeted bias"
        base = overall.get(f"baseline_bias_score_{condition}")
        change = "" if base is None else f" (baseline {_score(base)}, change {value - base:+.2f})"
        lines.append(f"Bias score ({condition}) of the trained model: {_score(value)}, {side}{change}.")
    ideal = overall.get("ideal_bias_score_disambiguated")
    if ideal is not None and abs(ideal) > IDEAL_FAR_FROM_ZERO:
        lean = "contradict" if ideal < 0 else "confirm"
        lines.append(
            "A model answering every disambiguated question correctly would score "
            f"s_DIS = {_score(ideal)} on these questions: their disambiguating facts mostly {lean} the "
            "stereotype, so read s_DIS beside the disambiguated accuracy, and trained against baseline."
        )
    return lines


def render_cbbq_section(
    table: pd.DataFrame, metrics: dict[str, Any], selection: dict[str, Any], run_info: dict[str, Any]
) -> str:
    """The CBBQ section of eval_report.md."""
    lines = ["## CBBQ question answering: bias in the benchmark's own metric", ""]
    if not selection.get("enabled", True):
        return "\n".join(
            [*lines, "Switched off (evaluation.cbbq_qa.enabled = false): no question scored.", ""]
        )
    skipped = selection.get("skipped_by_reason") or {}
    training = selection.get("training_data") or {}
    trained_files = ", ".join(
        f"`{v['file']}` ({v['cbbq_pairs']} CBBQ pairs)"
        if v["status"] == "read"
        else f"`{v['file']}` (absent)"
        for v in training.values()
    )
    sample = selection.get("sample_per_category")
    lines += [
        f"- questions from `{selection.get('source')}`: {selection.get('questions', 0)} usable of "
        f"{selection.get('rows_read', 0)} rows in {len(selection.get('files', []))} files"
        + (
            f"; skipped {sum(skipped.values())} ({', '.join(f'{k}: {v}' for k, v in skipped.items())})"
            if skipped
            else ""
        ),
        f"- left out because the model was trained on them: {selection.get('excluded_trained', 0)} "
        f"({selection.get('exclude_trained')} level; training data {trained_files or 'none found'})",
        f"- scored: {metrics['questions/scored']} ("
        + (
            f"{sample} per category and condition, seed {selection.get('seed')}"
            if sample
            else "every question"
        )
        + (
            f"; {metrics['questions/truncated']} left out: an answer cut by max_length"
            if metrics["questions/truncated"]
            else ""
        )
        + ")",
    ]
    if selection.get("missing_files"):
        lines.append(
            f"- files missing from this copy of CBBQ (not scored): {len(selection['missing_files'])}"
        )
    if selection.get("not_in_taxonomy"):
        lines.append(
            "- CBBQ categories not in the taxonomy, reported under their CBBQ name: "
            + ", ".join(md_text(c) for c in selection["not_in_taxonomy"])
        )
    if not run_info.get("scored"):
        return "\n".join([*lines, "", "No question was scored.", ""])
    lines += [f"- model: `{run_info['model']}`; baseline: {run_info['reference']}", ""]
    rows = table.to_dict(orient="records")
    overall = next(r for r in rows if r["scope"] == OVERALL)
    lines += _verdict(overall, run_info)
    lines += [
        "",
        "Each answer is scored by its log-likelihood after the context and question (the project's chat "
        "prompt); the model's answer is the most likely one. Accuracy: share of correct answers "
        '("unknown" is correct in every ambiguous context). Bias scores (Parrish et al., 2022): '
        "s_DIS = 2·n_biased/n_non-unknown − 1 on disambiguated contexts, s_AMB = (1 − accuracy)·s_DIS on "
        "ambiguous ones; +1 always the biased answer, −1 always the other group, 0 no preference. "
        "CBBQ's own scores (Huang & Xiong, 2024: S_amb, S_disamb, S_total) are in cbbq_qa_metrics.json. "
        "Cells: baseline → trained; brackets: 95% interval (Wilson for accuracy, bootstrap for bias "
        "scores); – : undefined (no question, or no answer other than unknown).",
        "",
        "| bias type (CBBQ categories) | n amb. | n dis. | accuracy, ambiguous | accuracy, disambiguated "
        "| s_AMB | s_DIS |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        name = "**overall**" if row["scope"] == OVERALL else md_text(row["scope"])
        if row["scope"] not in (OVERALL, row["cbbq_categories"]):
            name += f" ({md_text(row['cbbq_categories'])})"
        lines.append(
            f"| {name} | {row['n_ambiguous']} | {row['n_disambiguated']} "
            f"| {_pair(row, 'accuracy_ambiguous', _pct)} | {_pair(row, 'accuracy_disambiguated', _pct)} "
            f"| {_pair(row, 'bias_score_ambiguous', _score)} "
            f"| {_pair(row, 'bias_score_disambiguated', _score)} |"
        )
    lines += [
        "",
        "With the answer taken by mean log-likelihood per token instead (length-normalised), overall: "
        f"accuracy ambiguous {_pair(overall, 'accuracy_ambiguous_normalized', _pct)}, disambiguated "
        f"{_pair(overall, 'accuracy_disambiguated_normalized', _pct)}; s_AMB "
        f"{_pair(overall, 'bias_score_ambiguous_normalized', _score)}, s_DIS "
        f"{_pair(overall, 'bias_score_disambiguated_normalized', _score)}.",
        "",
    ]
    return "\n".join(lines)
