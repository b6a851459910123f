# Quick start: `make run` (whole pipeline on the embedded defaults) and `make test`.
# Both create .venv on first use. torch is installed first from its pinned CPU build: installed later,
# as a dependency of trl/deepspeed, pip would pull a multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0

export KEDRO_DISABLE_TELEMETRY := 1
export DO_NOT_TRACK := 1
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# DVC analytics are off in the project's committed .dvc/config (core.analytics = false); nothing here writes
# the user's global DVC config.
# wandb: offline unless a key is set (environment or conf/local/credentials.yml); decided in
# src/edu_bias_pipeline/offline.py and the training launcher, not here.

.PHONY: run test test-fast venv lint viz clean-outputs

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev,viz]"
	touch $@

venv: $(BIN)/.installed

run: venv
	$(BIN)/kedro run

# The whole suite, slow end-to-end tests (DeepSpeed, DVC repro) included: this is what CI runs.
test: venv
	$(BIN)/python -m pytest -q

# Inner loop: everything but the tests marked slow.
test-fast: venv
	$(BIN)/python -m pytest -m "not slow" -q

lint: venv
	$(BIN)/ruff check src tests benchmarks

# The Kedro-Viz site of every pipeline, offline, in build/viz/ (docs/viz.md); runs no node, reads no data.
viz: venv
	$(BIN)/python -m edu_bias_pipeline.viz_site

clean-outputs:
	find data/02_intermediate data/05_model_input data/06_models data/08_reporting -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
