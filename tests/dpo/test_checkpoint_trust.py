"""training.checkpoint_trust and training.permissions on real files (the end-to-end refusals run in
tests/pipelines/training/test_training_process_safety.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from edu_bias_pipeline.dpo import checkpoint_trust
from edu_bias_pipeline.dpo.checkpoint_trust import UntrustedCheckpointError
from edu_bias_pipeline.dpo.permissions import apply_umask
from edu_bias_pipeline.pipelines.training.nodes import latest_checkpoint


def _checkpoint(out: Path, step: int) -> Path:
    ckpt = out / f"checkpoint-{step}"
    (ckpt / f"global_step{step}").mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(f'{{"global_step": {step}}}')
    (ckpt / "optimizer.pt").write_bytes(b"optimizer %d" % step)
    (ckpt / f"global_step{step}" / "mp_rank_00_model_states.pt").write_bytes(b"states")
    return ckpt


def test_the_record_lives_beside_the_output_dir_and_follows_rotation(tmp_path):
    out = tmp_path / "models" / "dpo_model"
    first, second = _checkpoint(out, 2), _checkpoint(out, 4)
    checkpoint_trust.record_checkpoint(first)
    checkpoint_trust.record_checkpoint(second)
    record = tmp_path / "models" / ".dpo_model.checkpoints.json"
    assert checkpoint_trust.record_path(out) == record and not record.is_relative_to(out)
    assert latest_checkpoint(out) == second
    # rotation deleted checkpoint-2: the next record drops it
    for path in sorted(first.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    first.rmdir()
    third = _checkpoint(out, 6)
    checkpoint_trust.record_checkpoint(third)
    assert sorted(checkpoint_trust.load_records(out)) == ["checkpoint-4", "checkpoint-6"]


def test_an_unrecorded_newer_checkpoint_is_skipped_not_loaded(tmp_path, caplog):
    out = tmp_path / "dpo_model"
    checkpoint_trust.record_checkpoint(_checkpoint(out, 2))
    _checkpoint(out, 4)  # cut off before its hashes were recorded, or planted
    assert latest_checkpoint(out) == out / "checkpoint-2"
    assert "checkpoint-4 has no recorded hashes" in caplog.text


@pytest.mark.parametrize(
    ("tamper", "says"),
    [
        (lambda c: (c / "optimizer.pt").write_bytes(b"evil"), r"changed: optimizer\.pt"),
        (
            lambda c: (c / "global_step4" / "extra.pt").write_bytes(b"evil"),
            r"not written by training: global_step4/extra\.pt",
        ),
        (lambda c: (c / "optimizer.pt").unlink(), r"missing: optimizer\.pt"),
        (
            lambda c: (
                (c / "optimizer.pt").unlink(),
                (c / "optimizer.pt").symlink_to(c / "trainer_state.json"),
            ),
            r"changed: optimizer\.pt",
        ),
        (lambda c: checkpoint_trust.forget(c.parent), r"has no hashes for it"),
    ],
    ids=["changed", "planted", "missing", "symlink", "no-record"],
)
def test_a_checkpoint_that_differs_from_its_record_is_refused(tmp_path, tamper, says):
    out = tmp_path / "dpo_model"
    ckpt = _checkpoint(out, 4)
    checkpoint_trust.record_checkpoint(ckpt)
    tamper(ckpt)
    with pytest.raises(UntrustedCheckpointError, match=says):
        latest_checkpoint(out)


def test_apply_umask_gives_files_and_dirs_the_umask_modes(tmp_path):
    tree = tmp_path / "model"
    (tree / "sub").mkdir(parents=True)
    os.chmod(tree, 0o700)
    (tree / "sub" / "model.safetensors").write_bytes(b"w")
    os.chmod(tree / "sub" / "model.safetensors", 0o600)
    old = os.umask(0o027)
    try:
        apply_umask(tree)
    finally:
        os.umask(old)
    assert stat.S_IMODE(tree.stat().st_mode) == 0o750
    assert stat.S_IMODE((tree / "sub").stat().st_mode) == 0o750
    assert stat.S_IMODE((tree / "sub" / "model.safetensors").stat().st_mode) == 0o640


def test_another_machine_refuses_a_changed_checkpoint_before_launching(tmp_path, caplog):
    """`python -m edu_bias_pipeline.dpo.launch RUN.json --machine-rank 1` (machines 1..N-1 of a
    multi-node run) checks the checkpoint it is told to resume from, as machine 0's node does."""
    import json

    from edu_bias_pipeline.dpo import launch

    out = tmp_path / "dpo_model"
    ckpt = _checkpoint(out, 2)
    checkpoint_trust.record_checkpoint(ckpt)
    (ckpt / "optimizer.pt").write_bytes(b"planted")
    spec = tmp_path / "run.json"
    spec.write_text(json.dumps({"config": {}, "runtime": {"resume_from": str(ckpt)}}), encoding="utf-8")
    assert launch.main([str(spec), "--machine-rank", "1", "--print"]) == 2
    assert "refusing to resume from" in caplog.text and "optimizer.pt" in caplog.text
