"""Run-time checks of what the user typed: `--params` names and `--pipelines` names.

Kedro merges `--params data_spliting.seed=7` into the parameters as a new top-level group that no node
reads, so a misspelling runs the default silently. A misspelt `--pipelines` name surfaces as an ImportError
from pipeline discovery. Both fail here with the valid names and the nearest one.

Nested misspellings under a stage's group (`--params data_splitting.sed=7`) are caught by the stage's
pydantic config (extra="forbid"); the free-form `taxonomy` table takes new keys on purpose (a new category).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from importlib.resources import files
from pathlib import Path
from typing import Any

import click
from kedro.framework.hooks import hook_impl
from omegaconf import OmegaConf

from edu_bias_pipeline.pairs import nearest

logger = logging.getLogger(__name__)

CONFIG_SUFFIXES = (".yml", ".yaml", ".json")
# `${runtime_params:raw_pairs_path,default}` in any config file makes `raw_pairs_path` a valid --params name.
RUNTIME_PARAMS_REF = re.compile(r"\$\{\s*runtime_params:\s*([^,}\s]+)")


class UnknownNameError(click.ClickException, ValueError):
    """A --params group or --pipelines name that the project does not define.

    A click exception, so `kedro run` prints the message alone (no traceback) and exits with 1."""


def _named(name: str, valid: Iterable[str]) -> str:
    close = nearest(name, valid)
    return f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name)


def check_pipeline_names(requested: Iterable[str] | None, available: Iterable[str]) -> None:
    """Fails on a requested pipeline that `available` lacks, listing the valid names."""
    valid = sorted(set(available))
    for name in requested or ():
        if name not in valid:
            raise UnknownNameError(
                f"Unknown pipeline {_named(name, valid)} in --pipelines. "
                f"The pipelines are: {', '.join(valid)}."
            )


def check_requested_pipelines() -> None:
    """For pipeline_registry: Kedro 1.7 imports only the pipelines named by --pipelines (or `kedro registry
    describe`), and a name with no package behind it fails discovery with a bare ImportError."""
    from kedro.framework.project import pipelines as project_pipelines

    requested = getattr(project_pipelines, "_requested_pipelines", None)
    # The rule find_pipelines discovers stage packages by.
    stages = [
        entry.name
        for entry in files("edu_bias_pipeline.pipelines").iterdir()
        if entry.is_dir() and not entry.name.startswith((".", "__"))
    ]
    check_pipeline_names(requested, [*stages, "__default__"])


def _env_dirs(config_loader: Any) -> list[Path]:
    root = Path(str(config_loader.conf_source))
    run_env = config_loader.env or config_loader.default_run_env
    envs = dict.fromkeys(e for e in (config_loader.base_env, run_env) if e)
    return [root / env for env in envs if (root / env).is_dir()]


def config_files(env_dir: Path, patterns: Iterable[str]) -> set[Path]:
    """The files Kedro's glob patterns select (pathlib's `dir/**` yields the folder: its files are added)."""
    matched = [path for pattern in patterns for path in env_dir.glob(pattern)]
    files = {p for path in matched for p in (path.rglob("*") if path.is_dir() else [path])}
    return {
        path
        for path in files
        if path.is_file() and path.suffix in CONFIG_SUFFIXES and not path.name.startswith(".")
    }


def valid_param_names(config_loader: Any) -> set[str] | None:
    """Top-level parameter names in the project's parameter files plus the `runtime_params:` names its
    config files reference; None when the config is not a local directory (packaged conf archive)."""
    env_dirs = _env_dirs(config_loader)
    if not env_dirs:
        return None
    names: set[str] = set()
    for env_dir in env_dirs:
        for path in config_files(env_dir, config_loader.config_patterns["parameters"]):
            loaded = OmegaConf.load(path)
            if OmegaConf.is_dict(loaded):
                names.update(str(key) for key in loaded)
        patterns = config_loader.config_patterns
        referencing = [*patterns["catalog"], *patterns["parameters"]]
        for path in config_files(env_dir, referencing):
            text = path.read_text(encoding="utf-8", errors="replace")
            names.update(ref.split(".")[0] for ref in RUNTIME_PARAMS_REF.findall(text))
    return names


def check_runtime_params(runtime_params: dict[str, Any] | None, valid: set[str]) -> None:
    unknown = sorted(set(runtime_params or {}) - valid)
    if unknown:
        raise UnknownNameError(
            f"Unknown parameter group {', '.join(_named(name, valid) for name in unknown)} in --params: "
            "no parameter file defines it, so the run would ignore it. "
            f"Valid top-level names: {', '.join(sorted(valid))}. "
            "Stage settings are nested: --params data_splitting.seed=7."
        )


class ParameterNamesHook:
    """Fails the run before anything is loaded when a --params top-level name is not a parameter group."""

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        loader = context.config_loader
        runtime_params = getattr(loader, "runtime_params", None)
        if not runtime_params:
            return
        valid = valid_param_names(loader)
        if valid is None:
            logger.debug("Config %s is not a directory: --params names not checked", loader.conf_source)
            return
        check_runtime_params(runtime_params, valid)
