"""The project's Kedro context (settings.CONTEXT_CLASS): Kedro's, with bad parameters reported in the
project's one format (`params.format_validation_error`), naming where each bad value was set."""

from __future__ import annotations

from typing import Any

from kedro.framework.context import KedroContext

from edu_bias_pipeline.params import validate_in_scope


class ProjectContext(KedroContext):
    @property
    def params(self) -> dict[str, Any]:
        """Kedro's validated parameters; a stage model that rejects its group raises `ParameterError`."""
        return validate_in_scope(self.config_loader, lambda: KedroContext.params.fget(self))
