"""Offline-by-default environment.

The embedded defaults must run on a machine with no model hub and no tracking server, so these are set
before any stage imports transformers or wandb. `setdefault` keeps whatever the user exported.
"""

import os

OFFLINE_DEFAULTS = {
    "KEDRO_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def apply_offline_defaults() -> None:
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
    # wandb stays offline unless the user brought a key (env or conf/local/credentials.yml, see training).
    if not os.environ.get("WANDB_API_KEY"):
        os.environ.setdefault("WANDB_MODE", "offline")
