"""The launched process's datasets: the node's pair files in TRL's preference format, per bias_type.

With precomputed reference log-probs each dataset is file-backed in the run directory (`file_backed`), so
TRL's tokenised copies and reference columns are shared by the ranks and reused by an identical rerun.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edu_bias_pipeline.dpo.config import TrainingConfig
from edu_bias_pipeline.dpo.contract import RuntimeSpec
from edu_bias_pipeline.pairs import render_prompt

# TRL's tokenised columns.
TOKEN_COLUMNS = ["prompt_ids", "chosen_ids", "rejected_ids"]
# Name of the whole val split among the eval datasets registered at construction (precomputed ref log-probs).
ALL_VAL = "__all__"


@dataclass
class PreferenceData:
    """The run's train and val pairs, as rows and as TRL datasets, and the val pairs of each bias_type."""

    train_rows: list[dict[str, Any]]
    categories: dict[str, list[dict[str, Any]]]  # val rows by bias_type
    train: Any
    val: Any | None
    per_category: dict[str, Any] = field(default_factory=dict)  # empty: no per-bias_type evaluation

    def eval_dataset(self, precompute_ref_log_probs: bool) -> Any:
        """What the trainer is given to evaluate on. TRL computes reference log-probs only for the
        datasets it is given at construction (before the policy moves): with them precomputed, the
        per-category val sets are registered there too, under their names beside `ALL_VAL`."""
        if precompute_ref_log_probs and self.val is not None:
            return {ALL_VAL: self.val, **self.per_category}
        return self.val


def load_preference_data(
    config: TrainingConfig, runtime: RuntimeSpec, tokenizer: Any, state
) -> PreferenceData:
    """The node's train/val files as TRL datasets (file-backed when reference log-probs are precomputed)."""
    train_rows = load_rows(runtime.train_file)
    val_rows = load_rows(runtime.val_file) if Path(runtime.val_file).exists() else []
    categories: dict[str, list[dict[str, Any]]] = {}
    for row in val_rows:
        categories.setdefault(str(row.get("bias_type") or "unknown"), []).append(row)
    train = build_dataset(train_rows, tokenizer, config.instruction)
    val = build_dataset(val_rows, tokenizer, config.instruction) if val_rows else None
    per_category: dict[str, Any] = {}
    if config.eval_per_bias_type and val is not None:
        per_category = {
            name: build_dataset(rows, tokenizer, config.instruction)
            for name, rows in sorted(categories.items())
        }
    if config.precompute_ref_log_probs:
        cache = Path(runtime.run_dir) / "datasets"
        train = file_backed(train, cache / "train", state)
        if val is not None:
            val = file_backed(val, cache / "val", state)
        per_category = {
            name: file_backed(ds, cache / f"val_{i}", state)
            for i, (name, ds) in enumerate(per_category.items())
        }
    return PreferenceData(train_rows, categories, train, val, per_category)


def load_rows(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def build_dataset(rows: list[dict[str, Any]], tokenizer: Any, instruction: str):
    """TRL's standard (non-conversational) preference format, prompt already rendered (data contract)."""
    from datasets import Dataset

    return Dataset.from_dict(
        {
            "prompt": [render_prompt(tokenizer, r.get("prompt"), instruction) for r in rows],
            "chosen": [r["chosen"] for r in rows],
            "rejected": [r["rejected"] for r in rows],
        }
    )


def file_backed(dataset, path: Path, state):
    """The dataset saved under `path` (once per content) and memory-mapped back, on every rank.

    TRL writes its tokenised copies and its precomputed reference log-probs next to a dataset's files. An
    in-memory dataset has none, so each rank would look in its own temporary directory (bare TRL's
    `FileNotFoundError` under a multi-process launch). Saved in the run directory, the dataset keeps its
    fingerprint, so all ranks share TRL's cache files and an identical rerun (same data, same reference
    model: TRL keys the cache on both) reuses them.
    """
    import hashlib

    from datasets import load_from_disk

    digest = hashlib.sha256(
        json.dumps(dataset.to_dict(), ensure_ascii=False, sort_keys=True).encode("utf-8")
    ).hexdigest()
    marker = path / "edu_bias_content.sha256"
    with state.main_process_first():
        if state.is_main_process and not (marker.exists() and marker.read_text() == digest):
            shutil.rmtree(path, ignore_errors=True)
            dataset.save_to_disk(str(path))
            marker.write_text(digest)
        return load_from_disk(str(path))


def completion_lengths(dataset) -> list[int]:
    """Tokens of a pair's longer sequence (prompt + longer completion), from TRL's tokenised columns."""
    import pyarrow.compute as pc

    table = dataset.select_columns(TOKEN_COLUMNS).with_format("arrow")[:]
    prompt = pc.list_value_length(table.column("prompt_ids"))
    longest = pc.max_element_wise(
        pc.list_value_length(table.column("chosen_ids")), pc.list_value_length(table.column("rejected_ids"))
    )
    return pc.add(prompt, longest).to_pylist()


def reference_cache_key(dataset, model_hash: str, salt: str) -> str:
    """Key of a dataset's reference log-probs: its token ids (data, prompt template, tokenizer and
    truncation in one), the reference model's weights and the numerics they were computed with."""
    import hashlib

    import numpy as np
    import pyarrow.compute as pc

    table = dataset.select_columns(TOKEN_COLUMNS).with_format("arrow")[:]
    digest = hashlib.sha256()
    for name in TOKEN_COLUMNS:
        # values and lengths only: arrow chunking and schema metadata differ between equal datasets
        column = table.column(name).combine_chunks()
        digest.update(np.asarray(pc.list_value_length(column), dtype=np.int64).tobytes())
        digest.update(np.asarray(column.flatten(), dtype=np.int64).tobytes())
    digest.update(f"{model_hash}|{salt}".encode())
    return digest.hexdigest()[:24]
