"""Split-format train/val files for the training tests, written into a project copy; a free torchrun port."""

from __future__ import annotations

import json
import random
import socket
from pathlib import Path
from typing import Any

from conftest import SAMPLE_PAIRS, read_jsonl, write_jsonl

from edu_bias_pipeline.files import fingerprint_file
from edu_bias_pipeline.pairs import pair_id

_SYNTHETIC = [
    ("gender_sexuality", "女生也可以学好物理。", "女生学不好物理。"),
    ("region", "农村学生同样可以考上好大学。", "农村学生素质低，考不上好大学。"),
    ("socioeconomic", "家境不影响一个人的学习潜力。", "穷人家的孩子天生不爱学习。"),
    ("disability", "有听力障碍的学生也能在普通班取得好成绩。", "残疾学生只会拖累全班。"),
]


def split_row(
    i: int, bias_type: str, chosen: str, rejected: str, prompt: str | None = None
) -> dict[str, Any]:
    return {
        "pair_id": pair_id(prompt, chosen, rejected),
        "source_line": i + 1,
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "bias_type": bias_type,
        "warnings": [],
        "meta": {},
        "split": "train",
        "sample_weight": 1.0,
    }


def sample_rows() -> list[dict[str, Any]]:
    """The shipped sample pairs in the split contract format (synthetic ones if the sample is absent)."""
    if SAMPLE_PAIRS.exists():
        raw = read_jsonl(SAMPLE_PAIRS)
        return [
            split_row(i, r["meta"]["bias_type"], r["chosen"], r["rejected"], r.get("prompt"))
            for i, r in enumerate(raw)
        ]
    return [split_row(i, b, f"{c}（{i}）", f"{r}（{i}）") for i, (b, c, r) in enumerate(_SYNTHETIC * 40)]


def write_splits(
    project: Path,
    rows: list[dict[str, Any]] | None = None,
    val_fraction: float = 0.1,
    limit: int | None = None,
) -> tuple[list[dict], list[dict]]:
    rows = list(rows if rows is not None else sample_rows())
    random.Random(0).shuffle(rows)
    if limit:
        rows = rows[:limit]
    n_val = max(4, int(len(rows) * val_fraction))
    val, train = rows[:n_val], rows[n_val:]
    for row in val:
        row["split"] = "val"
    write_jsonl(project / "data/05_model_input/train.jsonl", train)
    write_jsonl(project / "data/05_model_input/val.jsonl", val)
    describe_splits(project)
    return train, val


def describe_splits(project: Path) -> None:
    """The split_report.json part training checks: what the split files in place hold (as data_splitting
    records after writing them)."""
    files = {}
    for split in ("train", "val", "test"):
        path = Path("data/05_model_input") / f"{split}.jsonl"
        if (project / path).exists():
            files[split] = {"path": path.as_posix(), **fingerprint_file(project / path)}
    report = project / "data/08_reporting/split_report.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps({"seed": None, "files": files}), encoding="utf-8")


# A short run: a handful of steps, checkpoints and evals every 2 steps, small eval batches.
SHORT_RUN = {
    "max_steps": 4,
    "logging_steps": 1,
    "save_strategy": "steps",
    "save_steps": 2,
    "eval_strategy": "steps",
    "eval_steps": 2,
    "per_device_train_batch_size": 4,
}


def free_port() -> str:
    """A free rendezvous port for torchrun: other test runs share the machine."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])
