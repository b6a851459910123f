"""Checkpoints are resumed only as the project wrote them: file hashes, recorded outside the output dir.

Resuming unpickles files of `checkpoint-N/`: DeepSpeed's engine loads `global_step*/*.pt` with
`torch.load(weights_only=False)`, which runs any code a planted file holds. (transformers 5 loads its own
`optimizer.pt`, `scheduler.pt` and `rng_state*.pth` with `weights_only=True`.) So when the launched process
saves a checkpoint it records the sha256 of every file in it, and the Kedro node resumes only from a
checkpoint whose files are exactly those, unchanged. The record lives beside the output dir, not in it:
`<parent>/.<output dir name>.checkpoints.json`. Whoever can write into the output dir (a DVC remote restores
the whole of it, `dvc pull` / `dvc checkout`) cannot also write the record. Whoever can write its parent
directory can; see docs/stages/training.md.

A checkpoint without a record is one this machine did not finish writing (killed while saving, or restored
from elsewhere): it is never resumed from.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click

from edu_bias_pipeline.files import atomic_open, fingerprint_file

logger = logging.getLogger(__name__)


class UntrustedCheckpointError(click.ClickException, RuntimeError):
    """A checkpoint's files differ from those recorded when it was written (`kedro run` prints the message
    alone, as a click exception)."""


def record_path(output_dir: str | Path) -> Path:
    output_dir = Path(output_dir).absolute()
    return output_dir.parent / f".{output_dir.name}.checkpoints.json"


def file_hashes(checkpoint: Path) -> dict[str, str]:
    """sha256 of every file below `checkpoint`, by path relative to it (links count as files to refuse)."""
    hashes = {}
    for path in sorted(checkpoint.rglob("*")):
        rel = path.relative_to(checkpoint).as_posix()
        if path.is_symlink():
            hashes[rel] = "symlink"
        elif path.is_file():
            hashes[rel] = fingerprint_file(path)["sha256"]
    return hashes


def load_records(output_dir: str | Path) -> dict[str, dict[str, str]]:
    path = record_path(output_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError:
        logger.warning("checkpoint record %s is not valid JSON: no checkpoint is trusted", path)
        return {}
    return data.get("checkpoints", {}) if isinstance(data, dict) else {}


def record_checkpoint(checkpoint: Path) -> None:
    """Add `checkpoint`'s hashes to the record; drop entries of checkpoints that no longer exist."""
    output_dir = checkpoint.parent
    records = {
        name: files for name, files in load_records(output_dir).items() if (output_dir / name).is_dir()
    }
    records[checkpoint.name] = file_hashes(checkpoint)
    # synced and renamed into place: a kill leaves the previous record, whole (its temporary file is removed
    # by the next write)
    with atomic_open(record_path(output_dir), "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"checkpoints": records}, indent=1, sort_keys=True))


def forget(output_dir: str | Path) -> None:
    record_path(output_dir).unlink(missing_ok=True)


def is_recorded(checkpoint: Path) -> bool:
    return checkpoint.name in load_records(checkpoint.parent)


def verify(checkpoint: Path) -> None:
    """Raise `UntrustedCheckpointError` unless `checkpoint` holds exactly the recorded files, unchanged."""
    recorded = load_records(checkpoint.parent).get(checkpoint.name)
    record = record_path(checkpoint.parent)
    if recorded is None:
        raise UntrustedCheckpointError(
            f"refusing to resume from {checkpoint}: {record} has no hashes for it, so this machine did not "
            "write it (it may come from a DVC remote or another copy), and resuming unpickles its files, "
            "which can run code. Set training.resume: false to train afresh (its checkpoints are deleted)."
        )
    actual = file_hashes(checkpoint)
    changed = sorted(k for k in recorded.keys() & actual.keys() if recorded[k] != actual[k])
    unknown = sorted(actual.keys() - recorded.keys())
    missing = sorted(recorded.keys() - actual.keys())
    if changed or unknown or missing:
        parts = []
        groups = (("changed", changed), ("not written by training", unknown), ("missing", missing))
        for label, names in groups:
            if names:
                parts.append(f"{label}: {', '.join(names[:5])}" + (" …" if len(names) > 5 else ""))
        raise UntrustedCheckpointError(
            f"refusing to resume from {checkpoint}: its files differ from those recorded in {record} when "
            f"training wrote it ({'; '.join(parts)}). Resuming unpickles them, which can run code. Find out "
            "who changed the output dir; set training.resume: false to train afresh (its checkpoints are "
            "deleted)."
        )


def make_callback() -> Any:
    """A TrainerCallback recording each checkpoint once every rank has written its part (by the main process
    of the whole run)."""
    from transformers import TrainerCallback
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    class RecordCheckpointHashes(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist.barrier()  # each rank writes its own rng state / ZeRO shards
            # One writer (the record is shared, like the output dir, by every machine of a multi-node run):
            # a second one would race for the record's temporary file.
            if state.is_world_process_zero:
                checkpoint = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
                if checkpoint.is_dir():
                    from edu_bias_pipeline.dpo.permissions import apply_umask

                    apply_umask(checkpoint)
                    record_checkpoint(checkpoint)
            if dist.is_available() and dist.is_initialized():
                dist.barrier()

    return RecordCheckpointHashes()
