"""Writers of the training stage killed just before their rename: the next write cleans up after them.

Each writer runs in a subprocess whose `os.replace` / `os.rename` blocks (the moment after the content is
written, before it is renamed into place), and is killed with SIGKILL there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from edu_bias_pipeline.dpo import checkpoint_trust
from edu_bias_pipeline.dpo.tiny_model import FINGERPRINT_FILE, TinyModelSpec, build_tiny_model

SPEC = TinyModelSpec(vocab_size=300)
# Runs `call` (Python source) with renames blocked; says "renaming" when it reaches one.
BLOCKED = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path

    def blocked(*args, **kwargs):
        print("renaming", flush=True)
        time.sleep(600)

    os.replace = os.rename = blocked
    exec(sys.argv[1])
    """
)


def _kill_at_rename(call: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", BLOCKED, call], stdout=subprocess.PIPE, text=True)
    try:
        # (libraries may print a line or two first)
        lines = iter(proc.stdout.readline, "")
        assert "renaming\n" in lines, "the writer never reached its rename"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def _others(directory: Path, *expected: str) -> list[str]:
    """What else lies in `directory`."""
    return sorted(p.name for p in directory.iterdir() if p.name not in expected)


def _checkpoint(out: Path, step: int) -> Path:
    ckpt = out / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(f'{{"global_step": {step}}}')
    return ckpt


def test_a_killed_checkpoint_record_write_leaves_the_record_whole_and_no_leftover(tmp_path):
    out = tmp_path / "dpo_model"
    checkpoint_trust.record_checkpoint(_checkpoint(out, 2))
    record = checkpoint_trust.record_path(out)
    _checkpoint(out, 4)
    _kill_at_rename(
        "from edu_bias_pipeline.dpo import checkpoint_trust\n"
        f"checkpoint_trust.record_checkpoint(Path({str(out / 'checkpoint-4')!r}))"
    )
    assert sorted(checkpoint_trust.load_records(out)) == ["checkpoint-2"]  # the previous record, whole
    assert len(_others(tmp_path, out.name, record.name)) == 1  # the killed writer's temporary file
    checkpoint_trust.record_checkpoint(_checkpoint(out, 6))
    assert sorted(checkpoint_trust.load_records(out)) == ["checkpoint-2", "checkpoint-6"]
    assert _others(tmp_path, out.name, record.name) == []  # removed by the next write


def test_a_killed_tiny_model_build_leaves_nothing_behind_for_the_next_build(tmp_path):
    base = tmp_path / "base_model"
    _kill_at_rename(
        "from edu_bias_pipeline.dpo.tiny_model import TinyModelSpec, build_tiny_model\n"
        f"build_tiny_model(['one text', 'another text'], {str(base)!r}, TinyModelSpec(vocab_size=300))"
    )
    assert not base.exists()
    assert len(_others(tmp_path)) == 1  # the killed build's directory
    build_tiny_model(["a third text", "and a fourth"], base, SPEC)
    assert json.loads((base / FINGERPRINT_FILE).read_text())["n_texts"] == 2
    assert _others(tmp_path, base.name) == []  # removed by the next build
