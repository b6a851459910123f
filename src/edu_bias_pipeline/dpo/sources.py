"""Where each resolved training setting came from: base, the run's environment, `--params`, an env var.

Kedro hands the node one merged `training:` dict; this module tells the layers apart again, for the run log,
by reading the same parameter files the config loader read (conf/base/ and the run's environment) and the
runtime params. A value no layer sets is the `TrainingConfig` default. Labels only: values always come from
the resolved config.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from omegaconf import OmegaConf

from edu_bias_pipeline.dpo.config import ENV_OVERRIDES, SETTINGS_GROUPS, TrainingConfig
from edu_bias_pipeline.hooks import config_files

logger = logging.getLogger(__name__)

RESOLVE_NODE = "resolve_training_config"
DEFAULT = "default"
PARAMS = "--params"


def flatten(values: Mapping[str, Any] | None) -> dict[str, Any]:
    """`{"deepspeed": {"zero_stage": 3}}` → `{"deepspeed.zero_stage": 3}`; nulls (unset) are left out.

    Only the settings groups are opened: other dict values (`extra_training_args`) are one setting."""
    flat: dict[str, Any] = {}
    for key, value in (values or {}).items():
        if key in SETTINGS_GROUPS and isinstance(value, Mapping):
            flat.update({f"{key}.{k}": v for k, v in value.items() if v is not None})
        elif value is not None:
            flat[str(key)] = value
    return flat


def setting_sources(
    config: TrainingConfig,
    *,
    base: Mapping[str, Any] | None,
    env_name: str | None,
    env: Mapping[str, Any] | None,
    runtime: Mapping[str, Any] | None,
    environ: Mapping[str, str],
    env_replaces_base: bool = True,
) -> dict[str, str]:
    """Setting name (`deepspeed.zero_stage` inside a group) → the layer its resolved value came from.

    `base`, `env` and `runtime` are the `training:` blocks of conf/base, of the run's environment and of
    `--params`. With Kedro's default (destructive) merge an environment's `training:` replaces the base's."""
    layers: list[tuple[str, dict[str, Any]]] = []
    if not (env_replaces_base and env is not None):
        layers.append(("conf/base", flatten(base)))
    if env is not None:
        layers.append((f"conf/{env_name}", flatten(env)))
    layers.append((PARAMS, flatten(runtime)))
    overridden = {
        field: f"env var {var}"
        for var, field in ENV_OVERRIDES.items()
        if (environ.get(var) or "").strip() != ""
    }
    sources = {}
    for name in flatten(config.model_dump()):
        source = DEFAULT
        for label, flat in layers:
            if name in flat:
                source = label
        sources[name] = overridden.get(name, source)
    return sources


def describe_settings(config: TrainingConfig, sources: Mapping[str, str]) -> str:
    """One line per setting, `name = value  (source)`, in the order of `TrainingConfig`."""
    values = flatten(config.model_dump(mode="json"))
    width = max(len(name) for name in values)
    lines = [f"  {name:<{width}} = {values[name]!r}  ({sources.get(name, DEFAULT)})" for name in values]
    return "training settings (value, and where it came from):\n" + "\n".join(lines)


def _training_block(files: Iterable[Path]) -> dict[str, Any] | None:
    """The `training:` block of a set of parameter files, uninterpolated (only the key names are used)."""
    block = None
    for path in sorted(files):
        loaded = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        if isinstance(loaded, dict) and isinstance(loaded.get("training"), dict):
            block = {**(block or {}), **loaded["training"]}
    return block


class TrainingSettingsHook:
    """Logs the resolved training settings, each with its source, once `resolve_training_config` has run."""

    def __init__(self) -> None:
        self._layers: dict[str, Any] | None = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        loader = context.config_loader
        root = Path(str(loader.conf_source))
        patterns = loader.config_patterns["parameters"]
        run_env = loader.env or loader.default_run_env

        def block(env: str | None) -> dict[str, Any] | None:
            env_dir = root / env if env else None
            if env_dir is None or not env_dir.is_dir():
                return None
            return _training_block(config_files(env_dir, patterns))

        env_block = block(run_env) if run_env and run_env != loader.base_env else None
        self._layers = {
            "base": block(loader.base_env),
            "env_name": run_env,
            "env": env_block,
            "runtime": (getattr(loader, "runtime_params", None) or {}).get("training"),
            "env_replaces_base": getattr(loader, "merge_strategy", {}).get("parameters", "destructive")
            == "destructive",
        }

    @hook_impl
    def after_node_run(self, node: Any, outputs: dict[str, Any]) -> None:
        if node.name != RESOLVE_NODE or self._layers is None:
            return
        config = next((v for v in outputs.values() if isinstance(v, TrainingConfig)), None)
        if config is None:
            return
        sources = setting_sources(config, environ=os.environ, **self._layers)
        logger.info(describe_settings(config, sources))
