"""Project pipelines: one per stage, and `__default__` runs them all in data-flow order."""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from edu_bias_pipeline.hooks import check_requested_pipelines

# data_import is opt-in: it needs a downloaded benchmark, so the default run leaves it out.
DEFAULT_STAGES = ("data_validation", "data_splitting", "training", "evaluation")


def register_pipelines() -> dict[str, Pipeline]:
    check_requested_pipelines()  # a misspelt --pipelines name gets the list of names, not an ImportError
    pipelines = find_pipelines(raise_errors=True)
    # Stages are linked by catalog datasets (evaluation reads training's `trained_model`), so Kedro orders
    # the nodes of any combination. Kedro 1.7 loads only the requested pipelines for
    # `kedro run --pipelines NAME`: others may be absent.
    pipelines["__default__"] = sum(
        (pipelines[name] for name in DEFAULT_STAGES if name in pipelines), Pipeline([])
    )
    return pipelines
