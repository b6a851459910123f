"""Training stage nodes: resolve the config, prepare data, build the base model, launch TRL, collect metrics.

The DPO training itself runs in a launched subprocess (`edu_bias_pipeline.dpo.entry`) because Kedro
cannot run under `accelerate launch` / DeepSpeed. These nodes validate everything before that process
starts, and turn its outputs into catalog datasets.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import weakref
from collections import deque
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
import pandas as pd

from edu_bias_pipeline import pairs, patches
from edu_bias_pipeline.dpo import checkpoint_trust, credentials
from edu_bias_pipeline.dpo.config import TrainingConfig, TrainingConfigError, resolve_training_config
from edu_bias_pipeline.dpo.contract import (
    ERROR_FILE,
    EXIT_OOM,
    FINAL_DIR,
    FINAL_TMP,
    METADATA_FILE,
    METRICS_FILE,
    FinalMetadata,
    RunSpec,
    RuntimeSpec,
    TrainedModel,
    history_record,
    legacy_metrics,
)
from edu_bias_pipeline.dpo.hardware import hardware_for, validate_against_hardware
from edu_bias_pipeline.dpo.launch import plan_launch
from edu_bias_pipeline.dpo.tiny_model import FINGERPRINT_FILE, build_tiny_model
from edu_bias_pipeline.files import write_json_atomic
from edu_bias_pipeline.split_files import check_training_splits

logger = logging.getLogger(__name__)

RUN_STATE_FILE = "edu_bias_run.json"  # fingerprint + status of the run that owns the output dir
RUN_DIR = ".run"  # inputs handed to the launched process
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# What a training run writes into the output dir; only these are cleared when another configuration starts.
_RUN_ARTIFACTS = (
    "final",
    FINAL_TMP,
    RUN_DIR,
    "trainer_state.json",
    "training_args.bin",
    "train.log",
    METRICS_FILE,
    RUN_STATE_FILE,
    "tensorboard",
    "wandb",
    "runs",
    "README.md",
)


class TrainingRunError(RuntimeError):
    """The launched training process failed; the message carries its reason."""


class OutputDirBusyError(click.ClickException, TrainingRunError):
    """Another training run holds the output dir (`kedro run` prints the message alone)."""


class OutputDirLockError(click.ClickException, TrainingRunError):
    """The output dir's file system cannot lock files (`kedro run` prints the message alone)."""


# ------------------------------------------------------------------------------------------- config


def resolve_config(params: Mapping[str, Any]) -> TrainingConfig:
    """Typed, validated training config from the parameters and the old env vars.

    This is the one place the env vars `TRAIN_MODE`, `MODEL_NAME_OR_PATH`, `TRAIN_DATASETS` and `OUTPUT_DIR`
    are read (see `training.config.ENV_OVERRIDES`). Hardware-dependent errors (QLoRA without CUDA, more
    processes than GPUs) are raised here too, so a bad configuration never reaches a launched process.
    """
    config = resolve_training_config(params, os.environ)
    patches.require("dpo_trainer")  # the launched trainer overrides TRL's and transformers' internals
    # Hardware errors are raised now; the fallback notes come back in the launch plan and are logged there.
    validate_against_hardware(config, hardware_for(config))
    if config.trust_remote_code:
        logger.warning(
            "training.trust_remote_code is true: Python code shipped with %s is run when it loads (training "
            "and evaluation). Only use it for a model whose code you have read or whose source you trust.",
            config.model_name_or_path,
        )
    logger.info(
        "training config: mode=%s model=%s lora=%s qlora=%s lr=%s beta=%s output=%s",
        config.mode,
        config.model_name_or_path,
        config.lora.enabled,
        config.lora.qlora,
        config.learning_rate,
        config.beta,
        config.output_dir,
    )
    return config


# --------------------------------------------------------------------------------------------- data


def _pair_record(row: Mapping[str, Any], where: str) -> dict[str, Any]:
    def text(field: str, required: bool) -> str | None:
        value = row.get(field)
        if pairs.is_missing(value):
            if required:
                raise ValueError(f"{where}: field '{field}' is missing")
            return None
        if not isinstance(value, str):
            raise ValueError(f"{where}: field '{field}' must be a string, got {type(value).__name__}")
        if required and not value.strip():
            raise ValueError(f"{where}: field '{field}' is empty")
        return value

    meta = row.get(pairs.META) if isinstance(row.get(pairs.META), dict) else {}
    bias_type = row.get(pairs.BIAS_TYPE) or meta.get("bias_type") or "unknown"
    weight = row.get(pairs.SAMPLE_WEIGHT, 1.0)
    try:
        weight = 1.0 if pairs.is_missing(weight) else float(weight)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: field 'sample_weight' must be a number, got {weight!r}") from None
    if weight < 0 or not math.isfinite(weight):
        raise ValueError(f"{where}: field 'sample_weight' must be a finite number ≥ 0, got {weight!r}")
    eval_only = bool(meta.get(pairs.EVAL_ONLY, False))
    return {
        "prompt": text(pairs.PROMPT, False),
        "chosen": text(pairs.CHOSEN, True),
        "rejected": text(pairs.REJECTED, True),
        "bias_type": str(bias_type),
        "sample_weight": weight,
        "eval_only": eval_only,
    }


def _frame_records(frame: pd.DataFrame | None, name: str) -> list[dict[str, Any]]:
    if frame is None or len(frame) == 0:
        return []
    rows = frame.to_dict(orient="records")
    return [_pair_record(row, f"{name} row {i + 1}") for i, row in enumerate(rows)]


def _file_records(path: str) -> list[dict[str, Any]]:
    records = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path} line {lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path} line {lineno}: expected a JSON object")
            records.append(_pair_record(row, f"{path} line {lineno}"))
    return records


def prepare_training_data(
    train_pairs: pd.DataFrame, val_pairs: pd.DataFrame, split_report: dict[str, Any], cfg: TrainingConfig
) -> dict[str, list[dict[str, Any]]]:
    """Train/val records for the launched process: `TRAIN_DATASETS` files replace the train split if given.

    Both split files must be the ones `split_report` describes (one data_splitting run, see
    `split_files`). `eval_only` pairs (e.g. CrowS-Pairs) never reach training; finding one is logged.
    """
    check_training_splits(train_pairs, val_pairs, split_report)
    if cfg.train_datasets:
        train = [rec for path in cfg.train_datasets for rec in _file_records(path)]
        logger.info(
            "training on %d pairs from %s (train split ignored)", len(train), ", ".join(cfg.train_datasets)
        )
    else:
        train = _frame_records(train_pairs, "train_pairs (data/05_model_input/train.jsonl)")
    val = _frame_records(val_pairs, "val_pairs (data/05_model_input/val.jsonl)")
    eval_only = [r for r in train if r["eval_only"]]
    if eval_only:
        logger.warning("leaving %d eval_only pair(s) out of training", len(eval_only))
        train = [r for r in train if not r["eval_only"]]
    if not train:
        raise TrainingConfigError("no training pairs: the train split (or TRAIN_DATASETS) is empty")
    return {"train": train, "val": val}


# ------------------------------------------------------------------------------------- base model


def build_base_model(
    training_data: dict[str, list[dict[str, Any]]], cfg: TrainingConfig, training_lock: TrainingLock
) -> dict[str, Any]:
    """The model to train: the configured one, or the embedded tiny model built once from the train texts.

    Runs under `training_lock` (see `lock_training_dirs`), released here if the build fails.
    """
    if not training_lock.held:
        raise TrainingRunError("build_base_model needs the training lock (lock_training_dirs) held")
    if not cfg.is_embedded_model:
        return {"path": cfg.model_name_or_path}
    texts = [cfg.instruction]
    for rec in training_data["train"]:
        texts += [rec["chosen"], rec["rejected"], rec["prompt"] or ""]
    try:
        path = build_tiny_model(texts, cfg.base_model_dir)
    except BaseException:
        training_lock.release()
        raise
    return {"path": str(path)}


# ---------------------------------------------------------------------------------------- training


def _digest(records: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(records, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def _model_identity(base_model: dict[str, Any]) -> str:
    path = Path(base_model["path"])
    marker = path / FINGERPRINT_FILE
    if marker.exists():
        return marker.read_text(encoding="utf-8")
    return base_model["path"]


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint to resume from, verified against the hashes recorded when it was written.

    A checkpoint is complete once its hashes are recorded (`training.checkpoint_trust`): one killed while it
    was saved has none and is skipped. Checkpoints of which none is recorded, or a recorded one whose files
    changed, raise `UntrustedCheckpointError`: resuming would unpickle them.
    """
    if not output_dir.is_dir():
        return None
    found = []
    for child in output_dir.iterdir():
        match = _CHECKPOINT.match(child.name)
        if match and child.is_dir() and (child / "trainer_state.json").exists():
            found.append((int(match.group(1)), child))
    saved = [path for _, path in sorted(found, reverse=True)]
    if not saved:
        return None
    recorded = [path for path in saved if checkpoint_trust.is_recorded(path)]
    newest = recorded[0] if recorded else saved[0]
    for skipped in saved[: saved.index(newest)]:
        logger.warning("training: %s has no recorded hashes (cut off while saving?): not resumed", skipped)
    checkpoint_trust.verify(newest)
    return newest


def _final_run(final_dir: Path) -> str | None:
    """The fingerprint of the run that wrote `final_dir`, as its metadata names it (None: unknown)."""
    try:
        return FinalMetadata.read(final_dir).fingerprint
    except (OSError, ValueError):
        return None


def _clear_run(output_dir: Path, record: Path) -> None:
    """Delete the previous run's outputs, and its `trained_model` record: a run that dies before recording
    its own model must leave no record naming final/ (evaluation would report the old run's identity)."""
    record.unlink(missing_ok=True)
    for child in list(output_dir.iterdir()) if output_dir.is_dir() else []:
        if _CHECKPOINT.match(child.name) or child.name in _RUN_ARTIFACTS:
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    checkpoint_trust.forget(output_dir)


def lock_path(output_dir: Path) -> Path:
    """Beside the output dir, not in it: `dvc repro` deletes the output dir before the stage runs."""
    output_dir = output_dir.absolute()
    return output_dir.parent / f".{output_dir.name}.lock"


def _close_all(fds: list[int]) -> None:
    while fds:
        os.close(fds.pop())


class TrainingLock:
    """Exclusive locks on the directories a training run writes, taken before the base model is built and
    released when `train_dpo` returns (or when Kedro drops this object, or its process ends).

    A flock belongs to the open file, not to a process: the guard `train_dpo` starts gets the descriptors
    (`pass_fds`), so a Kedro killed mid-run leaves them held until the whole training tree has ended.
    """

    def __init__(self) -> None:
        self.fds: list[int] = []
        self._finalizer = weakref.finalize(self, _close_all, self.fds)

    @property
    def held(self) -> bool:
        return bool(self.fds)

    def acquire(self, directory: Path, what: str) -> None:
        path = lock_path(directory)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "pid unknown"
            os.close(fd)
            raise OutputDirBusyError(
                f"{what} {directory} is in use by another training run ({holder}; lock {path}). Wait for "
                "it to end or stop it, or set training.output_dir (and training.base_model_dir) to another "
                "directory."
            ) from None
        except OSError as exc:
            os.close(fd)
            raise OutputDirLockError(
                f"cannot lock {what} {directory}: the file system of {path.parent} does not support file "
                f"locks ({errno.errorcode.get(exc.errno, exc.errno)}: {exc.strerror}). Mount it with lock "
                "support (Lustre: the `-o flock` mount option; NFS: a running lockd/rpc.statd, no `nolock` "
                "option), or set training.output_dir and training.base_model_dir to a local disk."
            ) from None
        self.fds.append(fd)
        self.note(f"pid {os.getpid()}")

    def note(self, holder: str) -> None:
        """Say in every lock file who holds it (read by the run that is refused)."""
        for fd in self.fds:
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder.encode(), 0)

    def release(self) -> None:
        self._finalizer()

    # Kedro's MemoryDataset copies what it holds; a lock is one thing, shared by the nodes that use it.
    def __copy__(self) -> TrainingLock:
        return self

    def __deepcopy__(self, memo: dict) -> TrainingLock:
        return self


def lock_training_dirs(training_data: dict[str, list[dict[str, Any]]], cfg: TrainingConfig) -> TrainingLock:
    """Lock the output dir, and the embedded base model's dir when it is built, for the whole run.

    Taken before `build_base_model`: a second run refused here has not rebuilt the base model under the
    trainer of the first. A run into another output dir that builds into the same base model dir is
    refused too. It takes the training data only to run after `prepare_training_data`: a run stopped by
    its data never holds the lock.
    """
    del training_data
    lock = TrainingLock()
    try:
        lock.acquire(Path(cfg.output_dir), "training output dir")
        if cfg.is_embedded_model and lock_path(Path(cfg.base_model_dir)) != lock_path(Path(cfg.output_dir)):
            lock.acquire(Path(cfg.base_model_dir), "base model dir")
    except BaseException:
        lock.release()
        raise
    return lock


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _run_streaming(
    argv: list[str], env: dict[str, str], lock: TrainingLock | None = None
) -> tuple[int, list[str]]:
    """Run the launcher under `training.guard`, passing its output through; keep the end of stderr.

    The guard runs in its own session (a Ctrl-C at the terminal reaches Kedro only, which stops the run
    through the guard) and takes the whole training tree down when Kedro ends, however it ends.
    """
    guarded = [sys.executable, "-m", "edu_bias_pipeline.dpo.guard", str(os.getpid()), "--", *argv]
    tail: deque[str] = deque(maxlen=20)
    with subprocess.Popen(
        guarded,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
        pass_fds=() if lock is None else tuple(lock.fds),
    ) as proc:
        assert proc.stderr is not None
        try:
            if lock is not None:
                lock.note(f"pid {os.getpid()}, training process {proc.pid}")
            for line in proc.stderr:
                sys.stderr.write(line)
                tail.append(line.rstrip())
        except BaseException:
            # KeyboardInterrupt and the like: stop the training tree before leaving (Popen's exit waits)
            proc.send_signal(signal.SIGTERM)
            raise
    return proc.returncode, list(tail)


def _failure_reason(output_dir: Path, returncode: int, stderr_tail: list[str]) -> str:
    error_file = output_dir / RUN_DIR / ERROR_FILE
    if error_file.exists():
        try:
            return json.loads(error_file.read_text(encoding="utf-8"))["message"]
        except (OSError, ValueError, KeyError):
            pass
    lines = [ln for ln in stderr_tail if ln.strip()][-12:]
    return f"exit code {returncode}" + ("; end of its stderr:\n" + "\n".join(lines) if lines else "")


def train_dpo(
    training_data: dict[str, list[dict[str, Any]]],
    cfg: TrainingConfig,
    base_model: dict[str, Any],
    training_lock: TrainingLock,
    trained_model_record: str,
) -> dict[str, Any]:
    """Launch `training.entry` in the configured mode and wait for it; resume an interrupted identical run.

    Runs under `training_lock` (taken by `lock_training_dirs`, released here): a second run into the same
    dirs fails at once, naming the holder. `trained_model_record` is the path of the `trained_model` record,
    removed with the run it describes when a run starts afresh.
    """
    if not training_lock.held:
        raise TrainingRunError("train_dpo needs the training lock (lock_training_dirs) held")
    try:
        return _train_locked(training_data, cfg, base_model, training_lock, Path(trained_model_record))
    finally:
        training_lock.release()


def _train_locked(
    training_data: dict[str, list[dict[str, Any]]],
    cfg: TrainingConfig,
    base_model: dict[str, Any],
    lock: TrainingLock,
    record: Path,
) -> dict[str, Any]:
    output_dir = Path(cfg.output_dir)
    digests = (_digest(training_data["train"]), _digest(training_data["val"]), _model_identity(base_model))
    fingerprint = cfg.fingerprint(*digests)
    state_file = output_dir / RUN_STATE_FILE
    previous = json.loads(state_file.read_text(encoding="utf-8")) if state_file.exists() else {}
    known = {fingerprint, *cfg.earlier_fingerprints(*digests)}
    same_run = previous.get("fingerprint") in known and cfg.resume
    final_dir = output_dir / FINAL_DIR

    # final/ must name this run too: one written before final/ named its run is rewritten (from the last
    # checkpoint when there is one), or evaluation would refuse it with nothing to fix it
    if same_run and previous.get("status") == "completed" and _final_run(final_dir) == fingerprint:
        logger.info(
            "training: %s already holds the finished run of this configuration; not retraining", final_dir
        )
        return {
            "output_dir": str(output_dir),
            "final_dir": str(final_dir),
            "fingerprint": fingerprint,
            "skipped": True,
            "mode": "not retrained: final/ already holds this configuration's finished run",
        }

    resume_from = latest_checkpoint(output_dir) if same_run else None
    if resume_from is None:
        if not same_run and output_dir.exists() and any(output_dir.iterdir()):
            logger.warning(
                "training: %s holds a run of another configuration (or resume is off); starting afresh",
                output_dir,
            )
        _clear_run(output_dir, record)
    run_dir = output_dir / RUN_DIR
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / ERROR_FILE).unlink(missing_ok=True)
    _write_jsonl(run_dir / "train.jsonl", training_data["train"])
    _write_jsonl(run_dir / "val.jsonl", training_data["val"])
    write_json_atomic(state_file, {"fingerprint": fingerprint, "status": "running"}, indent=None)

    hw = hardware_for(cfg)
    ds_path = run_dir / "deepspeed_config.json"
    plan = plan_launch(
        cfg,
        run_dir / "run.json",
        hw,
        environ=os.environ,
        deepspeed_config_path=ds_path,
        wandb_api_key=credentials.wandb_api_key(),
    )
    for note in plan.warnings:
        logger.warning("training: %s", note)
    if plan.deepspeed_config is not None:
        write_json_atomic(ds_path, plan.deepspeed_config)
    runtime = RuntimeSpec(
        model_path=base_model["path"],
        base_model_id=base_model["path"],
        train_file=str(run_dir / "train.jsonl"),
        val_file=str(run_dir / "val.jsonl"),
        run_dir=str(run_dir),
        precision=plan.precision,
        use_cpu=plan.use_cpu,
        deepspeed_config=plan.deepspeed_config_file,
        resume_from=str(resume_from) if resume_from else None,
        fingerprint=fingerprint,
    )
    # machines 1..N-1 poll for this file (launch.read_run_spec): it appears whole or not at all
    write_json_atomic(run_dir / "run.json", RunSpec(config=cfg, runtime=runtime).model_dump(mode="json"))
    if resume_from:
        logger.info("training: resuming the interrupted run from %s", resume_from)
    logger.info("training: launching %s: %s", plan.description, " ".join(plan.argv))
    returncode, stderr_tail = _run_streaming(plan.argv, plan.env, lock)
    if returncode != 0:
        reason = _failure_reason(output_dir, returncode, stderr_tail)
        if returncode == EXIT_OOM:
            raise TrainingRunError(f"training ran out of memory: {reason}")
        raise TrainingRunError(f"training process failed ({plan.description}): {reason}")
    if not (final_dir / METADATA_FILE).exists():
        raise TrainingRunError(f"training process exited cleanly but {final_dir} was not written")
    write_json_atomic(state_file, {"fingerprint": fingerprint, "status": "completed"}, indent=None)
    return {
        "output_dir": str(output_dir),
        "final_dir": str(final_dir),
        "fingerprint": fingerprint,
        "skipped": False,
        "launch": plan.argv[1:],
        "mode": plan.description,
    }


# ---------------------------------------------------------------------------------------- metrics


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null (json.dump would write invalid JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def collect_training_metrics(
    training_run: dict[str, Any], split_report: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`training_metrics.json` (step history for dvc plots, final numbers, health), trained-model record.

    The record keeps the split's file fingerprints (`split_report`, which train and val were checked
    against before training), so evaluation knows which test file is held out from this model."""
    output_dir = Path(training_run["output_dir"])
    raw = json.loads((output_dir / METRICS_FILE).read_text(encoding="utf-8"))
    history = raw.get("history", [])
    # One record per logged step, train and eval values side by side: dvc plots merges every list of
    # records in a file by position, so the file holds exactly one such list.
    by_step: dict[int, dict[str, Any]] = {}
    for entry in history:
        if "step" in entry:
            by_step.setdefault(entry["step"], {}).update(history_record(entry))
    steps = [by_step[k] for k in sorted(by_step)]
    train = raw.get("train", {})
    last_train = next((h for h in reversed(history) if "loss" in h and "rewards/accuracies" in h), {})
    final = {f"train/{k}": v for k, v in legacy_metrics(last_train).items()}
    if "loss" in last_train:
        final["train/loss"] = last_train["loss"]
    final.update({f"train_set/{k}": v for k, v in train.items() if k.startswith(("rewards/", "loss"))})
    final.update(
        {f"eval/{k}": v for k, v in raw.get("eval", {}).items() if k.startswith(("rewards/", "loss"))}
    )
    metrics = {
        "steps": steps,
        "final": final,
        "per_category": raw.get("per_category", {}),
        "health": raw.get("health", {}),
        "run": {
            k: raw.get(k)
            for k in (
                "fingerprint",
                "resumed_from",
                "num_processes",
                "device",
                "precision",
                "global_step",
                "runtime_s",
            )
        },
    }
    metrics["run"]["mode"] = training_run.get("mode")
    metrics["run"]["train_runtime_s"] = train.get("train_runtime")
    metrics["run"].update(raw.get("throughput", {}))
    final_dir = Path(training_run["final_dir"])
    contract = FinalMetadata.read(final_dir)
    # The run that wrote final/, so evaluation can name it: fingerprint, last step, when final/ was saved.
    finished = datetime.fromtimestamp((final_dir / METADATA_FILE).stat().st_mtime, tz=timezone.utc)
    trained_model = TrainedModel(
        **contract.model_dump(exclude=set(FinalMetadata.RUN_FIELDS)),
        model_dir=str(final_dir),
        # final/'s own record of its run first: evaluation checks the two agree
        fingerprint=contract.fingerprint or raw.get("fingerprint") or training_run.get("fingerprint"),
        global_step=raw.get("global_step") if contract.global_step is None else contract.global_step,
        finished_at=finished.isoformat(timespec="seconds"),
        split_files=(split_report or {}).get("files"),
    )
    return _clean(metrics), trained_model.model_dump(mode="json")


TRAIN_CURVE_KEYS = ("train/loss", "train/reward_accuracy", "train/reward_margin", "train/lr")
VAL_CURVE_KEYS = ("eval/loss", "eval/rewards/accuracies", "eval/rewards/margins")


def training_curves(training_metrics: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    """Train and val curves as complete records, for `dvc plots`.

    DVC drops a whole plot when any record lacks its y field, and train and eval steps log different keys,
    so each curve keeps only the steps that logged all of its keys.
    """

    def curve(keys: tuple[str, ...]) -> list[dict]:
        return [
            {"step": rec["step"], **{k: rec[k] for k in keys}}
            for rec in training_metrics.get("steps", [])
            if "step" in rec and all(rec.get(k) is not None for k in keys)
        ]

    return curve(TRAIN_CURVE_KEYS), curve(VAL_CURVE_KEYS)
