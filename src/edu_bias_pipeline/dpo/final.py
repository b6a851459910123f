"""The end of a training run: the final numbers on the whole val and train sets, and the atomic `final/`."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from edu_bias_pipeline.dpo.config import TrainingConfig
from edu_bias_pipeline.dpo.contract import FINAL_DIR, FINAL_TMP, FinalMetadata, RuntimeSpec
from edu_bias_pipeline.dpo.data import PreferenceData
from edu_bias_pipeline.dpo.permissions import apply_umask

logger = logging.getLogger("edu_bias_pipeline.dpo")


def evaluate_final(trainer, data: PreferenceData, config: TrainingConfig) -> dict[str, Any]:
    """The whole val split (overall and per bias_type) and the whole train set, after training."""
    final_eval: dict[str, Any] = {}
    per_category: dict[str, dict[str, float]] = {}
    if data.val is not None:
        final_eval = trainer.evaluate_quietly(trainer.eval_dataset, "eval_final")
        for name, dataset in trainer.category_eval_datasets.items():
            m = trainer.evaluate_quietly(dataset, f"eval_{name}")
            per_category[name] = {**m, "n_pairs": len(data.categories[name])}
    # With precomputed reference log-probs the prepared train set carries them (the reference is gone by now).
    train_eval = trainer.evaluate_quietly(
        trainer.train_dataset if config.precompute_ref_log_probs else data.train, "train_final"
    )
    return {"train": train_eval, "eval": final_eval, "per_category": per_category}


def save_final(
    trainer, tokenizer, config: TrainingConfig, runtime: RuntimeSpec, output_dir: Path, state
) -> None:
    """Write the model to a temp dir and rename it to `final/`: readers never see a half-written model."""
    tmp = output_dir / FINAL_TMP
    final = output_dir / FINAL_DIR
    if state.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    state.wait_for_everyone()
    trainer.save_model(str(tmp))  # every rank: ZeRO-3 gathers the shards here
    if state.is_main_process:
        tokenizer.save_pretrained(str(tmp))
        FinalMetadata(
            base_model=runtime.base_model_id,
            is_adapter=config.lora.enabled,
            beta=trainer.args.beta,
            instruction=config.instruction,
            max_length=config.max_length,
            trust_remote_code=config.trust_remote_code,
            reference_sha256=trainer.reference_weights_hash(),
            fingerprint=runtime.fingerprint,
            global_step=trainer.state.global_step,
        ).write(tmp)
        if (tmp / "training_args.bin").exists():
            shutil.copy2(tmp / "training_args.bin", output_dir / "training_args.bin")
        apply_umask(tmp)  # save_pretrained writes model.safetensors 0600 whatever the umask
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        logger.info("final %s written to %s", "adapter" if config.lora.enabled else "model", final)
    state.wait_for_everyone()
