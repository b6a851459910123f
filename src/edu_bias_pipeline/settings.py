"""Project settings. https://docs.kedro.org/en/stable/kedro_project_setup/settings.html"""

from kedro.config import OmegaConfigLoader

from edu_bias_pipeline.context import ProjectContext
from edu_bias_pipeline.dpo.credentials import TrainingCredentialsHook
from edu_bias_pipeline.dpo.sources import TrainingSettingsHook
from edu_bias_pipeline.hooks import ParameterNamesHook
from edu_bias_pipeline.offline import apply_offline_defaults
from edu_bias_pipeline.stale_outputs import StaleOutputsHook

apply_offline_defaults()

# Hands `wandb.api_key` from conf/local/credentials.yml to the launched training process (never logged);
# fails a run whose --params names a parameter group the project does not have; logs each resolved training
# setting with the layer it came from (base, environment, --params, env var); removes, when a run fails, the
# outputs it did not write (an earlier run's, which the next stage would take as this run's).
HOOKS = (TrainingCredentialsHook(), ParameterNamesHook(), TrainingSettingsHook(), StaleOutputsHook())

# kedro-viz (the `viz` extra) registers run hooks in every session it is installed into: they write dataset
# statistics and run events to .viz/ in the project root for its run-status view. `kedro viz` shows the
# pipeline structure without them, and a run writes only its catalog outputs.
DISABLE_HOOKS_FOR_PLUGINS = ("kedro-viz",)

# Reports a stage's bad parameters in the project's one format, naming where each was set (params.py).
CONTEXT_CLASS = ProjectContext

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}
