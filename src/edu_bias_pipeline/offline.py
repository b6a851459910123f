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
# Names this module set (rather than the user), so a later choice can tell a default from a decision.
DEFAULTED_MARKER = "EDU_BIAS_OFFLINE_DEFAULTED"


def _setdefault(key: str, value: str) -> None:
    if key not in os.environ:
        os.environ[key] = value
        names = set(filter(None, os.environ.get(DEFAULTED_MARKER, "").split(",")))
        os.environ[DEFAULTED_MARKER] = ",".join(sorted(names | {key}))


def apply_offline_defaults() -> None:
    for key, value in OFFLINE_DEFAULTS.items():
        _setdefault(key, value)
    # wandb stays offline unless the user brought a key (env or conf/local/credentials.yml, see training).
    if not os.environ.get("WANDB_API_KEY"):
        _setdefault("WANDB_MODE", "offline")


def is_default(key: str, environ: dict[str, str] | None = None) -> bool:
    """True when `key` holds the value apply_offline_defaults put there, not one the user exported."""
    env = os.environ if environ is None else environ
    return key in env.get(DEFAULTED_MARKER, "").split(",")
