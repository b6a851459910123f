"""Typed training config: parameter and env-var precedence, validation errors, fingerprints."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import training_parameters

from edu_bias_pipeline.dpo.config import (
    EMBEDDED_MODEL,
    TrainingConfig,
    TrainingConfigError,
    resolve_training_config,
)

ROOT = Path(__file__).resolve().parents[2]


def test_the_field_defaults_are_the_old_default_profile():
    default = resolve_training_config({})
    assert (
        default.beta,
        default.learning_rate,
        default.per_device_train_batch_size,
        default.gradient_accumulation_steps,
        default.eval_strategy,
    ) == (0.1, 1e-6, 1, 1, "epoch")


def test_nulls_are_unset_and_keep_the_default():
    cfg = resolve_training_config({"learning_rate": 1e-3, "beta": None, "deepspeed": {"zero_stage": None}})
    assert cfg.learning_rate == 1e-3 and cfg.beta == 0.1 and cfg.deepspeed.zero_stage == 2


def test_env_vars_win_over_parameters(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("{}\n"), b.write_text("{}\n")
    model = tmp_path / "model"
    model.mkdir()
    env = {
        "TRAIN_MODE": "deepspeed",
        "MODEL_NAME_OR_PATH": str(model),
        "TRAIN_DATASETS": f"{a}, {b}",
        "OUTPUT_DIR": str(tmp_path / "out"),
    }
    cfg = resolve_training_config({"mode": "single", "output_dir": "x"}, env)
    assert cfg.mode == "deepspeed"
    assert cfg.model_name_or_path == str(model)
    assert cfg.train_datasets == [str(a), str(b)]
    assert cfg.output_dir == str(tmp_path / "out")
    # empty env vars are ignored rather than blanking a field
    assert resolve_training_config({"mode": "accelerate"}, {"TRAIN_MODE": " "}).mode == "accelerate"


@pytest.mark.parametrize(
    ("params", "env", "match"),
    [
        ({"mode": "turbo"}, {}, r"training\.mode.*'turbo'"),
        ({}, {"TRAIN_MODE": "gpu-please"}, r"training\.mode.*'gpu-please'"),
        ({"learning_rate": -1}, {}, r"training\.learning_rate.*greater than 0"),
        ({"per_device_train_batch_size": 0}, {}, r"training\.per_device_train_batch_size"),
        ({"lerning_rate": 0.1}, {}, r"training\.lerning_rate: unknown key; did you mean 'learning_rate'\?"),
        ({"profile": "fast"}, {}, r"training\.profile: profiles are Kedro configuration environments.*--env"),
        ({"lora": {"r": 0}}, {}, r"training\.lora\.r"),
        ({"deepspeed": {"zero_stage": 1}}, {}, r"training\.deepspeed\.zero_stage"),
        ({"deepspeed": {"offload_param": True}}, {}, r"offload_param needs deepspeed\.zero_stage: 3"),
        ({"eval_strategy": "steps", "eval_steps": None}, {}, r"eval_steps"),
        ({"model_name_or_path": "/no/such/model"}, {}, r"model directory not found: /no/such/model"),
        ({"model_name_or_path": "./models/missing"}, {}, r"model directory not found"),
        ({"model_name_or_path": "nobody-here/no-such-model"}, {"HF_HUB_OFFLINE": "1"}, r"Hugging Face cache"),
        ({}, {"TRAIN_DATASETS": "/no/such/pairs.jsonl"}, r"train_datasets: file not found"),
    ],
)
def test_bad_configuration_is_a_clear_error(params, env, match):
    with pytest.raises(TrainingConfigError, match=match):
        resolve_training_config(params, env)


def test_qlora_implies_lora():
    cfg = resolve_training_config({"lora": {"qlora": True}})
    assert cfg.lora.enabled and cfg.lora.qlora


def _params(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))["training"]


def test_shipped_parameter_files_validate():
    base = resolve_training_config(_params(ROOT / "conf/base/parameters_training.yml"), {})
    assert base.model_name_or_path == EMBEDDED_MODEL and base.mode == "single"
    assert base.learning_rate > 1e-4  # tuned for the tiny model, unlike a pretrained model's 1e-6
    qwen = resolve_training_config(
        _params(ROOT / "conf/qwen2_7b/parameters_training.yml"), {}, check_model=False
    )
    assert qwen.model_name_or_path == "Qwen/Qwen2-7B-Instruct"
    assert (qwen.mode, qwen.deepspeed.zero_stage, qwen.precision) == ("deepspeed", 3, "bf16")
    assert (qwen.beta, qwen.learning_rate) == (0.5, 5e-6)


def test_fingerprint_tracks_training_settings_only():
    cfg = TrainingConfig()
    assert cfg.fingerprint("d") == TrainingConfig(report_to="tensorboard").fingerprint("d")
    assert cfg.fingerprint("d") == TrainingConfig(gather_step_metrics=False).fingerprint("d")  # logging only
    assert cfg.fingerprint("d") != TrainingConfig(learning_rate=1e-3).fingerprint("d")
    assert cfg.fingerprint("d") != cfg.fingerprint("other data")
    # a setting written out at its default is the same run (and so is one a later release adds at its default)
    assert cfg.fingerprint("d") == TrainingConfig(deepspeed={"check_grad_overflow": True}).fingerprint("d")
    assert cfg.fingerprint("d") != TrainingConfig(deepspeed={"check_grad_overflow": False}).fingerprint("d")
    # where DeepSpeed stages gradients before reducing them, and which kernels take their norm, change no
    # result (the gpu profile's change of them must not restart interrupted runs)
    assert cfg.fingerprint("d") == TrainingConfig(deepspeed={"foreach_grad_norm": True}).fingerprint("d")
    staged = {"contiguous_gradients": False}
    assert cfg.fingerprint("d") == TrainingConfig(deepspeed=staged).fingerprint("d")
    ds3 = {"zero_stage": 3}
    assert TrainingConfig(deepspeed=ds3).fingerprint("d") == TrainingConfig(
        deepspeed={**ds3, **staged}
    ).fingerprint("d")
    assert TrainingConfig(deepspeed=ds3).fingerprint("d") != cfg.fingerprint("d")


@pytest.mark.parametrize(
    ("env", "plain", "zero3"),
    [
        (None, "c697fa6280ce0c4c", "9949c903fdbafc4a"),
        ("optimized", "56cd4cd99cd145c8", "4751dcaa93153c0d"),
        ("gpu", "22e1e6007802f403", "56927cc56b126b24"),
    ],
)
def test_fingerprints_of_earlier_releases_still_match(env, plain, zero3):
    """Computed at commit 1d61650 with `training.profile` (None: the `default` profile, the field defaults): a
    release that adds a setting, changes a profile's value of one left out of the fingerprint, or moves the
    profile into a Kedro environment must not make interrupted runs another configuration (they would start
    afresh). Those releases hashed the profile's name too: `earlier_fingerprints` gives what they recorded."""

    def recognised(params):
        cfg = resolve_training_config(params, {})
        return {cfg.fingerprint("d"), *cfg.earlier_fingerprints("d")}

    # the environment's block alone on top of the defaults, as `training.profile` gave them
    params = (
        yaml.safe_load((ROOT / f"conf/{env}/parameters_training.yml").read_text())["training"] if env else {}
    )
    assert plain in recognised(params)
    assert zero3 in recognised(
        {**params, "mode": "deepspeed", "deepspeed": {**params.get("deepspeed", {}), "zero_stage": 3}}
    )
    if env is None:  # the default profile's name was never hashed
        assert resolve_training_config(params, {}).fingerprint("d") == plain


def test_an_earlier_fingerprint_needs_the_same_settings():
    cfg = resolve_training_config(training_parameters("gpu"), {})
    other = resolve_training_config(training_parameters("gpu", {"training": {"learning_rate": 1e-5}}), {})
    assert not set(cfg.earlier_fingerprints("d")) & {other.fingerprint("d"), *other.earlier_fingerprints("d")}


def test_every_field_is_documented():
    def walk(model):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann)

    walk(TrainingConfig)


def test_yaml_bare_no_reads_as_the_no_strategy():
    # `eval_strategy: no` in YAML, or `--params training.eval_strategy=no`, arrives as False.
    from edu_bias_pipeline.dpo.config import TrainingConfig

    cfg = TrainingConfig(eval_strategy=False, save_strategy=False)
    assert (cfg.eval_strategy, cfg.save_strategy) == ("no", "no")


@pytest.mark.parametrize(
    ("old", "new"), [("auto_find_batch_size", "probe_batch_size"), ("use_liger_kernel", "liger_kernels")]
)
def test_settings_named_like_transformers_options_are_refused_naming_their_own_name(old, new):
    """transformers' options of these names behave otherwise; the old keys name the setting to use."""
    with pytest.raises(TrainingConfigError) as refused:
        resolve_training_config({old: True}, {})
    message = refused.value.message
    assert f"\n  training.{old}: renamed training.{new}: " in message and "got True" in message
    assert getattr(resolve_training_config({new: True}, {}), new) is True
