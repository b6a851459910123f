"""Nodes of the data_splitting stage: validated pairs -> train / val / test, a report and a chart.

Order of work: Kedro validates the typed parameters (`SplitConfig`, a pydantic model in the node
signatures) when the session starts, before any data is read; then pairs are grouped so that no
text crosses splits, whole groups are placed per bias_type, and only then is *train* balanced. Val and
test are the untouched stratified hold-out: balancing never adds to, drops from or re-weights them.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from typing import Any

import pandas as pd

from edu_bias_pipeline import pairs as P
from edu_bias_pipeline.datasets.jsonl import SOURCE_ATTR
from edu_bias_pipeline.pipelines.data_splitting import splitting as S
from edu_bias_pipeline.pipelines.data_splitting.config import SplitConfig

logger = logging.getLogger(__name__)

INPUT_NAME = "validated_pairs (data/02_intermediate/validated_pairs.jsonl)"
REQUIRED_FIELDS = (P.PAIR_ID, P.CHOSEN, P.REJECTED, P.BIAS_TYPE)


# ------------------------------------------------------------------------------------------ assignment
def _clean_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts with NaN turned back into None, after checking the fields the split relies on."""
    if frame is None or len(frame) == 0:
        raise ValueError(
            f"{INPUT_NAME} is empty: there is nothing to split. Check data_validation's "
            "quarantined_pairs.jsonl and validation_summary.json for why every pair was rejected."
        )
    missing = [f for f in REQUIRED_FIELDS if f not in frame.columns]
    if missing:
        raise ValueError(
            f"{INPUT_NAME} lacks field(s) {missing}: it must be the output of the data_validation stage "
            f"(fields {list(REQUIRED_FIELDS)} plus prompt, meta, ...)"
        )
    rows = [{k: (None if P.is_missing(v) else v) for k, v in r.items()} for r in frame.to_dict("records")]
    errors: list[str] = []
    for line, row in enumerate(rows, start=1):
        where = f"line {line}" + (f" (source_line {row[P.SOURCE_LINE]})" if row.get(P.SOURCE_LINE) else "")
        for field in (P.CHOSEN, P.REJECTED, P.BIAS_TYPE, P.PAIR_ID):
            if not isinstance(row.get(field), str) or not row[field].strip():
                errors.append(f"{where}: field {field!r} is missing or not a non-empty string")
        prompt = row.get(P.PROMPT)
        if prompt is not None and not isinstance(prompt, str):
            errors.append(f"{where}: field 'prompt' must be a string or null, got {type(prompt).__name__}")
        meta = row.get(P.META)
        if meta is None:
            row[P.META] = meta = {}
        if not isinstance(meta, dict):
            errors.append(f"{where}: field 'meta' must be an object, got {type(meta).__name__}")
            continue
        flag = meta.get(P.EVAL_ONLY)
        if flag is not None and not isinstance(flag, bool):
            errors.append(f"{where}: field 'meta.eval_only' must be true/false, got {flag!r}")
    P.raise_listed(INPUT_NAME, errors)
    return rows


def _is_eval_only(row: dict[str, Any]) -> bool:
    return row[P.META].get(P.EVAL_ONLY) is True


def _max_deviation(counts: dict[str, Counter], ratios: dict[str, float]) -> dict[str, Any] | None:
    """The category and split whose realised ratio is furthest from the configured one."""
    worst = None
    for category, by_split in sorted(counts.items()):
        n = sum(by_split.values())
        for split in S.SPLITS:
            deviation = abs(by_split[split] / n - ratios[split])
            if worst is None or deviation > worst["deviation"] + 1e-12:
                worst = {"category": category, "split": split, "deviation": round(deviation, 4)}
    return worst


class SplitRatioError(ValueError):
    """The placed groups miss the configured ratios by more than `ratio_tolerance`."""


# The report lists this many common texts and largest groups; the counts cover all of them.
LISTED_COMMON_TEXTS = 20
LISTED_LARGEST_GROUPS = 5

GROUPING_RULE = (
    "pairs sharing a text (prompt, chosen or rejected, in any role; compared after normalize_text and, with "
    "group_near_duplicates, also as near-duplicates) are in one group, transitively; a text held by more "
    "than common_text_pairs pairs is common boilerplate and links nothing"
)


def _common_texts(grouping: S.Grouping) -> dict[str, Any]:
    """The common texts (most-held first), merged over their exact and near-duplicate forms."""
    merged: dict[str, dict[str, Any]] = {}
    for key in grouping.common:
        text = grouping.shown[key]
        entry = merged.setdefault(text, {"text": S.preview(text), "pairs": 0, "forms": []})
        entry["pairs"] = max(entry["pairs"], grouping.pairs_per_key[key])
        entry["forms"].append("exact" if key[0] == "exact" else "near_duplicate")
    listed = sorted(merged.items(), key=lambda kv: (-kv[1]["pairs"], kv[0]))
    return {
        "count": len(listed),
        "listed": [dict(entry, forms=sorted(entry["forms"])) for _, entry in listed[:LISTED_COMMON_TEXTS]],
        "truncated": len(listed) > LISTED_COMMON_TEXTS,
    }


def _describe_group(
    g: int, members: list[int], labels: list[str], links: dict[int, tuple[int, S.Key]], grouping: S.Grouping
) -> dict[str, Any]:
    n_links, key = links.get(g, (0, None))
    return {
        "pairs": len(members),
        "bias_types": dict(sorted(Counter(labels[i] for i in members).items())),
        "linking_texts": n_links,
        "most_shared_text": S.preview(grouping.shown[key]) if key else None,
        "most_shared_text_pairs": grouping.pairs_per_key[key] if key else None,
    }


def _ratio_error(
    misses: list[dict[str, Any]],
    realised: dict[str, Counter],
    config: SplitConfig,
    grouping: S.Grouping,
    members: dict[int, list[int]],
    labels: list[str],
    links: dict[int, tuple[int, S.Key]],
    split_of_group: dict[int, str],
    pulled: Counter,
) -> str:
    """Names the failing categories, the group behind each (size, the text that formed it) and the fixes."""
    ratios = config.ratios.as_dict()
    failing = list(dict.fromkeys(m["category"] for m in misses))
    configured = " / ".join(f"{ratios[s]:g}" for s in S.SPLITS)
    lines = [
        f"data_splitting: the split misses the configured ratios ({configured}"
        f" train / val / test) by more than ratio_tolerance={config.ratio_tolerance:g} in {len(failing)} "
        f"bias_type(s): {', '.join(failing)}."
    ]
    group_of_pair = grouping.group_of
    described: dict[int, str] = {}
    advice: list[tuple[int, S.Key]] = []
    for category in failing[:3]:
        by_split = realised[category]
        n = sum(by_split.values())
        shares = " / ".join(f"{by_split[s] / n:.3f}" for s in S.SPLITS)
        text = f"- {category!r} ({n} pairs) got {shares}"
        own_groups = {group_of_pair[i] for i, label in enumerate(labels) if label == category}
        g = max(own_groups, key=lambda x: (len(members[x]), -x))
        if g in described:
            text += f"; its largest leakage group is the one named for {described[g]!r}"
        elif len(members[g]) > 1:
            described[g] = category
            info = _describe_group(g, members[g], labels, links, grouping)
            kinds = info["bias_types"]
            text += (
                f". Its largest leakage group holds {info['pairs']} pairs ({kinds.get(category, 0)} of them "
                f"{category!r}" + (f", spanning {len(kinds)} bias_types" if len(kinds) > 1 else "")
            )
            text += (
                f"), placed whole in {split_of_group[g]}; it is linked through {info['linking_texts']} "
                f"shared text(s), the most shared being {info['most_shared_text']!r} (held by "
                f"{info['most_shared_text_pairs']} pairs)"
            )
            advice.append((info["most_shared_text_pairs"], links[g][1]))
        if pulled[category]:
            text += (
                f"; {pulled[category]} of its pairs share a text with eval_only pairs and were moved to test "
                "with them"
            )
        lines.append(text + ".")
    threshold = config.common_text_pairs
    if threshold is None:
        default = SplitConfig.model_fields["common_text_pairs"].default
        lines.append(
            "What to do: data_splitting.common_text_pairs is null, so every shared text groups pairs; set it "
            f"(the default is {default}) so that a text held by more pairs than that counts as boilerplate "
            "and links nothing;"
        )
    else:
        lines.append(
            f"What to do: a text held by more than data_splitting.common_text_pairs={threshold} pairs counts "
            "as boilerplate and links nothing;"
        )
        if advice:
            k_pairs, key = max(advice)
            lines.append(
                f"  set it below {k_pairs} (--params data_splitting.common_text_pairs={k_pairs - 1}) so that "
                f"{S.preview(grouping.shown[key])!r} stops grouping pairs (pairs sharing rarer texts stay "
                "together);"
            )
    lines.append(
        "  or make the repeated text distinct in the data; or, to accept the skew, raise "
        f"data_splitting.ratio_tolerance (now {config.ratio_tolerance:g}). This run wrote no split file."
    )
    return "\n".join(lines)


def assign_splits(validated_pairs: pd.DataFrame, config: SplitConfig) -> tuple[pd.DataFrame, dict]:
    """Give every validated pair a `split`, keeping leakage groups whole and stratifying by bias_type.

    Grouping: pairs sharing a prompt, chosen or rejected text (after `normalize_text`, in any role) or,
    when `group_near_duplicates`, a `near_duplicate_key`, are joined transitively (union-find). A text held
    by more than `common_text_pairs` pairs (a stock prompt, a generic "cannot be determined" answer) is
    boilerplate and joins nothing: it would chain the whole corpus into one group.

    A group whose pairs carry different bias_types is stratified under its majority bias_type (ties: the
    alphabetically first); each pair keeps its own bias_type. A group containing an eval_only pair goes to
    test whole, so its trainable group-mates cannot leak the eval-only texts into training.

    Raises `SplitRatioError` when a category's realised ratios miss the configured ones by more than
    `ratio_tolerance`, naming the group (and the text) that caused it.
    """
    config = SplitConfig.parse(config)
    if config.max_per_category is not None and config.balancing != "downsample":
        logger.info(
            "data_splitting.max_per_category=%s is ignored: it only applies to balancing 'downsample' "
            "(balancing is %r)",
            config.max_per_category,
            config.balancing,
        )
    rows = _clean_rows(validated_pairs)
    texts = [(r.get(P.PROMPT), r[P.CHOSEN], r[P.REJECTED]) for r in rows]
    grouping = S.group_pairs(
        texts, near_duplicates=config.group_near_duplicates, common_text_pairs=config.common_text_pairs
    )
    group_of = grouping.group_of

    members = S.group_by(group_of, range(len(group_of)))
    labels = [r[P.BIAS_TYPE] for r in rows]
    group_category = {g: S.majority_label(labels[i] for i in idx) for g, idx in members.items()}
    # Sorting groups by content before the seeded shuffle makes the split independent of input row order.
    order_key = {g: min(rows[i][P.PAIR_ID] for i in idx) for g, idx in members.items()}
    eval_groups = {g for g, idx in members.items() if any(_is_eval_only(rows[i]) for i in idx)}

    split_of_group: dict[int, str] = dict.fromkeys(eval_groups, "test")
    pools: dict[str, dict[int, int]] = defaultdict(dict)
    for g, idx in members.items():
        if g not in eval_groups:
            pools[group_category[g]][g] = len(idx)

    train_only: dict[str, int] = {}
    targets: dict[str, dict[str, int]] = {}
    for category in sorted(pools):
        groups = pools[category]
        n = sum(groups.values())
        if n < config.min_pairs_per_category:
            train_only[category] = n
            split_of_group.update(dict.fromkeys(groups, "train"))
            continue
        targets[category] = S.allocate_targets(n, config.ratios.as_dict())
        rng = S.category_rng(config.seed, "split", category)
        split_of_group.update(S.assign_groups(groups, targets[category], rng, order_key))

    # Realised per pair's own bias_type, without eval_only pairs: what the report's realised_ratios say.
    realised: dict[str, Counter] = defaultdict(Counter)
    pulled_per_category: Counter = Counter()
    for i, g in enumerate(group_of):
        if not _is_eval_only(rows[i]):
            realised[labels[i]][split_of_group[g]] += 1
            if g in eval_groups:
                pulled_per_category[labels[i]] += 1
    checked = {
        c: v
        for c, v in realised.items()
        if c not in train_only and sum(v.values()) >= config.min_pairs_per_category
    }
    links = S.group_links(grouping)
    misses = S.ratio_misses(checked, config.ratios.as_dict(), config.ratio_tolerance)
    if misses:
        raise SplitRatioError(
            _ratio_error(
                misses,
                realised,
                config,
                grouping,
                members,
                labels,
                links,
                split_of_group,
                pulled_per_category,
            )
        )

    columns = list(validated_pairs.columns) + ([P.META] if P.META not in validated_pairs.columns else [])
    out = pd.DataFrame(rows, columns=columns)
    out[P.SPLIT] = [split_of_group[g] for g in group_of]

    cross = {
        g: sorted({labels[i] for i in idx}) for g, idx in members.items() if len({labels[i] for i in idx}) > 1
    }
    pulled = sum(pulled_per_category.values())
    sizes = [len(idx) for idx in members.values()]
    largest = sorted(
        (g for g, idx in members.items() if len(idx) > 1), key=lambda g: (-len(members[g]), order_key[g])
    )
    notes = {
        "groups": {
            "rule": GROUPING_RULE,
            "texts_compared": [P.PROMPT, P.CHOSEN, P.REJECTED],
            "near_duplicates_grouped": config.group_near_duplicates,
            "common_text_pairs": config.common_text_pairs,
            "common_texts": _common_texts(grouping),
            "count": len(members),
            "multi_pair": sum(1 for s in sizes if s > 1),
            "pairs_in_multi_pair_groups": sum(s for s in sizes if s > 1),
            "largest": max(sizes),
            "cross_category": len(cross),
            "sizes": S.size_distribution(sizes),
            "largest_groups": [
                {**_describe_group(g, members[g], labels, links, grouping), "split": split_of_group[g]}
                for g in largest[:LISTED_LARGEST_GROUPS]
            ],
        },
        "ratio_check": {
            "tolerance": config.ratio_tolerance,
            "categories_checked": sorted(checked),
            "max_deviation": _max_deviation(checked, config.ratios.as_dict()),
            "passed": True,
        },
        "eval_only": {
            "pairs": sum(1 for r in rows if _is_eval_only(r)),
            "per_category": dict(sorted(Counter(r[P.BIAS_TYPE] for r in rows if _is_eval_only(r)).items())),
            "group_mates_moved_to_test": pulled,
        },
        "train_only_categories": train_only,
        "targets_by_group_category": targets,
        "warnings": [],
    }
    logger.info(
        "data_splitting: %d leakage groups (largest %d pairs); %d common text(s) held by more than %s pairs "
        "link nothing",
        len(members),
        max(sizes),
        notes["groups"]["common_texts"]["count"],
        config.common_text_pairs,
    )
    warn = notes["warnings"].append
    for category, n in train_only.items():
        warn(
            f"category {category!r} has only {n} splittable pair(s) (< min_pairs_per_category="
            f"{config.min_pairs_per_category}): all of them go to train, none to val/test"
        )
    if cross:
        examples = ", ".join("+".join(c) for c in list(cross.values())[:5])
        warn(
            f"{len(cross)} leakage group(s) mix bias_types (e.g. {examples}); each was placed by its "
            "majority bias_type, so per-category proportions can deviate slightly"
        )
    if pulled:
        warn(f"{pulled} trainable pair(s) share a text with an eval_only pair and were moved to test with it")
    for message in notes["warnings"]:
        logger.warning("data_splitting: %s", message)
    return out, notes


# ------------------------------------------------------------------------------------------- balancing
def _split_frame(frame: pd.DataFrame, positions: list[int], weights: dict[str, float] | None) -> pd.DataFrame:
    part = frame.iloc[positions].reset_index(drop=True)
    # NaN prompts (pandas' reading of JSON null) go back out as null, not as the string "NaN".
    if P.PROMPT in part.columns:
        part[P.PROMPT] = part[P.PROMPT].astype(object).where(part[P.PROMPT].notna(), None)
    part[P.SAMPLE_WEIGHT] = (
        [weights[c] for c in part[P.BIAS_TYPE]] if weights is not None else [1.0] * len(part)
    )
    return part


def balance_splits(
    split_pairs: pd.DataFrame, config: SplitConfig, split_notes: dict
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """Apply the configured balancing to train only and emit the three split frames."""
    config = SplitConfig.parse(config)
    labels = list(split_pairs[P.BIAS_TYPE])
    splits = list(split_pairs[P.SPLIT])
    positions = {s: [i for i, v in enumerate(splits) if v == s] for s in S.SPLITS}
    train_by_cat = S.group_by(labels, positions["train"])
    before = {c: len(v) for c, v in sorted(train_by_cat.items())}
    summary: dict[str, Any] = {
        "method": config.balancing,
        "applies_to": "train",
        "train_counts_before": before,
        "train_counts_after": before,
        "dropped": {},
        "added": {},
        "weights": {},
        "cap": None,
        "notes": [],
    }
    weights = None
    train_positions = positions["train"]
    if len(train_by_cat) <= 1 and config.balancing != "none":
        summary["notes"].append(
            f"train holds {len(train_by_cat)} bias_type(s): "
            f"balancing {config.balancing!r} has nothing to balance"
        )
    elif config.balancing == "downsample":
        cap = config.max_per_category
        if cap is None:
            # Categories already flagged as too small must not drag every other category down to their size.
            too_small = set(split_notes.get("train_only_categories", {}))
            sized = [n for c, n in before.items() if c not in too_small] or list(before.values())
            cap = min(sized)
        summary["cap"] = cap
        train_positions, summary["dropped"] = S.downsample_indices(train_by_cat, cap, config.seed)
        if summary["dropped"]:
            summary["notes"].append(
                f"downsampling dropped {sum(summary['dropped'].values())} train pair(s) to cap every "
                f"bias_type at {cap}; they are in no output file (counts per category under 'dropped')"
            )
    elif config.balancing == "upsample":
        train_positions, summary["added"] = S.upsample_indices(train_by_cat, config.seed)
    elif config.balancing == "weights":
        weights = S.balanced_weights(before)
        summary["weights"] = weights

    summary["train_counts_after"] = dict(sorted(Counter(labels[i] for i in train_positions).items()))
    for note in summary["notes"]:
        logger.warning("data_splitting: %s", note)
    train = _split_frame(split_pairs, train_positions, weights)
    val = _split_frame(split_pairs, positions["val"], None)
    test = _split_frame(split_pairs, positions["test"], None)
    logger.info(
        "data_splitting: train=%d val=%d test=%d (balancing=%s)",
        len(train),
        len(val),
        len(test),
        config.balancing,
    )
    return train, val, test, summary


# ---------------------------------------------------------------------------------------------- report
def _ratios(counts: dict[str, int]) -> dict[str, float | None]:
    total = sum(counts.values())
    return {s: (round(counts[s] / total, 4) if total else None) for s in S.SPLITS}


def build_split_report(
    split_pairs: pd.DataFrame,
    train: pd.DataFrame,
    val: pd.DataFrame,
    test: pd.DataFrame,
    split_notes: dict,
    balancing: dict,
    config: SplitConfig,
) -> dict[str, Any]:
    """Counts per category per split, realised vs. configured ratios, balancing, seed and warnings.

    `realised_ratios` describe the stratified split itself: before balancing, without eval_only pairs
    (those go to test whatever the ratios say). `counts` are what the output files hold.
    """
    config = SplitConfig.parse(config)
    eval_only = [isinstance(m, dict) and m.get(P.EVAL_ONLY) is True for m in split_pairs[P.META]]
    categories = sorted(set(split_pairs[P.BIAS_TYPE]))
    ratios = config.ratios.as_dict()
    files = {"train": train, "val": val, "test": test}
    final = {s: Counter(f[P.BIAS_TYPE]) if len(f) else Counter() for s, f in files.items()}
    stratified: dict[str, Counter] = defaultdict(Counter)
    eval_per_cat: Counter = Counter()
    for label, split, is_eval in zip(split_pairs[P.BIAS_TYPE], split_pairs[P.SPLIT], eval_only, strict=True):
        if is_eval:
            eval_per_cat[label] += 1
        else:
            stratified[label][split] += 1

    train_only = split_notes.get("train_only_categories", {})
    per_category: dict[str, Any] = {}
    for c in categories:
        strat = {s: stratified[c][s] for s in S.SPLITS}
        n = sum(strat.values())
        per_category[c] = {
            "input_pairs": n + eval_per_cat[c],
            "eval_only_pairs": eval_per_cat[c],
            "target": {s: round(ratios[s] * n, 2) for s in S.SPLITS}
            if c not in train_only
            else {"train": n, "val": 0, "test": 0},
            "split_before_balancing": strat,
            "realised_ratios": _ratios(strat),
            "counts": {s: final[s][c] for s in S.SPLITS},
            "train_only": c in train_only,
            "sample_weight": balancing.get("weights", {}).get(c, 1.0),
        }

    warnings = list(split_notes.get("warnings", [])) + list(balancing.get("notes", []))
    absent = {s: [c for c in categories if final[s][c] == 0] for s in ("val", "test")}
    for split in ("val", "test"):
        for c in absent[split]:
            reason = (
                "train-only (too small)"
                if c in train_only
                else ("ratio is 0" if ratios[split] == 0 else "too few pairs / groups for this split")
            )
            warnings.append(f"category {c!r} is absent from {split}: {reason}")
    for split, frame in files.items():
        if len(frame) == 0:
            warnings.append(f"the {split} split is empty")

    with_prompt = {
        s: int(f[P.PROMPT].notna().sum()) if len(f) and P.PROMPT in f.columns else 0 for s, f in files.items()
    }
    overall = {s: sum(stratified[c][s] for c in categories) for s in S.SPLITS}
    return {
        "seed": config.seed,
        "ratios": ratios,
        "min_pairs_per_category": config.min_pairs_per_category,
        "balancing": balancing,
        "input_pairs": len(split_pairs),
        "totals": {s: len(f) for s, f in files.items()},
        "realised_ratios": _ratios(overall),
        "counts": {s: {c: final[s][c] for c in categories if final[s][c]} for s in S.SPLITS},
        "per_category": per_category,
        "pairs_with_prompt": with_prompt,
        "groups": split_notes.get("groups", {}),
        "ratio_check": split_notes.get("ratio_check", {}),
        "eval_only": split_notes.get("eval_only", {}),
        "train_only_categories": sorted(train_only),
        "absent_from_val": absent["val"],
        "absent_from_test": absent["test"],
        "warnings": warnings,
        # What each split file held when this report was written (saved after all three): a consumer
        # compares it with the file it reads, so a set mixed by a killed run is refused (see gate.py).
        "files": {s: f.attrs.get(SOURCE_ATTR) for s, f in files.items()},
    }


# ----------------------------------------------------------------------------------------------- chart
def plot_split_chart(split_report: dict[str, Any]):
    """Grouped bars: pairs per bias_type in each output split."""
    # Figure + Agg canvas directly, never pyplot: no GUI backend, no global figure state between runs.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    per_category = split_report["per_category"]
    categories = list(per_category)
    width = 0.27
    fig = Figure(figsize=(max(6.0, 0.9 * len(categories) + 2), 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colours = {"train": "#4C72B0", "val": "#DD8452", "test": "#55A868"}
    for k, split in enumerate(S.SPLITS):
        xs = [i + (k - 1) * width for i in range(len(categories))]
        heights = [per_category[c]["counts"][split] for c in categories]
        bars = ax.bar(xs, heights, width, label=split, color=colours[split])
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(range(len(categories)), categories, rotation=30, ha="right")
    ax.set_ylabel("pairs")
    ax.set_title(
        f"Pairs per bias_type and split (balancing: {split_report['balancing']['method']}, "
        f"seed {split_report['seed']})"
    )
    ax.legend()
    return fig
