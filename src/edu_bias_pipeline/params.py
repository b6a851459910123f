"""Typed stage parameters: one readable error for every problem pydantic finds."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def validate_params(model: type[M], params: M | dict[str, Any] | None, stage: str, hint: str) -> M:
    """Kedro hands nodes a validated model (typed parameter); direct callers may pass the raw dict."""
    if isinstance(params, model):
        return params
    try:
        return model.model_validate(params or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']} (got {err.get('input')!r})"
            for err in exc.errors()
        )
        raise ValueError(f"Invalid {stage} parameters in {hint}: {problems}") from None
