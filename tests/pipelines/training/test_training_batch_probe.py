"""The batch-size probe (`probe_batch_size`): decided before any weight moves, effective batch kept.

Real TRL DPOTrainer on the tiny model, on CPU. Only the memory meter is replaced (a CPU has no out-of-memory
to hit): it charges bytes per padded token of the batch the real collator just built, so the probe's
halving, its out-of-memory path and its bookkeeping run for real.
"""

from __future__ import annotations

import random

import pytest
import torch
from conftest import write_jsonl
from training_fixtures import sample_rows

from edu_bias_pipeline.dpo.batch_size import fit_batch_size
from edu_bias_pipeline.dpo.data import build_dataset, completion_lengths, load_rows
from edu_bias_pipeline.dpo.model import skip_adapter_input_casts
from edu_bias_pipeline.dpo.trainer import EduBiasDPOTrainer
from edu_bias_pipeline.pairs import DEFAULT_INSTRUCTION

BYTES_PER_TOKEN = 1000


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from edu_bias_pipeline.dpo.tiny_model import build_tiny_model

    rows = sample_rows()
    random.Random(0).shuffle(rows)
    root = tmp_path_factory.mktemp("batch_probe")
    write_jsonl(root / "train.jsonl", rows[:96])
    build_tiny_model([r["chosen"] for r in rows] + [r["rejected"] for r in rows], root / "model")
    return root


def _trainer(root, tmp_path, batch=16, accum=1, lora_bf16=False):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig

    tokenizer = AutoTokenizer.from_pretrained(root / "model")
    model = AutoModelForCausalLM.from_pretrained(root / "model", dtype=torch.bfloat16 if lora_bf16 else None)
    args = DPOConfig(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accum,
        max_steps=2,
        use_cpu=True,
        bf16=lora_bf16,
        report_to="none",
        save_strategy="no",
        precompute_ref_log_probs=True,
        learning_rate=1e-2,
        disable_tqdm=True,
    )
    dataset = build_dataset(load_rows(root / "train.jsonl"), tokenizer, DEFAULT_INSTRUCTION)
    peft_config = None
    if lora_bf16:
        from peft import LoraConfig

        peft_config = LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = EduBiasDPOTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config
    )
    if lora_bf16:
        assert skip_adapter_input_casts(trainer.model) > 0  # as the stage does for LoRA in bf16
    seen = []
    collate = trainer.data_collator

    def recording_collator(examples):
        batch = collate(examples)
        seen.append(batch["input_ids"].numel())
        return batch

    trainer.data_collator = recording_collator
    return trainer, seen


def test_probe_halves_until_the_longest_batch_fits_and_moves_no_weight(tiny, tmp_path):
    trainer, seen = _trainer(tiny, tmp_path, batch=16, accum=1)
    before = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    lengths = completion_lengths(trainer.train_dataset)
    moments = 2 * sum(p.numel() * p.element_size() for p in trainer.model.parameters())
    longest = max(lengths)
    # room for about 5 of the longest pairs (2 sequences each): 16 and 8 do not fit, 4 does
    budget = moments + 5 * 2 * (longest + 1) * BYTES_PER_TOKEN

    kept = fit_batch_size(trainer, lengths, budget, peak_bytes=lambda: seen[-1] * BYTES_PER_TOKEN)

    assert kept == 4
    assert len(seen) == 3 and seen[0] > seen[1] > seen[2]  # probed 16, 8, 4 pairs
    assert trainer.args.per_device_train_batch_size == 4
    assert trainer.args.gradient_accumulation_steps == 4  # effective batch still 16
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert all(p.grad is None for p in trainer.model.parameters())
    assert not trainer._metrics["train"]  # the probe logs nothing as a training step
    assert trainer._total_train_tokens == 0  # nor counts its tokens as trained on

    seen.clear()
    trainer.train()
    assert trainer.state.train_batch_size == 4
    assert max(seen) <= 2 * 4 * (longest + 1)


def test_probe_treats_out_of_memory_as_too_big_and_keeps_a_size_that_fits(tiny, tmp_path):
    trainer, seen = _trainer(tiny, tmp_path, batch=8, accum=2)
    lengths = completion_lengths(trainer.train_dataset)
    limit = 2 * 3 * (max(lengths) + 1)

    def meter():
        if seen[-1] > limit:  # what the CUDA allocator raises when a batch does not fit
            raise torch.OutOfMemoryError("CUDA out of memory (probe test)")
        return 0

    assert fit_batch_size(trainer, lengths, 2**40, peak_bytes=meter) == 2
    assert (trainer.args.per_device_train_batch_size, trainer.args.gradient_accumulation_steps) == (2, 8)


def test_probe_keeps_the_configured_batch_when_it_fits(tiny, tmp_path):
    trainer, seen = _trainer(tiny, tmp_path, batch=8, accum=3)
    assert (
        fit_batch_size(trainer, completion_lengths(trainer.train_dataset), 2**40, peak_bytes=lambda: 0) == 8
    )
    assert len(seen) == 1
    assert (trainer.args.per_device_train_batch_size, trainer.args.gradient_accumulation_steps) == (8, 3)


def test_probe_gives_up_with_out_of_memory_when_one_pair_does_not_fit(tiny, tmp_path):
    trainer, _ = _trainer(tiny, tmp_path, batch=4)
    with pytest.raises(torch.OutOfMemoryError, match="does not fit"):
        fit_batch_size(trainer, completion_lengths(trainer.train_dataset), 1, peak_bytes=lambda: 0)


def test_probe_runs_under_the_training_autocast(tiny, tmp_path):
    """bf16 base, float32 LoRA weights, adapter inputs left in bf16 (the stage's LoRA setting): only the
    mixed-precision autocast of the training step makes those matmuls legal, so the probe needs it too."""
    trainer, seen = _trainer(tiny, tmp_path, batch=8, lora_bf16=True)
    lengths = completion_lengths(trainer.train_dataset)
    assert fit_batch_size(trainer, lengths, 2**40, peak_bytes=lambda: 0) == 8
    assert len(seen) == 1
    adapters = [p for n, p in trainer.model.named_parameters() if "lora_" in n]
    assert adapters and all(p.dtype == torch.float32 and p.grad is None for p in adapters)
