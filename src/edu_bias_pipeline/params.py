"""Typed stage parameters: one config model per stage, validated once, and one error format for all of them.

Every stage's parameter group (`data_import:`, `data_validation:`, ...) is a `StageConfig` model with
extra="forbid". A node that annotates its parameter with the model gets it validated by Kedro when the run
starts, before any node runs; `StageConfig.parse` validates a plain dict for callers outside Kedro. Either
way a bad parameter reads the same, one line per problem, naming the parameter path, the problem (the
allowed values, or the nearest valid key of a misspelt one), the bad value and where it was set:

    invalid data_splitting parameters:
      data_splitting.sed: unknown key; did you mean 'seed'? (got 7; from --params)

`ProjectContext` (settings.CONTEXT_CLASS) tells `--params` and the parameter files apart for that last part,
and turns Kedro's validation failure into a `ParameterError`, which `kedro run` prints without a traceback.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, TypeVar, get_args

import click
from kedro.validation.exceptions import ParameterValidationError
from pydantic import BaseModel, ConfigDict, ValidationError

from edu_bias_pipeline.pairs import nearest

DEFAULT = "default"
RUNTIME = "--params"
_PREFIXES = ("Value error, ", "Assertion failed, ")
_MAX_VALUE_CHARS = 80


class ParameterError(click.ClickException, ParameterValidationError, ValueError):
    """Parameters that do not validate, every problem listed. `kedro run` prints it alone and exits with 1."""


class ParameterOrigins:
    """Where a run's parameter was set: `--params`, a parameter file of the run's environment or of
    conf/base, or nowhere (the model's default). Reads the files the config loader read, on first use."""

    def __init__(self, config_loader: Any) -> None:
        self._loader = config_loader

    @cached_property
    def _layers(self) -> list[tuple[str, list[tuple[str, Mapping[str, Any]]]]]:
        """(environment, [(file label, its content)]) with the environment that wins first."""
        # Imported on first use: the launched training process imports this module for the formatter alone.
        from omegaconf import OmegaConf

        from edu_bias_pipeline.hooks import config_files

        loader = self._loader
        root = Path(str(loader.conf_source))
        run_env = loader.env or loader.default_run_env
        layers = []
        for env in dict.fromkeys(e for e in (run_env, loader.base_env) if e):
            if not (root / env).is_dir():
                continue
            files = []
            for path in sorted(config_files(root / env, loader.config_patterns["parameters"])):
                content = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
                if isinstance(content, Mapping):
                    files.append((f"{root.name}/{path.relative_to(root).as_posix()}", content))
            layers.append((env, files))
        return layers

    def __call__(self, path: Sequence[str]) -> str:
        if _holds(getattr(self._loader, "runtime_params", None) or {}, path):
            return RUNTIME
        replaces = (
            getattr(self._loader, "merge_strategy", {}).get("parameters", "destructive") == "destructive"
        )
        for _env, files in self._layers:
            for label, content in files:
                if _holds(content, path):
                    return label
            # Kedro's default merge: a group the winning environment defines replaces the base's whole group.
            if replaces and any(path[0] in content for _, content in files):
                break
        return DEFAULT


def _holds(tree: Mapping[str, Any], path: Sequence[str]) -> bool:
    for part in path:
        if not isinstance(tree, Mapping) or part not in tree:
            return False
        tree = tree[part]
    return True


class _Scope:
    """What the validation of one Kedro run shares: where parameters came from, the errors raised."""

    def __init__(self, origins: ParameterOrigins | None) -> None:
        self.origins = origins
        self.raised: list[ParameterError] = []


_SCOPE: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar(
    "edu_bias_parameter_scope", default=None
)


def _model_at(model: type[BaseModel] | None, loc: Sequence[Any]) -> type[BaseModel] | None:
    """The settings model holding the field at `loc` (None where `loc` leaves the models: dicts, lists)."""
    for part in loc:
        field = model.model_fields.get(str(part)) if model else None
        model = _submodel(field.annotation) if field else None
    return model


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):  # `Model | None`
        found = _submodel(arg)
        if found:
            return found
    return None


def _problem(err: Mapping[str, Any], model: type[BaseModel], moved: Mapping[str, str]) -> str:
    loc = tuple(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        if len(loc) == 1 and loc[0] in moved:
            return moved[loc[0]]
        parent = _model_at(model, loc[:-1])
        if parent is None:
            return "unknown key"
        valid = list(parent.model_fields)
        close = nearest(loc[-1], valid)
        return (
            f"unknown key; did you mean {close[0]!r}?"
            if close
            else f"unknown key; valid keys: {', '.join(valid)}"
        )
    msg = str(err["msg"])
    for prefix in _PREFIXES:
        msg = msg.removeprefix(prefix)
    return msg


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


def format_validation_error(
    exc: ValidationError,
    model: type[BaseModel],
    stage: str,
    moved: Mapping[str, str] | None = None,
    set_by: Mapping[str, str] | None = None,
) -> str:
    """pydantic's report on `stage`'s parameters, one line per problem: `stage.path: problem (got value;
    from where)`. `moved` maps keys that no longer exist to what replaces them; `set_by` maps a key (path
    below the stage) to where the caller set it, when that is not a parameter file (an env var)."""
    scope = _SCOPE.get()
    origins = scope.origins if scope else None
    lines = []
    for err in exc.errors():
        loc = [stage, *(str(p) for p in err["loc"])]
        path = ".".join(loc)
        problem = _problem(err, model, moved or {})
        named = problem if problem.startswith(path) else f"{path}: {problem}"
        if len(loc) == 1:  # a check across fields: its message names them
            lines.append(f"  {named}")
            continue
        origin = (set_by or {}).get(".".join(loc[1:]))
        if origin is None:
            origin = origins(loc) if origins else f"parameters_{stage}.yml or --params {path}=..."
        value = err.get("input")
        got = "" if isinstance(value, Mapping) else f"got {_shown(value)}; "
        lines.append(f"  {named} ({got}from {origin})")
    return f"invalid {stage} parameters:\n" + "\n".join(lines)


C = TypeVar("C", bound="StageConfig")


class StageConfig(BaseModel):
    """Base of every stage's parameter model: unknown keys fail, and so does validation, in one format."""

    model_config = ConfigDict(extra="forbid")

    # The parameter group the model validates (`data_splitting`), named in every error.
    stage: ClassVar[str]
    # Keys of earlier releases: key -> what replaces it, said instead of "unknown key".
    moved_keys: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def model_validate(cls: type[C], obj: Any, *args: Any, **kwargs: Any) -> C:
        """pydantic's validation, raising `ParameterError` in the project's format (Kedro calls this)."""
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as exc:
            error = ParameterError(format_validation_error(exc, cls, cls.stage, cls.moved_keys))
            scope = _SCOPE.get()
            if scope is not None:
                scope.raised.append(error)
            raise error from None

    @classmethod
    def parse(cls: type[C], params: C | Mapping[str, Any] | None) -> C:
        """The model Kedro validated, as is; a plain dict (direct callers, tests) validated here."""
        if isinstance(params, cls):
            return params
        return cls.model_validate(params or {})


def validate_in_scope(config_loader: Any, validate: Any) -> Any:
    """Runs Kedro's parameter validation `validate()` with the run's parameter origins at hand; its failure
    becomes one `ParameterError` listing every stage's problems in the project's format."""
    scope = _Scope(ParameterOrigins(config_loader))
    token = _SCOPE.set(scope)
    try:
        return validate()
    except ParameterValidationError as exc:
        if isinstance(exc, ParameterError):
            raise
        messages = [error.message for error in scope.raised] or [str(exc)]
        raise ParameterError("\n".join(messages)) from None
    finally:
        _SCOPE.reset(token)
