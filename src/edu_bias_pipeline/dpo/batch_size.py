"""The largest per-device batch that fits, decided before the first optimizer step (`probe_batch_size`).

transformers' own `auto_find_batch_size` retries the whole training loop after an out-of-memory error but
keeps the weights and optimizer state of the failed attempt, so the retry trains on top of a partly trained
model whose precomputed reference log-probs no longer describe it. Seen on an H100 (docs/performance.md):
batch 128 ran out of memory some steps in, and the retry at 103 started at a loss of 0.24 instead of ln 2.
Here one forward and backward on the longest pairs of the train set (the worst padded batch any sampler can
draw) decides the size while no weight has moved; gradient accumulation grows to keep the effective batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

logger = logging.getLogger("edu_bias_pipeline.dpo")

# Share of the card's memory a step may plan to use: the allocator's fragmentation and the optimizer's
# temporary buffers need the rest.
HEADROOM = 0.9


def cuda_peak_bytes() -> int:
    import torch

    return torch.cuda.max_memory_allocated()


def fit_batch_size(
    trainer,
    lengths: Sequence[int],
    budget_bytes: int,
    peak_bytes: Callable[[], int] = cuda_peak_bytes,
) -> int:
    """Halve `per_device_train_batch_size` until a worst-case step fits `budget_bytes`; returns the size kept.

    A step fits when the probe's peak memory plus the AdamW moments of the trainable weights (allocated at
    the first optimizer step, two per weight) stays within the budget. Gradient accumulation grows by the
    same factor, so the effective batch (and the optimisation) is unchanged. Every rank must call this:
    ranks keep the smallest size any of them found.
    """
    import torch

    args = trainer.args
    start = args.per_device_train_batch_size
    model = trainer.model
    longest = sorted(range(len(lengths)), key=lengths.__getitem__, reverse=True)
    dataset = trainer._remove_unused_columns(trainer.train_dataset, description="batch-size probe")
    moments = 2 * sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    if args.gradient_checkpointing:
        # the trainer turns it on at train(); the probe must see the same activation memory
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs)

    batch = min(start, len(longest))
    while True:
        needed = _probe(trainer, model, dataset, longest[:batch], peak_bytes)
        if needed is not None and needed + moments <= budget_bytes:
            break
        logger.info(
            "batch-size probe: %d pairs of the longest length %s; trying %d",
            batch,
            "ran out of memory" if needed is None else f"need {(needed + moments) / 2**30:.1f} GiB",
            batch // 2,
        )
        if batch == 1:
            raise torch.OutOfMemoryError(
                f"one pair of {max(lengths)} tokens does not fit in {budget_bytes / 2**30:.1f} GiB"
            )
        batch //= 2

    if trainer.accelerator.num_processes > 1:
        agreed = torch.tensor([batch], device=trainer.accelerator.device)
        torch.distributed.all_reduce(agreed, op=torch.distributed.ReduceOp.MIN)
        batch = int(agreed.item())
    if batch < start:
        factor = start // batch
        args.per_device_train_batch_size = batch
        args.gradient_accumulation_steps *= factor
        trainer._train_batch_size = args.train_batch_size
        logger.info(
            "batch-size probe: per-device batch %d x accumulation %d (effective batch unchanged)",
            batch,
            args.gradient_accumulation_steps,
        )
    else:
        logger.info("batch-size probe: per-device batch %d fits", batch)
    return batch


def _probe(trainer, model, dataset, indices: list[int], peak_bytes: Callable[[], int]) -> int | None:
    """Peak bytes of one forward+backward on these rows, or None on out-of-memory; leaves no gradients."""
    import torch

    cuda = trainer.args.device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    was_training = model.training
    try:
        inputs = trainer._prepare_inputs(trainer.data_collator([dataset[i] for i in indices]))
        model.train()
        # the mixed-precision autocast the prepared model runs under in training, which the bare model lacks
        with trainer.accelerator.autocast(), trainer.compute_loss_context_manager():
            loss = trainer.compute_loss(model, inputs)
        loss.backward()
        return peak_bytes()
    except torch.OutOfMemoryError:
        return None
    finally:
        inputs = loss = None
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        # the probe is not a training step: neither its metrics nor its tokens count
        trainer._metrics["train"].clear()
        trainer._total_train_tokens = 0
        if cuda:
            torch.cuda.empty_cache()
