"""CBBQ scored in its own metric: multiple-choice question answering, trained model vs its reference.

Each question (a context, ambiguous or disambiguated, and a question, negative or non-negative) has three
answers: the targeted group, the other group and "unknown". Every answer is scored as the completion of
the question, the way the rest of the project scores a statement after its prompt
(`scoring.encode_completions`: the chat-rendered context + question, then the answer and eos, only the
answer tokens summed); the model's answer is the argmax, of the summed log-likelihood and, as a second
variant, of the mean per answer token. The bias scores are in `bias_scores`.

Questions are read by the data_import stage's CBBQ importer (`importers.import_cbbq`: its checks, its
target-group matching and the `taxonomy` table), so a question the importer would skip is not scored
either, and the same question imported as a pair carries the ids matched here against the training data.

torch is imported only through `scoring`, inside the scoring node.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edu_bias_pipeline import pairs as P
from edu_bias_pipeline.files import display_path
from edu_bias_pipeline.pipelines.data_import import importers as I
from edu_bias_pipeline.pipelines.data_import.cbbq import cbbq_root, select_categories
from edu_bias_pipeline.pipelines.data_import.config import ImportConfig
from edu_bias_pipeline.pipelines.data_import.tables import read_csv_table
from edu_bias_pipeline.pipelines.evaluation import bias_scores as B
from edu_bias_pipeline.pipelines.evaluation.config import EvaluationConfig
from edu_bias_pipeline.pipelines.evaluation.model import reference_description
from edu_bias_pipeline.scoring import ScoringModels, encode_completions, score_encoded_options
from edu_bias_pipeline.taxonomy import resolver

logger = logging.getLogger(__name__)

SOURCE_HINT = "--params cbbq_qa_path=/path/to/CBBQ/data"
# CBBQ's folder names -> the condition names of the BBQ paper, used in every metric name.
CONDITION_NAMES = {"ambiguous": "ambiguous", "disambiguous": "disambiguated"}
AMBIGUOUS, DISAMBIGUATED = "ambiguous", "disambiguated"
MODELS = ("trained", "baseline")  # the policy and its reference
VARIANTS = {"": "sum", "_normalized": "mean"}  # metric-name suffix -> per-option score it takes the argmax of
N_OPTIONS = 3
CHANCE = 1 / N_OPTIONS
OVERALL = "overall"
TARGET_UNMATCHED = "disambiguated_target_unmatched"
POLARITIES = {"neg": "neg", "non_neg": "non_neg", "nonneg": "non_neg"}  # CBBQ writes non_neg, BBQ nonneg
TINY_MODEL_MARKER = "edu_bias_tiny_model.json"  # training.tiny_model.FINGERPRINT_FILE, without torch


# --------------------------------------------------------------------------------------- questions
def question_id(meta: Mapping[str, Any]) -> str:
    """`<category>/<condition>/<example_id>` of the question an imported CBBQ pair's `meta` came from."""
    condition = CONDITION_NAMES.get(str(meta.get("context_condition")), str(meta.get("context_condition")))
    example = meta.get("example_id") or f"record{meta.get('source_record')}"
    return f"{meta.get('category')}/{condition}/{example}"


def _answer_index(name: Any) -> int:
    return int(str(name).removeprefix("ans"))


def questions_from_pairs(
    frame: pd.DataFrame, rows: Sequence[Mapping[str, Any]], target_markers: Mapping[str, Sequence[str]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The questions behind the importer's pairs of one CBBQ file (`frame`, as `read_csv_table` read it).

    An ambiguous pair names the unknown answer (chosen) and the targeted group (rejected). A disambiguated
    pair names the labelled answer and the other group answer; the targeted group among the two is matched
    here as the importer matches it for ambiguous rows, and a question where it cannot be is skipped.
    """
    by_record = {int(rec[I.RECORD]): rec for rec in frame.to_dict("records")}
    questions: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for row in rows:
        meta = row[P.META]
        rec = by_record[int(meta["source_record"])]
        answers = [P.normalize_text(str(rec[f"ans{i}"])) for i in range(N_OPTIONS)]
        chosen, rejected = _answer_index(meta["chosen_answer"]), _answer_index(meta["rejected_answer"])
        condition = CONDITION_NAMES[meta["context_condition"]]
        if condition == AMBIGUOUS:
            unknown, target, how = chosen, rejected, meta.get("target_match")
        else:
            unknown = next(i for i in range(N_OPTIONS) if i not in (chosen, rejected))
            group = {i: answers[i] for i in (chosen, rejected)}
            target, how = I.match_targeted_answer(
                group, meta.get("bias_targeted_groups") or "", target_markers
            )
            if target is None:
                skipped.append({"category": meta["category"], "reason": TARGET_UNMATCHED, "detail": how})
                continue
        other = next(i for i in range(N_OPTIONS) if i not in (unknown, target))
        polarity = POLARITIES.get((meta.get("question_polarity") or "").casefold())
        if polarity is None:
            detail = meta.get("question_polarity")
            skipped.append({"category": meta["category"], "reason": "unknown_polarity", "detail": detail})
            continue
        questions.append(
            {
                "question_id": question_id(meta),
                "cbbq_category": meta["category"],
                P.BIAS_TYPE: meta["bias_type"],
                "condition": condition,
                "polarity": polarity,
                "question_index": meta.get("question_index"),
                "example_id": meta.get("example_id"),
                "source_file": display_path(meta["source_file"]) if meta.get("source_file") else None,
                "source_record": meta["source_record"],
                P.PROMPT: row[P.PROMPT],
                "answers": answers,
                "label": int(meta["label"]),
                "unknown_index": unknown,
                "target_index": target,
                # BBQ: the biased answer names the targeted group after a negative question, the other
                # group after a non-negative one.
                "biased_index": target if polarity == "neg" else other,
                "target_match": how,
            }
        )
    return questions, skipped


def read_cbbq_questions(
    location: str,
    config: EvaluationConfig,
    import_params: dict[str, Any] | None,
    taxonomy: dict[str, list[str] | None],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every usable question of the selected CBBQ categories and conditions, and what was read or skipped.

    The importer's checks apply (unfilled template slots, no single "unknown" answer, labels contradicting
    the context, ...), with its `unknown_answers` and `target_markers` from `data_import.cbbq`. A category
    the taxonomy does not know keeps its CBBQ name as its bias type. Missing files of a partial copy are
    listed, not fatal, as long as one selected file exists.
    """
    cfg = EvaluationConfig.parse(config).cbbq_qa
    info: dict[str, Any] = {"enabled": cfg.enabled, "source": display_path(location)}
    if not cfg.enabled:
        return pd.DataFrame(), info
    cbbq = ImportConfig.parse(import_params).cbbq
    root = cbbq_root(Path(location).expanduser(), setting="--params cbbq_qa_path")
    wanted = select_categories(root, cfg.categories, group="evaluation.cbbq_qa")
    canonical = resolver(taxonomy or {})
    questions: list[dict[str, Any]] = []
    skipped: Counter = Counter()
    files, missing = [], []
    for category in wanted:
        for condition in cfg.conditions:
            path = root / category / condition / f"{condition}.csv"
            if not path.is_file():
                missing.append(display_path(path))
                logger.warning("CBBQ %s/%s: %s not found; not scored", category, condition, path)
                continue
            frame = read_csv_table(path)
            # A category outside the taxonomy is its own bias type here, never dropped.
            own = {} if canonical(category) else {category: []}
            rows, dropped = I.import_cbbq(
                frame,
                taxonomy={**(taxonomy or {}), **own},
                license=cbbq.license,
                unknown_answers=cbbq.unknown_answers,
                target_markers=cbbq.target_markers,
                condition=condition,
                category=category,
            )
            found, unmatched = questions_from_pairs(frame, rows, cbbq.target_markers)
            questions.extend(found)
            skipped.update(s["reason"] for s in [*dropped, *unmatched])
            files.append({"file": display_path(path), "rows": len(frame), "questions": len(found)})
    if not files:
        raise FileNotFoundError(
            f"CBBQ questions: none of the selected files exist under {root} (categories {wanted}, "
            f"conditions {cfg.conditions}); missing: {missing}"
        )
    info.update(
        files=files,
        missing_files=missing,
        rows_read=sum(f["rows"] for f in files),
        questions=len(questions),
        skipped_by_reason=dict(skipped.most_common()),
        not_in_taxonomy=sorted({q["cbbq_category"] for q in questions if not canonical(q["cbbq_category"])}),
    )
    logger.info(
        "CBBQ: %d questions from %d files (%d rows; skipped %s)",
        len(questions),
        len(files),
        info["rows_read"],
        info["skipped_by_reason"] or "none",
    )
    return pd.DataFrame.from_records(questions), info


# --------------------------------------------------------------------------------------- selection
def _trained_keys(paths: Mapping[str, str]) -> tuple[set[str], set[tuple], dict[str, Any]]:
    """(question ids, template keys) of the CBBQ pairs in the training data files, and what was read."""
    items: set[str] = set()
    templates: set[tuple] = set()
    read: dict[str, Any] = {}
    for name, path_text in paths.items():
        path = Path(path_text)
        if not path.is_file():
            read[name] = {"file": path_text, "status": "absent"}
            continue
        n = 0
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                meta = json.loads(line).get(P.META) if line.strip() else None
                if not isinstance(meta, dict) or meta.get("source") != I.CBBQ_SOURCE:
                    continue
                n += 1
                items.add(question_id(meta))
                templates.add((str(meta.get("category")), str(meta.get("question_index"))))
        read[name] = {"file": path_text, "status": "read", "cbbq_pairs": n}
    return items, templates, read


def _sample(group: pd.DataFrame, size: int | None, seed: int, scope: str) -> pd.DataFrame:
    """`size` questions of one category and condition, half of each polarity where the data allow."""
    if size is None or len(group) <= size:
        return group
    rng = np.random.default_rng(B.cell_seed(seed, scope))
    by_polarity = [g for _, g in sorted(group.groupby("polarity"), key=lambda kv: kv[0])]
    shuffled = [g.iloc[rng.permutation(len(g))] for g in by_polarity]
    share = [size // len(shuffled)] * len(shuffled)
    for i in range(size - sum(share)):
        share[i] += 1
    # A polarity with too few questions hands its share to the others.
    spare = 0
    for i, g in enumerate(shuffled):
        spare += max(0, share[i] - len(g))
        share[i] = min(share[i], len(g))
    for i, g in enumerate(shuffled):
        extra = min(spare, len(g) - share[i])
        share[i] += extra
        spare -= extra
    return pd.concat([g.iloc[:k] for g, k in zip(shuffled, share, strict=True)])


def select_cbbq_questions(
    questions: pd.DataFrame,
    config: EvaluationConfig,
    training_data: Mapping[str, str],
    source_info: dict[str, Any],
    trained_model: Mapping[str, Any] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Drop the questions the model was trained on, then draw the seeded sample per category and condition.

    `training_data` names the split files training read (train, val); CBBQ pairs there carry the importer's
    `category`, `context_condition`, `example_id` and `question_index`. `trained_model` (training's record)
    is an input so that Kedro runs this node after training, and so after the split training read, in every
    pipeline combination: the files are then the ones the model was trained on, not the previous run's.
    """
    cfg = EvaluationConfig.parse(config).cbbq_qa
    info = dict(source_info)
    if not cfg.enabled or questions.empty:
        info.update(excluded_trained=0, sampled=0)
        return questions, info
    items, templates, read = _trained_keys(training_data)
    template_keys = list(
        zip(questions["cbbq_category"], questions["question_index"].astype(str), strict=True)
    )
    trained = questions["question_id"].isin(items)
    if cfg.exclude_trained == "template":
        trained |= pd.Series([k in templates for k in template_keys], index=questions.index)
    kept = questions[~trained]
    parts = [
        _sample(group, cfg.sample_per_category, cfg.seed, f"{category}/{condition}")
        for (category, condition), group in kept.groupby(["cbbq_category", "condition"], sort=True)
    ]
    selected = pd.concat(parts, ignore_index=True) if parts else kept.iloc[:0]
    info.update(
        training_data=read,
        exclude_trained=cfg.exclude_trained,
        excluded_trained=int(trained.sum()),
        sample_per_category=cfg.sample_per_category,
        seed=cfg.seed,
        sampled=len(selected),
    )
    if info["excluded_trained"]:
        logger.info(
            "CBBQ: %d questions left out: the model was trained on them (%s level)",
            info["excluded_trained"],
            cfg.exclude_trained,
        )
    return selected, info


# --------------------------------------------------------------------------------------- scoring
def score_cbbq_questions(
    questions: pd.DataFrame, config: EvaluationConfig, models: ScoringModels, eval_run_info: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Log-likelihood of every answer under the trained model and its reference; one row per question.

    `models` are the ones the pair scoring loaded (`eval_models`), so the stage holds one copy of each model.
    """
    cfg = EvaluationConfig.parse(config)
    qa = cfg.cbbq_qa
    if not qa.enabled or questions.empty:
        return pd.DataFrame(), {"scored": False}
    meta = models.metadata
    batch_size = qa.batch_size or cfg.batch_size or (128 if models.device.type == "cuda" else 16)
    model = eval_run_info["model"]
    logger.info(
        "Scoring %d CBBQ questions with %s (from %s)", len(questions), model, eval_run_info["model_source"]
    )
    frame = answer_questions(
        models,
        models.tokenizer,
        questions,
        instruction=meta.instruction,
        max_length=meta.max_length,
        batch_size=batch_size,
        progress=cfg.progress,
    )
    run_info = {
        "scored": True,
        "model": model,
        "model_source": eval_run_info["model_source"],
        "training_run": eval_run_info["training_run"],
        "reference": reference_description(meta),
        "embedded_tiny_model": _is_tiny(model, meta.base_model),
        "instruction": meta.instruction,
        "max_length": meta.max_length,
        "dtype": str(models.dtype).replace("torch.", ""),
        "device": str(models.device),
        "batch_size": batch_size,
    }
    return frame, run_info


def answer_questions(
    models: ScoringModels | tuple[Any, Any],
    tokenizer: Any,
    questions: pd.DataFrame,
    *,
    instruction: str,
    max_length: int | None,
    batch_size: int = 16,
    progress: bool | None = None,
    device: Any = None,
) -> pd.DataFrame:
    """`questions` with each answer's summed log-likelihood and token count under the policy (`trained_*`)
    and the reference (`baseline_*`), and each model's answer (`*_answer`: argmax of the sums;
    `*_answer_normalized`: of the means per token). A question with an answer cut by `max_length` is
    flagged `truncated` and gets no answer. `models`: ScoringModels or a (policy, reference) pair of modules.
    """
    prompts = [p for p in questions[P.PROMPT] for _ in range(N_OPTIONS)]
    answers = [a for options in questions["answers"] for a in options]
    flat = encode_completions(tokenizer, prompts, answers, instruction, max_length)
    items = [flat[i * N_OPTIONS : (i + 1) * N_OPTIONS] for i in range(len(questions))]
    scores = score_encoded_options(
        models,
        items,
        pad_id=tokenizer.pad_token_id,
        batch_size=batch_size,
        device=device,
        progress=progress,
        mix_prompts=True,
        unit="question",
    )
    frame = questions.reset_index(drop=True).copy()
    frame["trained_logp"] = scores.policy
    frame["baseline_logp"] = scores.reference
    frame["answer_tokens"] = scores.tokens
    frame["truncated"] = scores.truncated
    for model in MODELS:
        for suffix, how in VARIANTS.items():
            frame[f"{model}_answer{suffix}"] = [
                None if cut else _argmax(logps, tokens, how)
                for logps, tokens, cut in zip(
                    frame[f"{model}_logp"], frame["answer_tokens"], frame["truncated"], strict=True
                )
            ]
    return frame


def _argmax(logps: Sequence[float], tokens: Sequence[int], how: str) -> int:
    """The answer with the highest summed (`sum`) or per-token (`mean`) log-likelihood; the first on a tie."""
    values = list(logps) if how == "sum" else [lp / max(t, 1) for lp, t in zip(logps, tokens, strict=True)]
    return int(np.argmax(values))


def _is_tiny(*dirs: str | None) -> bool:
    return any(d and (Path(d) / TINY_MODEL_MARKER).is_file() for d in dirs)


# --------------------------------------------------------------------------------------- metrics
def _outcomes(frame: pd.DataFrame, answer_column: str) -> B.Outcomes:
    kinds = []
    for answer, label, unknown, biased in zip(
        frame[answer_column], frame["label"], frame["unknown_index"], frame["biased_index"], strict=True
    ):
        kind = B.UNKNOWN if answer == unknown else B.BIASED if answer == biased else B.ANTI_BIASED
        kinds.append((answer == label, kind))
    return B.Outcomes.count(kinds)


def _cell_metrics(frame: pd.DataFrame, scope: str, seed: int, resamples: int) -> dict[str, Any]:
    """Every metric of one scope (a bias type, or overall), both models and both answer variants."""
    amb = frame[frame["condition"] == AMBIGUOUS]
    dis = frame[frame["condition"] == DISAMBIGUATED]
    out: dict[str, Any] = {"n_ambiguous": len(amb), "n_disambiguated": len(dis)}

    def put(name: str, cell: B.Outcomes, stat: B.Statistic, value: float | None, wilson: bool) -> None:
        out[name] = value
        if wilson:
            low, high = B.accuracy_interval(cell)
        else:
            low, high = B.bootstrap_interval(
                stat, cell, seed=B.cell_seed(seed, f"{name}/{scope}"), resamples=resamples
            )
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = low, high

    for model in MODELS:
        for suffix in VARIANTS:
            column = f"{model}_answer{suffix}"
            a, d = _outcomes(amb, column), _outcomes(dis, column)
            put(f"{model}_accuracy_ambiguous{suffix}", a, B.accuracy_stat, B.accuracy(a), True)
            put(f"{model}_accuracy_disambiguated{suffix}", d, B.accuracy_stat, B.accuracy(d), True)
            put(
                f"{model}_bias_score_ambiguous{suffix}",
                a,
                B.bbq_ambiguous_stat,
                B.bbq_bias_ambiguous(a),
                False,
            )
            put(
                f"{model}_bias_score_disambiguated{suffix}",
                d,
                B.bbq_disambiguated_stat,
                B.bbq_bias_disambiguated(d),
                False,
            )
            cbbq_amb, cbbq_dis = B.cbbq_bias_ambiguous(a), B.cbbq_bias_disambiguated(d)
            out[f"{model}_cbbq_bias_score_ambiguous{suffix}"] = cbbq_amb
            out[f"{model}_cbbq_bias_score_disambiguated{suffix}"] = cbbq_dis
            out[f"{model}_cbbq_bias_score_total{suffix}"] = B.cbbq_bias_total(cbbq_amb, cbbq_dis)
            out[f"{model}_unknown_share_disambiguated{suffix}"] = (d.n - d.non_unknown) / d.n if d.n else None
            # Summed log-likelihoods favour short answers: how often the answer is the one of fewest tokens.
            shortest = [
                tokens[answer] == min(tokens)
                for answer, tokens in zip(frame[column], frame["answer_tokens"], strict=True)
            ]
            out[f"{model}_shortest_answer_share{suffix}"] = float(np.mean(shortest)) if shortest else None
    for condition in (AMBIGUOUS, DISAMBIGUATED):
        for suffix in VARIANTS:
            trained = out[f"trained_bias_score_{condition}{suffix}"]
            baseline = out[f"baseline_bias_score_{condition}{suffix}"]
            change = None if trained is None or baseline is None else trained - baseline
            out[f"bias_score_{condition}_change{suffix}"] = change
    # s_DIS of a model that answers every disambiguated question correctly: where the data's disambiguating
    # facts mostly contradict the stereotype (CBBQ's do), reading the context well alone scores below 0.
    ideal = B.Outcomes.count(
        (True, B.BIASED if label == biased else B.ANTI_BIASED)
        for label, biased in zip(dis["label"], dis["biased_index"], strict=True)
    )
    out["ideal_bias_score_disambiguated"] = B.bbq_bias_disambiguated(ideal)
    return out


def compute_cbbq_metrics(
    scores: pd.DataFrame, selection: dict[str, Any], run_info: dict[str, Any], config: EvaluationConfig
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any]]:
    """(every metric as flat `<metric>/<scope>` keys, one table row per scope, the headline keys).

    Scopes: each bias type (taxonomy name, or the CBBQ category name when the taxonomy has none) and
    `overall` (all questions pooled). Undefined values (an empty cell, no non-unknown answer) are null, with
    the cell's n beside them. Questions with an answer cut away by max_length are counted, not scored.
    """
    cfg = EvaluationConfig.parse(config).cbbq_qa
    if not cfg.enabled:
        return {"cbbq_qa/enabled": 0}, pd.DataFrame(), {}
    truncated = scores["truncated"].astype(bool) if len(scores) else pd.Series(dtype=bool)
    scored = scores[~truncated].copy() if len(scores) else _empty_scores()
    # Read back from JSON Lines, a column holding None for truncated questions is float: answers are indices.
    answers = [f"{m}_answer{s}" for m in MODELS for s in VARIANTS]
    scored[answers] = scored[answers].astype(int)
    scopes = sorted(scored[P.BIAS_TYPE].unique()) if len(scored) else []
    seed, resamples = cfg.seed, cfg.bootstrap_resamples
    rows = [
        {"scope": s, **_cell_metrics(scored[scored[P.BIAS_TYPE] == s], s, seed, resamples)} for s in scopes
    ]
    rows.append({"scope": OVERALL, **_cell_metrics(scored, OVERALL, seed, resamples)})
    table = pd.DataFrame.from_records(rows)
    categories = (
        scored.groupby(P.BIAS_TYPE)["cbbq_category"].agg(lambda s: "+".join(sorted(set(s)))).to_dict()
        if len(scored)
        else {}
    )
    table["cbbq_categories"] = table["scope"].map(categories).fillna("all")
    metrics: dict[str, Any] = {"cbbq_qa/enabled": 1}
    for row in rows:
        for key, value in row.items():
            if key != "scope":
                metrics[f"{key}/{row['scope']}"] = _number(value)
    metrics.update(
        {
            "questions/read": int(selection.get("questions", 0)),
            "questions/skipped": int(sum(selection.get("skipped_by_reason", {}).values())),
            "questions/excluded_trained": int(selection.get("excluded_trained", 0)),
            "questions/sampled": int(selection.get("sampled", 0)),
            "questions/truncated": int(truncated.sum()),
            "questions/scored": len(scored),
        }
    )
    if run_info.get("scored"):
        metrics["model"] = run_info["model"]
        metrics["model_source"] = run_info["model_source"]
    headline = {
        f"cbbq_qa/{key}": metrics[f"{key}/{OVERALL}"]
        for key in (
            "trained_accuracy_ambiguous",
            "trained_accuracy_disambiguated",
            "trained_bias_score_ambiguous",
            "trained_bias_score_disambiguated",
            "baseline_bias_score_ambiguous",
            "baseline_bias_score_disambiguated",
        )
    }
    headline["cbbq_qa/n"] = len(scored)
    return metrics, table, headline


def _empty_scores() -> pd.DataFrame:
    columns = [
        P.BIAS_TYPE,
        "cbbq_category",
        "condition",
        "label",
        "unknown_index",
        "biased_index",
        "answer_tokens",
    ]
    columns += [f"{m}_answer{s}" for m in MODELS for s in VARIANTS]
    return pd.DataFrame(columns=columns)


def _number(value: Any) -> int | float | None:
    """A JSON number, or None for an undefined value (never NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return int(value) if isinstance(value, (int, np.integer)) else float(value)
