"""DPO training stage: `kedro run --pipelines training`."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
