"""Profiles as Kedro environments: each documented way of selecting one yields exactly its values, the run log
names the source of every setting, and the old `training.profile` switch fails with what to do instead."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from conftest import make_project_copy, run_pipeline, training_parameters
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from edu_bias_pipeline.dpo.config import TrainingConfigError, resolve_training_config

# What each profile sets, as documented in docs/stages/training.md; everything else is the field default.
OPTIMIZED = {
    "beta": 0.5,
    "learning_rate": 5e-6,
    "per_device_train_batch_size": 2,
    "per_device_eval_batch_size": 2,
    "gradient_accumulation_steps": 4,
    "eval_strategy": "steps",
    "eval_steps": 100,
    "save_strategy": "steps",
    "save_steps": 100,
}
GPU = {
    "beta": 0.5,
    "learning_rate": 5e-6,
    "per_device_train_batch_size": 64,
    "per_device_eval_batch_size": 128,
    "gradient_accumulation_steps": 1,
    "probe_batch_size": True,
    "precision": "auto",
    "precompute_ref_log_probs": True,
    "reference_cache_dir": "data/06_models/reference_cache",
    "train_sampling_strategy": "group_by_length",
    "attn_implementation": "sdpa",
    "sdpa_backends": ["flash", "efficient", "math"],
    "liger_kernels": "auto",
    "torch_compile": False,
    "dataloader_num_workers": 4,
    "gather_step_metrics": False,
    "eval_strategy": "steps",
    "eval_steps": 100,
    "save_strategy": "steps",
    "save_steps": 100,
    "deepspeed.check_grad_overflow": False,
    "deepspeed.contiguous_gradients": "auto",
    "deepspeed.foreach_grad_norm": True,
}
# The tiny-model tuning of conf/base that must not leak into a profile.
BASE_TINY = {
    "learning_rate": 2e-3,
    "per_device_train_batch_size": 8,
    "num_train_epochs": 2,
    "max_length": 256,
}


def _get(cfg, name):
    group, _, key = name.rpartition(".")
    return getattr(getattr(cfg, group), key) if group else getattr(cfg, name)


def _resolve(env, runtime=None, environ=None):
    return resolve_training_config(training_parameters(env, runtime), environ or {}, check_model=False)


@pytest.mark.parametrize(("env", "expected"), [("optimized", OPTIMIZED), ("gpu", GPU)])
def test_each_profile_environment_yields_exactly_its_values(env, expected):
    cfg = _resolve(env)
    assert {name: _get(cfg, name) for name in expected} == expected
    # everything the profile leaves out is the field default, not the base's tiny-model tuning
    assert cfg.model_dump(exclude_defaults=True).keys() <= {name.split(".")[0] for name in expected}
    for name, tiny in BASE_TINY.items():
        if name not in expected:
            assert _get(cfg, name) != tiny


def test_qwen2_7b_carries_the_optimized_hyperparameters():
    cfg = _resolve("qwen2_7b")
    assert {name: _get(cfg, name) for name in OPTIMIZED} == OPTIMIZED
    assert (cfg.model_name_or_path, cfg.mode, cfg.deepspeed.zero_stage) == (
        "Qwen/Qwen2-7B-Instruct",
        "deepspeed",
        3,
    )


def test_base_keeps_the_tiny_model_tuning_and_params_override_single_keys():
    base = _resolve(None)
    assert {name: _get(base, name) for name in BASE_TINY} == BASE_TINY
    # --params merges key by key over the environment: the rest of the profile stays
    cfg = _resolve("gpu", {"training": {"learning_rate": 1e-5, "deepspeed": {"zero_stage": 3}}})
    assert (cfg.learning_rate, cfg.deepspeed.zero_stage, cfg.deepspeed.check_grad_overflow) == (
        1e-5,
        3,
        False,
    )
    assert cfg.per_device_train_batch_size == 64


def test_the_old_profile_parameter_fails_naming_the_environment():
    for env in (None, "optimized"):
        with pytest.raises(TrainingConfigError, match=r"training\.profile: .*kedro run --env optimized"):
            _resolve(env, {"training": {"profile": "optimized"}})


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project_copy(tmp_path_factory.mktemp("environments") / "project")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _settings_log(messages: list[str]) -> dict[str, tuple[str, str]]:
    """`name = value  (source)` lines of the run log → {name: (value, source)}."""
    records = [m for m in messages if m.startswith("training settings")]
    assert len(records) == 1, records
    rows = {}
    for line in records[0].splitlines()[1:]:
        name, _, rest = line.strip().partition(" = ")
        value, _, source = rest.rpartition("  (")
        rows[name.strip()] = (value, source.rstrip(")"))
    return rows


def _resolve_in_session(project, monkeypatch, env=None, params=None, environ=None):
    for var in ("TRAIN_MODE", "MODEL_NAME_OR_PATH", "TRAIN_DATASETS", "OUTPUT_DIR"):
        monkeypatch.delenv(var, raising=False)
    for var, value in (environ or {}).items():
        monkeypatch.setenv(var, value)
    # Kedro configures logging as the session starts (clearing handlers below the package's logger), so the
    # handler is added after that, before the run.
    bootstrap_project(project)
    cwd, handler = Path.cwd(), _Records()
    log = logging.getLogger("edu_bias_pipeline.dpo.sources")
    os.chdir(project)
    try:
        with KedroSession.create(project_path=project, env=env, runtime_params=params) as session:
            log.addHandler(handler)
            session.run(pipeline_names=["training"], node_names=["resolve_training_config"])
    finally:
        log.removeHandler(handler)
        os.chdir(cwd)
    return _settings_log(handler.messages)


def test_kedro_run_env_optimized_logs_each_setting_with_its_source(project, monkeypatch):
    rows = _resolve_in_session(
        project,
        monkeypatch,
        env="optimized",
        params={"training": {"num_train_epochs": 3}},
        environ={"OUTPUT_DIR": "data/06_models/elsewhere"},
    )
    assert rows["learning_rate"] == ("5e-06", "conf/optimized")
    assert rows["gradient_accumulation_steps"] == ("4", "conf/optimized")
    assert rows["beta"] == ("0.5", "conf/optimized")
    assert rows["num_train_epochs"] == ("3.0", "--params")
    assert rows["output_dir"] == ("'data/06_models/elsewhere'", "env var OUTPUT_DIR")
    assert rows["max_length"] == ("512", "default")  # conf/base's 256 is replaced with the whole block
    assert rows["deepspeed.zero_stage"] == ("2", "default")


def test_kedro_run_env_gpu_and_base_log_their_sources(project, monkeypatch):
    rows = _resolve_in_session(
        project, monkeypatch, env="gpu", params={"training": {"deepspeed": {"zero_stage": 3}}}
    )
    assert rows["per_device_train_batch_size"] == ("64", "conf/gpu")
    assert rows["deepspeed.check_grad_overflow"] == ("False", "conf/gpu")
    assert rows["deepspeed.zero_stage"] == ("3", "--params")
    rows = _resolve_in_session(project, monkeypatch, environ={"TRAIN_MODE": "single"})
    assert rows["learning_rate"] == ("0.002", "conf/base")
    assert rows["per_device_train_batch_size"] == ("8", "conf/base")
    assert rows["mode"] == ("'single'", "env var TRAIN_MODE")
    assert rows["beta"] == ("0.1", "default")


def test_kedro_run_with_the_old_profile_parameter_fails_before_anything_runs(project, monkeypatch):
    monkeypatch.delenv("TRAIN_MODE", raising=False)
    with pytest.raises(TrainingConfigError, match=r"--env optimized"):
        run_pipeline(
            project,
            "training",
            params={"training": {"profile": "optimized"}},
            node_names=["resolve_training_config"],
        )
