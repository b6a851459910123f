"""Cross-check with lm-evaluation-harness: its `crows_pairs_english` task (the registered config: choices
[sent_more, sent_less], empty context, `process_results`, mean aggregation), run through its HFLM on the
same tiny models and the same CrowS-Pairs rows, gives the per-sentence log-likelihoods and the
pct_stereotype / likelihood_diff the evaluation stage reports.

Tokenisation at the context/continuation boundary: with an empty context lm-eval scores the continuation's
tokens (`add_special_tokens=False`) after one prefix token, the tokenizer's bos or, without one, its eos;
a continuation whose first token already is that token uses it as the context. `scoring.encode_texts`
follows the same rule; both cases (a tokenizer without bos, the embedded Qwen2-style one, and one with a
bos) are checked here, the second including a sentence that starts with the bos token.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import tiny_checkpoints as tc
import torch
from conftest import PROJECT_ROOT, read_jsonl, run_pipeline, write_jsonl

CROWS_CSV = PROJECT_ROOT / "data/01_raw/benchmarks/crows_pairs/crows_pairs_anonymized.csv"


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    return tc.get_checkpoints(tmp_path_factory)


def _subset(path: Path) -> Path:
    """Rows of every bias type, both directions (antistereo rows included)."""
    frame = pd.read_csv(CROWS_CSV)
    rows = pd.concat([frame[frame["stereo_antistereo"] == "antistereo"].head(8), frame.head(24)])
    rows.to_csv(path, index=False)
    return path


def _hflm(model_dir: Path, tokenizer_dir: Path | None = None):
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir or model_dir)
    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=8, device="cpu")


def _lm_eval_crows(lm, csv_file: Path) -> dict:
    """lm-eval's own crows_pairs_english task, its dataset pointed at the local CSV (cached beside it)."""
    import lm_eval.tasks
    from lm_eval import simple_evaluate
    from lm_eval.tasks._yaml_loader import load_yaml

    task_yaml = Path(lm_eval.tasks.__file__).parent / "crows_pairs" / "crows_pairs_english.yaml"
    config = load_yaml(task_yaml, resolve_func=True)
    data = {"data_files": {"test": str(csv_file)}, "cache_dir": str(csv_file.parent / "hf_cache")}
    config.update(dataset_path="csv", dataset_name=None, dataset_kwargs=data)
    return simple_evaluate(model=lm, tasks=[config], log_samples=True, bootstrap_iters=0)


def test_lm_eval_gives_the_same_sentence_log_likelihoods_and_pct_stereotype(project, ck, tmp_path):
    csv_file = _subset(tmp_path / "crows.csv")
    write_jsonl(project / "data/05_model_input/test.jsonl", tc.pair_rows(with_long=False))
    run_pipeline(
        project,
        "evaluation",
        params={
            "crows_pairs_path": str(csv_file),
            "evaluation": {
                "checkpoint": str(ck.full),
                "dtype": "float64",
                "crows_pairs": {"sample_per_bias_type": None},
                "retention": {"enabled": False},
            },
        },
    )
    ours = pd.DataFrame(read_jsonl(project / "data/07_model_output/crows_pairs_scores.jsonl"))
    metrics = json.loads((project / "data/08_reporting/crows_pairs_metrics.json").read_text(encoding="utf-8"))
    assert len(ours) == 32 and set(ours["direction"]) == {"stereo", "antistereo"}
    by_pair = {(r["sent_more"], r["sent_less"]): r for r in ours.to_dict(orient="records")}

    # trained = the evaluated checkpoint, baseline = its reference (the base model)
    for family, model_dir, prefix in (("trained", ck.full, "policy"), ("baseline", ck.base, "reference")):
        result = _lm_eval_crows(_hflm(model_dir), csv_file)
        samples = result["samples"]["crows_pairs_english"]
        assert len(samples) == len(ours)
        for sample in samples:
            row = by_pair[(sample["doc"]["sent_more"], sample["doc"]["sent_less"])]
            (ll_more, _), (ll_less, _) = sample["filtered_resps"]
            assert row[f"{prefix}_more_logp"] == pytest.approx(ll_more, abs=1e-6), family
            assert row[f"{prefix}_less_logp"] == pytest.approx(ll_less, abs=1e-6), family
        task = result["results"]["crows_pairs_english"]
        assert metrics[f"{family}_stereotype_score/overall"] == pytest.approx(
            task["pct_stereotype,none"], abs=1e-12
        )
        assert metrics[f"{family}_likelihood_diff/overall"] == pytest.approx(
            task["likelihood_diff,none"], rel=1e-9
        )


def test_a_tokenizer_with_bos_is_scored_after_bos_as_lm_eval_does(ck, tmp_path):
    """The same model with a bos token in its tokenizer: both score after bos (not eos), and a sentence
    that already starts with bos is not given a second one."""
    from lm_eval.api.instance import Instance
    from transformers import AutoTokenizer

    from edu_bias_pipeline.pipelines.evaluation import crows_stereotype as crows
    from edu_bias_pipeline.scoring import encode_texts, load_scoring_models

    model_dir = tmp_path / "with_bos"
    shutil.copytree(ck.full, model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.bos_token = "<|im_start|>"
    tokenizer.save_pretrained(model_dir)
    bos = AutoTokenizer.from_pretrained(model_dir).bos_token_id
    assert bos is not None and bos != tokenizer.eos_token_id

    frame = pd.read_csv(CROWS_CSV).head(6)
    frame.loc[0, "sent_more"] = "<|im_start|>" + frame.loc[0, "sent_more"]
    models = load_scoring_models(model_dir, dtype="float64")
    scores, _ = crows.score_crows_pairs(frame, {"crows_pairs": {"sample_per_bias_type": None}}, models)
    [first] = encode_texts(models.tokenizer, [frame.loc[0, "sent_more"]])
    [second] = encode_texts(models.tokenizer, [frame.loc[1, "sent_more"]])
    assert first.input_ids[0] == bos and first.input_ids[1] != bos and first.n_prompt == 1
    assert second.input_ids[0] == bos and second.n_prompt == 1

    lm = _hflm(model_dir)
    assert lm.prefix_token_id == bos
    texts = [t for pair in zip(frame["sent_more"], frame["sent_less"], strict=True) for t in pair]
    requests = [Instance("loglikelihood", {}, ("", text), i) for i, text in enumerate(texts)]
    theirs = [ll for ll, _ in lm.loglikelihood(requests)]
    ours = [
        v for pair in zip(scores["policy_more_logp"], scores["policy_less_logp"], strict=True) for v in pair
    ]
    assert ours == pytest.approx(theirs, abs=1e-6)
