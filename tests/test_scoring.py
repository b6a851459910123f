"""scoring.py against an independent float64 recomputation, and its checkpoint / metadata handling."""

from __future__ import annotations

import json
import math
import shutil
import warnings

import pytest
import tiny_checkpoints as tc

from edu_bias_pipeline import scoring
from edu_bias_pipeline.pairs import DEFAULT_INSTRUCTION, render_prompt


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    return tc.get_checkpoints(tmp_path_factory)


@pytest.fixture(scope="module")
def rows():
    return tc.pair_rows()


def _score(models, rows, batch_size=3, **kwargs):
    return scoring.score_pairs(
        models,
        [r["prompt"] for r in rows],
        [r["chosen"] for r in rows],
        [r["rejected"] for r in rows],
        batch_size=batch_size,
        **kwargs,
    )


def test_encoding_follows_the_tokenisation_contract(ck):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ck.full)
    statement = "女生也可以学好物理。"
    [enc] = scoring.encode_completions(tok, [None], [statement], DEFAULT_INSTRUCTION)
    prompt_ids = tok(render_prompt(tok, None, DEFAULT_INSTRUCTION), add_special_tokens=False)["input_ids"]
    completion = tok(statement, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert enc.input_ids == prompt_ids + completion
    assert enc.n_prompt == len(prompt_ids) and enc.n_completion == len(completion) > 2
    assert not enc.truncated

    [cut] = scoring.encode_completions(tok, [None], [tc.LONG_STATEMENT], DEFAULT_INSTRUCTION, max_length=40)
    assert cut.truncated and len(cut.input_ids) == 40 and cut.n_prompt == len(prompt_ids)


@pytest.mark.parametrize("which", ["full", "lora"])
def test_pair_scores_match_float64_plain_forward(ck, rows, which):
    """Batched, padded, length-sorted scoring == one unpadded float64 pass per sequence (1e-5)."""
    models = scoring.load_scoring_models(getattr(ck, which), dtype="float64")
    assert models.metadata.is_adapter is (which == "lora")
    got = _score(models, rows, batch_size=3)
    policy, reference = tc.float64_models(ck, which)
    tok = models.tokenizer
    for i, row in enumerate(rows):
        for side in ("chosen", "rejected"):
            want_pol = tc.plain_logp_float64(policy, tok, row["prompt"], row[side])
            want_ref = tc.plain_logp_float64(reference, tok, row["prompt"], row[side])
            assert getattr(got, f"policy_{side}")[i] == pytest.approx(want_pol, abs=1e-5)
            assert getattr(got, f"reference_{side}")[i] == pytest.approx(want_ref, abs=1e-5)
        # The perturbation / adapter really changed the model: the test could fail on a reference mix-up.
        assert abs(got.policy_chosen[i] - got.reference_chosen[i]) > 1e-3
    assert got.truncated[-1] is True and not any(got.truncated[:-1])


def test_batch_size_and_order_do_not_change_scores(ck, rows):
    models = scoring.load_scoring_models(ck.full, dtype="float64")
    one = _score(models, rows, batch_size=1)
    many = _score(models, list(reversed(rows)), batch_size=8)
    n = len(rows)
    for i in range(n):
        assert one.policy_chosen[i] == pytest.approx(many.policy_chosen[n - 1 - i], abs=1e-9)
        assert one.reference_rejected[i] == pytest.approx(many.reference_rejected[n - 1 - i], abs=1e-9)
        assert one.chosen_tokens[i] == many.chosen_tokens[n - 1 - i]


def test_default_dtype_on_cpu_is_float32_and_close(ck, rows):
    exact = _score(scoring.load_scoring_models(ck.full, dtype="float64", device="cpu"), rows)
    models = scoring.load_scoring_models(ck.full, device="cpu")
    assert str(models.dtype) == "torch.float32"
    fast = _score(models, rows)
    for a, b in zip(exact.policy_rejected, fast.policy_rejected, strict=True):
        assert a == pytest.approx(b, abs=1e-3)


def test_statement_scores_and_generation(ck):
    models = scoring.load_scoring_models(ck.lora, dtype="float64")
    [s] = scoring.score_statements(models, ["女生学不好物理。"])
    assert s.reward == pytest.approx(tc.BETA * (s.policy_logp - s.reference_logp))
    assert s.bias_score == -s.reward and s.n_tokens > 1
    pair = _score(models, [{"prompt": None, "chosen": "女生学不好物理。", "rejected": "学生"}])
    assert s.policy_logp == pytest.approx(pair.policy_chosen[0], abs=1e-9)
    answer = scoring.generate_answer(models, "女生学不好物理。", max_new_tokens=5)
    assert isinstance(answer, str)


def test_checkpoint_step_reads_its_runs_final_metadata(ck):
    meta = scoring.resolve_metadata(ck.full_step)
    assert meta.beta == tc.BETA and meta.base_model == str(ck.base) and not meta.is_adapter
    assert "final" in meta.source
    overridden = scoring.resolve_metadata(ck.full_step, {"beta": 0.5, "instruction": None})
    assert overridden.beta == 0.5 and overridden.instruction == DEFAULT_INSTRUCTION
    assert scoring.resolve_metadata(ck.lora).is_adapter


def test_checkpoint_without_metadata_needs_a_reference(ck, tmp_path):
    bare = tmp_path / "elsewhere" / "model"
    shutil.copytree(ck.full_step, bare)
    with pytest.raises(scoring.CheckpointError, match="reference_model"):
        scoring.load_scoring_models(bare)
    models = scoring.load_scoring_models(bare, reference_model=str(ck.base), beta=0.3)
    assert models.metadata.beta == 0.3 and models.metadata.source == "parameters"


def test_a_reference_path_that_is_not_there_is_named_not_sent_to_the_hub(ck, tmp_path):
    missing = "data/06_models/no_such_base"  # a path: three parts, so never a hub repo id
    with pytest.raises(scoring.CheckpointError, match="is not a directory here") as refused:
        scoring.load_scoring_models(ck.full, reference_model=missing)
    assert repr(missing) in str(refused.value) and "--reference-model" in str(refused.value)


def test_model_as_its_own_reference_is_loaded_once(ck):
    models = scoring.load_scoring_models(ck.base, reference_model=str(ck.base), dtype="float64")
    assert models.reference is models.policy
    [s] = scoring.score_statements(models, ["女生学不好物理。"])
    assert s.reward == 0.0


def test_missing_or_unreadable_checkpoint_is_a_clear_error(ck, tmp_path):
    with pytest.raises(scoring.CheckpointError, match="does not exist"):
        scoring.load_scoring_models(tmp_path / "nope")
    broken = tmp_path / "broken"
    shutil.copytree(ck.full, broken)
    (broken / scoring.METADATA_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(scoring.CheckpointError, match="cannot read training metadata"):
        scoring.load_scoring_models(broken)
    (broken / scoring.METADATA_FILE).write_text(json.dumps({"base_model": str(tmp_path / "gone")}))
    with pytest.raises(scoring.CheckpointError, match="reference model"):
        scoring.load_scoring_models(broken)


def test_a_device_this_build_cannot_use_is_refused_before_loading(ck):
    import torch

    assert scoring.resolve_device("cpu") == torch.device("cpu")
    assert scoring.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(scoring.DeviceError, match=r"'gpu' is not a device name torch knows; use auto, cpu"):
        scoring.resolve_device("gpu")
    if not torch.cuda.is_available():
        for name in ("cuda", "cuda:1"):
            expected = rf"device '{name}' asked for, but .*use device=cpu"
            with pytest.raises(scoring.DeviceError, match=expected):
                scoring.resolve_device(name)
        # Nothing is read first: even a missing checkpoint gets the device error, as one line.
        with pytest.raises(scoring.DeviceError) as err:
            scoring.load_scoring_models(ck.root / "no-such-model", device="cuda")
        assert "\n" not in str(err.value)
    else:
        count = torch.cuda.device_count()
        with pytest.raises(scoring.DeviceError, match=rf"only {count} CUDA GPU"):
            scoring.resolve_device(f"cuda:{count}")


def test_wilson_interval_edges_and_symmetry():
    z2 = 1.959963984540054**2
    assert scoring.wilson_interval(0, 10) == (0.0, pytest.approx(z2 / (10 + z2)))
    assert scoring.wilson_interval(10, 10) == (pytest.approx(10 / (10 + z2)), 1.0)
    low, high = scoring.wilson_interval(3, 10)
    low2, high2 = scoring.wilson_interval(7, 10)
    assert low == pytest.approx(1 - high2) and high == pytest.approx(1 - low2)
    assert low < 0.3 < high
    assert all(math.isnan(v) for v in scoring.wilson_interval(0, 0))


@pytest.mark.parametrize("which", ["full", "lora"])
def test_scoring_routes_agree(ck, rows, which, monkeypatch):
    """The shared-prompt cache route and the plain padded full-logits route agree (float64)."""
    models = scoring.load_scoring_models(getattr(ck, which), dtype="float64")
    calls = []
    shared = scoring._shared_prompt
    monkeypatch.setattr(scoring, "_shared_prompt", lambda b: calls.append(shared(b)) or calls[-1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cached = _score(models, rows, batch_size=4)
    # Pairs are grouped by prompt (one pair here has its own), so the cache route serves every batch.
    assert calls and all(c is not None for c in calls)
    # the cache goes by the keyword the installed transformers takes (`past_key_values` ends in 5.40)
    assert not [w for w in caught if "past_key_values" in str(w.message)]

    # Without a common prompt (the fallback for degenerate batches) and for other architectures alike,
    # the plain padded pass with full logits serves.
    monkeypatch.setattr(scoring, "_shared_prompt", lambda b: None)
    padded = _score(models, rows, batch_size=4)
    monkeypatch.setattr(scoring, "_HIDDEN_STATE_ARCHS", frozenset())
    full_logits = _score(models, rows, batch_size=4)
    for other in (padded, full_logits):
        for field in ("policy_chosen", "policy_rejected", "reference_chosen", "reference_rejected"):
            assert getattr(cached, field) == pytest.approx(getattr(other, field), abs=1e-9)
        assert cached.chosen_tokens == other.chosen_tokens


def test_cached_reference_log_probs_are_reused_without_running_the_reference(ck, rows, tmp_path):
    checkpoint = tc.with_recorded_reference(ck.full, tmp_path / "final")
    cache = tmp_path / "reference_cache"
    models = scoring.load_scoring_models(checkpoint, dtype="float64")

    def score():
        return _score(models, rows, reference_cache_dir=cache)

    first = score()
    [entry] = cache.glob("eval-ref-*.json")
    assert first.reference_cache == f"written {entry}"

    def refuse(*args):
        raise AssertionError("the reference model ran although its log-probs were cached")

    # the second run must not run any part of the reference model
    hooks = [m.register_forward_pre_hook(refuse) for m in models.reference.modules()]
    second = score()
    assert second.reference_cache == f"reused {entry}"
    assert second.reference_chosen == first.reference_chosen
    assert second.reference_rejected == first.reference_rejected
    assert second.policy_chosen == first.policy_chosen

    # other pairs, or another batch size (padding), get their own entry; it is computed, not reused
    for hook in hooks:
        hook.remove()
    other = _score(models, rows[:3], reference_cache_dir=cache)
    assert other.reference_cache.startswith("written") and len(list(cache.glob("eval-ref-*.json"))) == 2
    smaller = _score(models, rows, batch_size=2, reference_cache_dir=cache)
    assert smaller.reference_cache.startswith("written") and len(list(cache.glob("eval-ref-*.json"))) == 3


def test_reference_log_probs_are_not_cached_without_a_recorded_reference_hash(ck, rows, tmp_path):
    # no hash in the metadata, or a reference given by hand (the recorded hash describes another model)
    overridden = tc.with_recorded_reference(ck.full, tmp_path / "final")
    for models in (
        scoring.load_scoring_models(ck.full, dtype="float64"),
        scoring.load_scoring_models(overridden, reference_model=str(ck.base), dtype="float64"),
    ):
        assert models.metadata.reference_sha256 is None
        scores = _score(models, rows, reference_cache_dir=tmp_path / "cache")
        assert scores.reference_cache is None
    assert not (tmp_path / "cache").exists()


def test_trust_remote_code_is_logged_naming_the_model(ck, caplog):
    with caplog.at_level("WARNING", logger="edu_bias_pipeline.scoring"):
        scoring.load_scoring_models(ck.full, device="cpu")
    assert "trust_remote_code is on" not in caplog.text
    with caplog.at_level("WARNING", logger="edu_bias_pipeline.scoring"):
        scoring.load_scoring_models(ck.full, device="cpu", trust_remote_code=True)
    assert "trust_remote_code is on" in caplog.text and str(ck.full) in caplog.text
