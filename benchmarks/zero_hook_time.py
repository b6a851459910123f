"""Host time of DeepSpeed ZeRO-1/2's gradient hooks, epilogue reduction and optimizer step, per call.

Wraps `DeepSpeedZeroOptimizer`'s methods with a clock, then runs a script (normally
benchmarks/train_throughput.py) in this process and prints one line per method at exit:

    python -m torch.distributed.run --nproc_per_node 1 benchmarks/zero_hook_time.py \
        benchmarks/train_throughput.py --tiny --layers 24 --batch 1 --steps 30 --warm 3 --zero 2 \
        --set 'deepspeed={"contiguous_gradients": true}'

and the same with `false` (the gpu profile's setting under ZeRO-2). `process_gradients` is what each
parameter's gradient hook runs. With a 24-layer tiny model on a CPU the step is nearly all host work, so the
figures are DeepSpeed's own Python and bookkeeping (docs/performance-log.md, calls W-Z). A hook that fills a
bucket reduces it from inside: with more than one bucket a step, that reduction counts in both
`process_gradients` and `reduce_ipg_grads` (a model in one bucket, as measured, reduces it once, after the
backward).
"""

from __future__ import annotations

import atexit
import collections
import runpy
import sys
import time

from deepspeed.runtime.zero.stage_1_and_2 import DeepSpeedZeroOptimizer

TIMED = ("process_gradients", "reduce_ipg_grads", "step")
seconds: dict[str, float] = collections.defaultdict(float)
calls: collections.Counter[str] = collections.Counter()


def _clocked(name: str):
    method = getattr(DeepSpeedZeroOptimizer, name)

    def wrapper(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        finally:
            seconds[name] += time.perf_counter() - start
            calls[name] += 1

    return wrapper


@atexit.register
def _report() -> None:
    for name in TIMED:
        if calls[name]:
            print(
                f"ZERO_HOST_TIME {name}: {calls[name]} calls, {seconds[name] * 1e3:.1f} ms, "
                f"{seconds[name] / calls[name] * 1e6:.1f} us/call",
                file=sys.stderr,
            )


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for name in TIMED:
        setattr(DeepSpeedZeroOptimizer, name, _clocked(name))
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
