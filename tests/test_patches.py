"""Each patch of a library's internals is applied inside the range it was checked against and only there.

The guards are given the library versions to judge (`installed`), as a run on other releases would find
them: inside the range the patch applies and nothing is logged; outside it is off with a warning that names
the library, the version and the range, or, for the patches the project cannot do without, the run is
refused with that message.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from edu_bias_pipeline import patches

ROOT = Path(__file__).resolve().parents[1]


def assert_guard(caplog, name: str, inside: dict[str, str], outside: dict[str, str]) -> None:
    caplog.set_level(logging.WARNING, logger=patches.__name__)
    caplog.clear()
    assert patches.applies(name, inside) is True
    assert not caplog.records
    assert patches.applies(name, outside) is False
    [record] = caplog.records
    message = record.getMessage()
    assert record.levelno == logging.WARNING and message.startswith(f"{name} is off: ")
    for library, version in outside.items():
        assert f"{library} {version} (checked: {library}{patches.PATCHES[name].checked[library]})" in message
    assert patches.PATCHES[name].without in message


def assert_refusal(name: str, inside: dict[str, str], outside: dict[str, str]) -> None:
    patches.require(name, inside)
    with pytest.raises(patches.UnsupportedLibraryError) as refused:
        patches.require(name, outside)
    message = refused.value.message
    for library, version in outside.items():
        assert f"{library} {version} (checked: {library}{patches.PATCHES[name].checked[library]})" in message
    assert "pyproject.toml" in message
    with pytest.raises(ValueError, match="required"):
        patches.applies(name, inside)  # a required patch has no silent fallback


def test_pyproject_pins_the_ranges_the_patches_were_checked_against():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = {(req := Requirement(line)).name: req.specifier for line in project["dependencies"]}
    checked = {lib: rng for patch in patches.PATCHES.values() for lib, rng in patch.checked.items()}
    assert len(checked) == 6
    for library, versions in checked.items():
        assert pins[library] == SpecifierSet(versions), library


def test_the_installed_libraries_are_inside_every_checked_range():
    """The suite runs on the pinned releases, so every other test here exercises the patches themselves."""
    for patch in patches.PATCHES.values():
        assert patches.mismatches(patch) == [], patch.name


def test_dpo_trainer_is_refused_outside_trl_and_transformers_ranges():
    inside = {"trl": "1.16.0", "transformers": "5.17.0"}
    assert_refusal("dpo_trainer", inside, {"trl": "1.17.0"})
    assert_refusal("dpo_trainer", inside, {"transformers": "5.26.0"})
    # the bounds, a local build and a pre-release of the next release
    patches.require("dpo_trainer", {"trl": "1.16.9", "transformers": "5.25.99+cu130"})
    with pytest.raises(patches.UnsupportedLibraryError, match="transformers 5.16.2"):
        patches.require("dpo_trainer", {"transformers": "5.16.2"})
    with pytest.raises(patches.UnsupportedLibraryError, match=r"transformers 5\.26\.0rc1"):
        patches.require("dpo_trainer", {"transformers": "5.26.0rc1"})


def test_reference_log_probs_cache_is_off_outside_trl_1_16(caplog):
    assert_guard(caplog, "reference_log_probs_cache", {"trl": "1.16.0"}, {"trl": "1.17.0"})


def test_resume_at_max_steps_is_off_outside_transformers_range(caplog):
    assert_guard(caplog, "resume_at_max_steps", {"transformers": "5.25.0"}, {"transformers": "5.26.0"})


def test_rank_local_step_metrics_are_off_outside_trl_1_16(caplog):
    assert_guard(caplog, "rank_local_step_metrics", {"trl": "1.16.2"}, {"trl": "1.15.0"})


def test_batch_size_probe_is_off_outside_trl_or_transformers_range(caplog):
    inside = {"trl": "1.16.0", "transformers": "5.17.0"}
    assert_guard(caplog, "batch_size_probe", inside, {"trl": "2.0.0", "transformers": "6.0.0"})


def test_adapter_input_casts_are_left_to_peft_outside_its_range(caplog):
    """Given a real LoRA model, as the trainer is: the layers change only inside the range."""
    from peft import LoraConfig, get_peft_model
    from peft.tuners.tuners_utils import BaseTunerLayer
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from edu_bias_pipeline.dpo.model import skip_adapter_input_casts

    assert_guard(caplog, "adapter_input_casts", {"peft": "0.21.0"}, {"peft": "0.22.0"})
    config = Qwen2Config(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )

    def lora_layers(installed):
        model = get_peft_model(Qwen2ForCausalLM(config), LoraConfig(r=2, target_modules="all-linear"))
        return skip_adapter_input_casts(model, installed), [
            m.cast_input_dtype_enabled for m in model.modules() if isinstance(m, BaseTunerLayer)
        ]

    changed, casting = lora_layers({"peft": "0.21.2"})
    assert changed == len(casting) > 0 and not any(casting)
    changed, casting = lora_layers({"peft": "0.22.0"})
    assert changed == 0 and all(casting)


def test_zero2_foreach_grad_norm_is_off_outside_deepspeed_0_19_8(caplog):
    assert_guard(caplog, "zero2_foreach_grad_norm", {"deepspeed": "0.19.8"}, {"deepspeed": "0.19.9"})


def test_shared_prompt_cache_is_off_outside_transformers_range(caplog):
    assert_guard(caplog, "shared_prompt_cache", {"transformers": "5.17.0"}, {"transformers": "5.16.0"})


def test_atomic_saves_are_refused_outside_kedro_and_kedro_datasets_ranges():
    inside = {"kedro": "1.7.0", "kedro-datasets": "9.6.0"}
    assert_refusal("atomic_saves", inside, {"kedro": "1.8.0"})
    assert_refusal("atomic_saves", inside, {"kedro-datasets": "10.0.0"})


def test_stale_output_paths_are_off_outside_kedro_datasets_range(caplog):
    assert_guard(caplog, "stale_output_paths", {"kedro-datasets": "9.6.1"}, {"kedro-datasets": "9.7.0"})


def test_a_library_that_is_not_installed_is_outside_every_range():
    patch = patches.Patch("demo", {"no-such-distribution-xyz": ">=1,<2"}, "Demo changes nothing", "no-op")
    assert patches.mismatches(patch) == [
        "no-such-distribution-xyz (not installed) (checked: no-such-distribution-xyz>=1,<2)"
    ]
