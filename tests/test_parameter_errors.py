"""A bad parameter reads the same in every stage: its path, the problem (the nearest valid key of a misspelt
one, or the allowed values), the bad value and where it was set. Real Kedro sessions in a project copy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import run_pipeline

from edu_bias_pipeline.params import ParameterError

# stage -> (its group in --params with one misspelt key, the line the error must hold)
MISSPELT: dict[str, tuple[dict[str, Any], str]] = {
    "data_import": (
        {"cbbq": {"pth": "CBBQ/data"}},
        "data_import.cbbq.pth: unknown key; did you mean 'path'? (got 'CBBQ/data'; from --params)",
    ),
    "data_validation": (
        {"max_eror_rate": 0.5},
        "data_validation.max_eror_rate: unknown key; did you mean 'max_error_rate'? (got 0.5; from --params)",
    ),
    "data_splitting": (
        {"ratios": {"trian": 0.8}},
        "data_splitting.ratios.trian: unknown key; did you mean 'train'? (got 0.8; from --params)",
    ),
    "evaluation": (
        {"bta": 0.1},
        "evaluation.bta: unknown key; did you mean 'beta'? (got 0.1; from --params)",
    ),
    # Training validates in its first node, where the layers are not told apart: the line says where the
    # value can come from (the run log lists each resolved training setting with its layer).
    "training": (
        {"lerning_rate": 0.1},
        "training.lerning_rate: unknown key; did you mean 'learning_rate'? "
        "(got 0.1; from parameters_training.yml or --params training.lerning_rate=...)",
    ),
}


@pytest.mark.parametrize("stage", sorted(MISSPELT))
def test_a_misspelt_key_names_the_path_the_nearest_key_the_value_and_where_it_was_set(
    project: Path, stage: str
) -> None:
    group, line = MISSPELT[stage]
    with pytest.raises(ValueError) as failure:
        run_pipeline(project, stage, params={stage: group})
    message = str(failure.value)
    assert message.startswith(f"invalid {stage} parameters:\n"), message
    assert f"\n  {line}" in message, message
    assert not [p for p in (project / "data").rglob("*") if p.is_file() and "01_raw" not in p.parts]


def _set_in_file(project: Path, env: str, stage: str, values: dict[str, Any]) -> str:
    path = project / "conf" / env / f"parameters_{stage}.yml"
    params = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {stage: {}}
    params[stage].update(values)
    path.write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    return f"conf/{env}/parameters_{stage}.yml"


def test_a_bad_value_in_a_parameter_file_names_the_file_and_the_allowed_values(project: Path) -> None:
    where = _set_in_file(project, "base", "data_splitting", {"balancing": "down", "sed": 7})
    with pytest.raises(ParameterError) as failure:
        run_pipeline(project, "data_splitting", params={"data_splitting": {"ratios": {"train": 1.5}}})
    assert str(failure.value).splitlines() == [
        "invalid data_splitting parameters:",
        "  data_splitting.ratios.train: Input should be less than or equal to 1 (got 1.5; from --params)",
        "  data_splitting.balancing: Input should be 'none', 'downsample', 'upsample' or 'weights' "
        f"(got 'down'; from {where})",
        f"  data_splitting.sed: unknown key; did you mean 'seed'? (got 7; from {where})",
    ]


def test_the_run_environment_is_named_when_it_set_the_value(project: Path) -> None:
    where = _set_in_file(project, "local", "data_validation", {"severity": {"truncated_text": "warn"}})
    with pytest.raises(ParameterError) as failure:
        run_pipeline(project, "data_validation")
    assert (
        "  data_validation.severity.truncated_text: Input should be 'error', 'warning' or 'off' "
        f"(got 'warn'; from {where})"
    ) in str(failure.value)
