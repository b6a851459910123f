"""`deepspeed.foreach_grad_norm` against real DeepSpeed ZeRO-2: the same norm as DeepSpeed's own.

Two gloo ranks on CPU (`torchrun --standalone`, this file as the script): with one rank the norm's all_reduce
over the data-parallel group would do nothing, and no parameter would straddle two partitions. The ranks run
in a process of their own so that no process group outlives them in the pytest process. A float32 norm would
agree with DeepSpeed's float64 one within these tolerances as well, so the ranks also record the precision the
multi-tensor norm was asked for.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edu_bias_pipeline.dpo import zero_grad_norm

RANKS = 2
MICRO_BATCH = 3
# name: (precision, zero_optimization settings beyond the stage's). fp32: DeepSpeed's gradients equal a
# plain torch backward's; bf16: the gpu profile's precision on a GPU; parameter_alignment pads between
# parameters, so padding sits among the gradients DeepSpeed hands the norm, not only after them.
SETUPS = {"fp32": ("fp32", {}), "bf16": ("bf16", {}), "bf16_aligned": ("bf16", {"parameter_alignment": True})}


def test_install_refuses_what_is_not_a_zero_1_2_optimizer():
    """The callback hands over whatever optimizer the Trainer has: None, or a torch one without DeepSpeed."""
    import torch

    assert zero_grad_norm.install(None) is False
    assert zero_grad_norm.install(torch.optim.AdamW(torch.nn.Linear(2, 2).parameters())) is False


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> list[dict]:
    """What each rank measured (see `_rank_main`), run once for the tests below."""
    out = tmp_path_factory.mktemp("zero_grad_norm")
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(RANKS)]
        + [__file__, str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "DS_ACCELERATOR": "cpu"},
        start_new_session=True,  # a timeout then stops the ranks too, not only torchrun
    )
    try:
        _, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 0, stderr[-4000:]
    return [json.loads((out / f"rank{rank}.json").read_text(encoding="utf-8")) for rank in range(RANKS)]


def test_install_takes_zero2_and_leaves_zero3_and_offload_to_deepspeed(two_ranks):
    """Given what the callback is given (accelerate's wrapper). Offload takes its norm elsewhere and ZeRO-3 is
    another optimizer class: replacing the method there would change nothing or break the step. Another
    DeepSpeed release than the one checked keeps its own method (`patches`)."""
    for rank in two_ranks:
        assert all(rank[setup]["installed"] and rank[setup]["replaced"] for setup in SETUPS)
        assert not any(rank[setup]["installed_outside_range"] for setup in SETUPS)
        assert all(rank[setup]["kept_outside_range"] for setup in SETUPS)
        assert rank["installed_zero3"] is False
        assert rank["installed_offload"] is False


def test_install_takes_the_bare_zero_optimizer_too(two_ranks):
    """The engine's own optimizer as well as accelerate's wrapper: the ZeRO optimizer has an `.optimizer` of
    its own (the torch one inside it), so unwrapping it as the wrapper is unwrapped would refuse it."""
    for rank in two_ranks:
        assert all(rank[setup]["installed_bare"] for setup in SETUPS)


@pytest.mark.parametrize("setup", SETUPS)
def test_the_norm_of_each_partition_group_equals_deepspeeds_own(two_ranks, setup):
    """Both methods on each rank's partition of each parameter group (tensors split between the ranks): the
    norm over both ranks, equal up to rounding, taken in DeepSpeed's norm precision."""
    for rank in two_ranks:
        assert rank[setup]["foreach_dtypes"] == ["torch.float64"]
        assert rank[setup]["replaced"] and len(rank[setup]["groups"]) == 2
        for group in rank[setup]["groups"]:
            assert group["foreach"] == pytest.approx(group["deepspeed"], rel=1e-5)
    for groups in zip(*(rank[setup]["groups"] for rank in two_ranks), strict=True):
        # each rank holds a real share of the norm, so a rank's own norm (no all_reduce) would be told apart
        assert all(0 < g["partition_only"] < 0.99 * g["foreach"] for g in groups)
        assert math.hypot(*(g["partition_only"] for g in groups)) == pytest.approx(
            groups[0]["foreach"], rel=1e-5
        )
    if setup == "bf16_aligned":  # the case the padding filter is for
        assert any(g["padding_inside"] for rank in two_ranks for g in rank[setup]["groups"])


def test_the_norm_is_that_of_the_gradients_averaged_over_the_ranks(two_ranks):
    """fp32: the installed norm, and the one the optimizer step clipped with, equal the norm of the gradients
    of the ranks' mean loss, taken by plain torch."""
    for rank in two_ranks:
        measured = rank["fp32"]
        both_groups = math.hypot(*(g["foreach"] for g in measured["groups"]))
        assert both_groups == pytest.approx(measured["reference"], rel=1e-5)
        assert measured["step"] == pytest.approx(measured["reference"], rel=1e-5)


@pytest.mark.parametrize("setup", SETUPS)
def test_the_optimizer_step_takes_the_same_norm_as_with_deepspeeds_own(two_ranks, setup):
    """The step of an engine with the norm installed and one without, on the same gradients: bf16 gradients
    have no plain torch reference, DeepSpeed's own norm is theirs."""
    for rank in two_ranks:
        assert rank[setup]["step"] == pytest.approx(rank[setup]["step_deepspeed"], rel=1e-5)
        assert rank[setup]["step"] > 0


# --- the ranks (run by torchrun with this file as the script) ---------------------------------------------


def _model():
    import torch

    class Tiny(torch.nn.Module):
        # sizes chosen so that both parameter groups have a tensor split between the two ranks' partitions,
        # and, with parameter_alignment in bf16, `mid.bias` (12 elements) is padded
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(40, 8)
            self.up = torch.nn.Linear(8, 24)
            self.mid = torch.nn.Linear(24, 12)
            self.out = torch.nn.Linear(12, 3)

        def forward(self, ids):
            h = self.embed(ids).sum(1)
            return self.out(torch.tanh(self.mid(torch.relu(self.up(h)))))

    torch.manual_seed(0)
    return Tiny()


def _batch(rank: int):
    import torch

    g = torch.Generator().manual_seed(100 + rank)
    return torch.randint(0, 40, (MICRO_BATCH, 5), generator=g), torch.randn(MICRO_BATCH, 3, generator=g)


def _param_groups(model):
    # as the Trainer groups them: weight decay on the matrices only
    decay = [p for n, p in model.named_parameters() if n.endswith("weight") and not n.startswith("embed")]
    rest = [p for p in model.parameters() if all(p is not q for q in decay)]
    return [{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}]


def _ds_config(precision: str, zero: dict, **deepspeed) -> dict:
    """The stage's generated config (gpu profile, ZeRO-2 unless asked otherwise) with the Trainer's `auto`s
    filled in as transformers fills them."""
    from edu_bias_pipeline import settings
    from edu_bias_pipeline.dpo.config import resolve_training_config
    from edu_bias_pipeline.dpo.launch import deepspeed_config

    # `kedro run --env gpu --params ...`, loaded as a session loads it (the ranks run this file as a script,
    # without the tests' conftest)
    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=str(Path(__file__).resolve().parents[2] / "conf"),
        env="gpu",
        runtime_params={"training": {"mode": "deepspeed", "deepspeed": {"zero_stage": 2, **deepspeed}}},
        **settings.CONFIG_LOADER_ARGS,
    )
    params = loader["parameters"]["training"]
    config = deepspeed_config(resolve_training_config(params, {}, check_model=False), precision)
    config.update(
        train_batch_size=MICRO_BATCH * RANKS,
        train_micro_batch_size_per_gpu=MICRO_BATCH,
        gradient_accumulation_steps=1,
        gradient_clipping=1.0,
    )
    config["bf16"]["enabled"] = precision == "bf16"
    config["fp16"]["enabled"] = False
    # ZeRO-3's `auto` sizes are the Trainer's to fill; DeepSpeed's defaults do for this model
    config["zero_optimization"] = {k: v for k, v in config["zero_optimization"].items() if v != "auto"} | zero
    return config


def _engine(precision: str, zero: dict | None = None, **deepspeed):
    import deepspeed as ds
    import torch

    model = _model()
    optimizer = torch.optim.AdamW(_param_groups(model), lr=1e-2)
    config = _ds_config(precision, zero or {}, **deepspeed)
    engine, *_ = ds.initialize(model=model, optimizer=optimizer, config=config)
    return engine


def _as_the_trainer_hands_it(engine):
    """The optimizer a TrainerCallback receives under DeepSpeed: accelerate's wrapper of the engine's."""
    from accelerate.utils import DeepSpeedOptimizerWrapper

    return DeepSpeedOptimizerWrapper(engine.optimizer)


def _backward(engine, rank: int):
    import torch

    ids, target = _batch(rank)
    engine.backward(torch.nn.functional.mse_loss(engine(ids).float(), target))


def _reference_norm() -> float:
    """The norm of the gradients DeepSpeed averages over the ranks, by a plain backward of the mean loss."""
    import torch

    model = _model()
    losses = [torch.nn.functional.mse_loss(model(ids), target) for ids, target in map(_batch, range(RANKS))]
    (sum(losses) / RANKS).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()]).double().norm().item()


def _partition_group(zero, grads, params) -> dict:
    from deepspeed.runtime.zero.stage_1_and_2 import DeepSpeedZeroOptimizer

    padding = [getattr(g, "_zero_padding", False) for g in grads]
    own = [g for g, pad in zip(grads, padding, strict=True) if not pad][: len(params)]
    return {
        "deepspeed": DeepSpeedZeroOptimizer.get_grad_norm_direct(zero, grads, params).item(),
        "foreach": zero.get_grad_norm_direct(grads, params).item(),
        "partition_only": math.sqrt(sum(g.double().square().sum().item() for g in own)),
        "padding_inside": True in padding and padding.index(True) < len(padding) - 1,
    }


@contextlib.contextmanager
def _recording_foreach_norm_dtypes():
    import torch

    dtypes: list[str] = []
    foreach_norm = torch._foreach_norm

    def recording(tensors, *args, dtype=None, **kwargs):
        dtypes.append(str(dtype))
        return foreach_norm(tensors, *args, dtype=dtype, **kwargs)

    torch._foreach_norm = recording
    try:
        yield dtypes
    finally:
        torch._foreach_norm = foreach_norm


def _measure(precision: str, zero_settings: dict, rank: int) -> dict:
    from deepspeed.runtime.zero.stage_1_and_2 import DeepSpeedZeroOptimizer

    # the same step twice: DeepSpeed's norm in the step, then the installed one
    plain = _engine(precision, zero_settings)
    _backward(plain, rank)
    plain.step()

    engine = _engine(precision, zero_settings)
    zero = engine.optimizer
    # another DeepSpeed release (the guard is given its version): DeepSpeed's own method stays
    outside_range = zero_grad_norm.install(zero, installed={"deepspeed": "0.19.9"})
    kept_outside_range = zero.get_grad_norm_direct.__func__ is DeepSpeedZeroOptimizer.get_grad_norm_direct
    installed_bare = zero_grad_norm.install(zero)
    installed = zero_grad_norm.install(_as_the_trainer_hands_it(engine))
    # what the step calls; were it still DeepSpeed's, every comparison below would hold trivially
    replaced = zero.get_grad_norm_direct.__func__ is not DeepSpeedZeroOptimizer.get_grad_norm_direct
    _backward(engine, rank)
    with _recording_foreach_norm_dtypes() as dtypes:
        groups = [
            _partition_group(zero, grads, params)
            for grads, params in zip(zero.averaged_gradients.values(), zero.params_in_partition, strict=True)
        ]
    engine.step()
    return {
        "installed": installed,
        "replaced": replaced,
        "installed_bare": installed_bare,
        "installed_outside_range": outside_range,
        "kept_outside_range": kept_outside_range,
        "groups": groups,
        "foreach_dtypes": sorted(set(dtypes)),
        "step": float(engine.get_global_grad_norm()),
        "step_deepspeed": float(plain.get_global_grad_norm()),
        "reference": _reference_norm(),
    }


def _rank_main(out: Path) -> None:
    import deepspeed
    import torch.distributed
    from accelerate import Accelerator

    deepspeed.init_distributed(dist_backend="gloo")
    Accelerator(cpu=True)  # accelerate's optimizer wrapper needs its state
    rank = torch.distributed.get_rank()
    result = {name: _measure(precision, zero, rank) for name, (precision, zero) in SETUPS.items()}
    for name, settings in (("zero3", {"zero_stage": 3}), ("offload", {"offload_optimizer": True})):
        engine = _engine("fp32", **settings)
        result[f"installed_{name}"] = zero_grad_norm.install(_as_the_trainer_hands_it(engine))
    (out / f"rank{rank}.json").write_text(json.dumps(result), encoding="utf-8")
    # both ranks leave together: a rank that tears down its group while the other still has gloo work in
    # flight can abort it at exit ("terminate called without an active exception")
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    _rank_main(Path(sys.argv[1]))
