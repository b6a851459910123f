"""A wandb key from conf/local/credentials.yml reaches the training process and nothing else."""

from __future__ import annotations

import pytest
from conftest import run_pipeline
from training_fixtures import SHORT_RUN, write_splits

SECRET = "edu-bias-test-secret-5f3a9c17"


@pytest.mark.slow
def test_wandb_key_from_credentials_is_never_logged_or_written(project, monkeypatch, caplog, capfd):
    (project / "conf/local/credentials.yml").write_text(f"wandb:\n  api_key: {SECRET}\n", encoding="utf-8")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    # The user chose offline (no tracking server here), so the key must not switch wandb online.
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("EDU_BIAS_OFFLINE_DEFAULTED", "")
    write_splits(project, limit=40)

    run_pipeline(project, "training", params={"training": {**SHORT_RUN, "report_to": "wandb"}})

    assert list((project / "data/06_models/dpo_model/wandb").glob("offline-run-*"))
    written = [p for p in project.rglob("*") if p.is_file() and "conf" not in p.relative_to(project).parts]
    assert len(written) > 10
    leaked = [str(p) for p in written if SECRET.encode() in p.read_bytes()]
    assert leaked == []
    out, err = capfd.readouterr()
    assert SECRET not in caplog.text and SECRET not in out and SECRET not in err
