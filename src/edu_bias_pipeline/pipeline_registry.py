"""Project pipelines: one per stage, and `__default__` runs them all in data-flow order."""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from edu_bias_pipeline.hooks import check_requested_pipelines
from edu_bias_pipeline.pipelines import evaluation

# data_import is opt-in: it needs a downloaded benchmark, so the default run leaves it out.
DEFAULT_STAGES = ("data_validation", "data_splitting", "training", "evaluation")


def register_pipelines() -> dict[str, Pipeline]:
    check_requested_pipelines()  # a misspelt --pipelines name gets the list of names, not an ImportError
    pipelines = find_pipelines(raise_errors=True)
    # Training writes the model from a launched process, so no Kedro dataset links it to evaluation;
    # in the full run evaluation waits for training's `trained_model` record (and so for the split).
    # Kedro 1.7 loads only the requested pipelines for `kedro run --pipelines NAME`: others may be absent.
    stages = dict(pipelines)
    if "evaluation" in stages:
        stages["evaluation"] = evaluation.create_pipeline(after=["trained_model"])
    pipelines["__default__"] = sum((stages[name] for name in DEFAULT_STAGES if name in stages), Pipeline([]))
    return pipelines
