"""The wandb API key from Kedro credentials (`conf/local/credentials.yml`, key `wandb.api_key`).

A key exported as WANDB_API_KEY reaches the training process through its inherited environment; a key in
the credentials file is picked up by `TrainingCredentialsHook` (register it in settings.py `HOOKS`) and
handed to the launched process's environment only. It is never logged or written to disk.
"""

from __future__ import annotations

from typing import Any

from kedro.framework.hooks import hook_impl

_wandb_api_key: str | None = None


def set_wandb_api_key(key: str | None) -> None:
    global _wandb_api_key
    _wandb_api_key = key or None


def wandb_api_key() -> str | None:
    """The key from Kedro credentials, if any (the env var is inherited by the child on its own)."""
    return _wandb_api_key


class TrainingCredentialsHook:
    """Reads `wandb.api_key` from the credentials Kedro loaded for this run."""

    @hook_impl
    def after_catalog_created(self, conf_creds: dict[str, Any] | None) -> None:
        creds = (conf_creds or {}).get("wandb") or {}
        set_wandb_api_key(creds.get("api_key") if isinstance(creds, dict) else None)
