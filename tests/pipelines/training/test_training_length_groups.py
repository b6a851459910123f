"""Length-grouped training batches: each optimizer step's batches, over all ranks, come from one group of
similar lengths."""

from __future__ import annotations

import random

import pytest

from edu_bias_pipeline.dpo.data import completion_lengths


def test_completion_lengths_feed_the_length_grouped_sampler():
    from datasets import Dataset

    ds = Dataset.from_dict(
        {"prompt_ids": [[1, 2], [1]], "chosen_ids": [[3], [4, 5, 6]], "rejected_ids": [[7, 8, 9], [1]]}
    )
    assert completion_lengths(ds) == [5, 4]
    assert completion_lengths(ds.select([1])) == [4]


@pytest.mark.parametrize("world, accum", [(2, 1), (2, 2), (3, 1)])
def test_length_groups_hold_whole_steps_of_all_ranks(world, accum):
    """Every rank's batches of one optimizer step come from one length group, in its descending order.

    The sampler is the trainer's own choice for these arguments; the ranks' batches are dealt by accelerate's
    BatchSamplerShard, as the Trainer's dataloader does. Grouped by one rank's share (the former size), each
    of these cases had groups ending inside a step.
    """
    from types import SimpleNamespace

    from accelerate.data_loader import BatchSamplerShard
    from datasets import Dataset
    from torch.utils.data import BatchSampler

    from edu_bias_pipeline.dpo.trainer import EduBiasDPOTrainer

    rng = random.Random(0)
    lengths = [rng.randint(20, 300) for _ in range(84)]
    batch, eval_batch = 3, 2
    # only these arguments are read to choose a sampler: no model is needed
    trainer = object.__new__(EduBiasDPOTrainer)
    trainer.args = SimpleNamespace(
        train_sampling_strategy="group_by_length",
        train_batch_size=batch,
        gradient_accumulation_steps=accum,
        eval_batch_size=eval_batch,
        world_size=world,
        seed=0,
    )
    trainer.train_dataset = Dataset.from_dict(
        {
            "prompt_ids": [[1] * (n - 1) for n in lengths],
            "chosen_ids": [[2]] * len(lengths),
            "rejected_ids": [[3]] * len(lengths),
        }
    )
    order = list(trainer._get_train_sampler())
    assert sorted(order) == list(range(len(lengths)))
    shards = [
        list(BatchSamplerShard(BatchSampler(order, batch, drop_last=False), world, rank))
        for rank in range(world)
    ]
    per_step = batch * accum * world
    steps = len(order) // per_step
    assert steps >= 4
    for step in range(steps):
        dealt = {i for shard in shards for b in shard[step * accum : (step + 1) * accum] for i in b}
        group = order[step * per_step : (step + 1) * per_step]
        assert dealt == set(group)
        # a group's first pair may be the one LengthGroupedSampler swapped for the longest of all
        tail = [lengths[i] for i in group[1:]]
        assert tail == sorted(tail, reverse=True), f"step {step} spans two length groups"
    # evaluation batches are dealt the same way: its groups are one evaluation step of all ranks
    assert trainer._get_eval_sampler(trainer.train_dataset).batch_size == eval_batch * world
