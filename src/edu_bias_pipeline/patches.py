"""Every place the project relies on a library's private internals, and the releases it was checked against.

Each `Patch` names what it changes, the libraries (distribution names) and the version ranges it was
checked on, and what happens outside them. `pyproject.toml` pins the same ranges (a test keeps the two
equal), so outside them means someone installed other releases on purpose. Then the guard decides:

- `applies(name)`: inside the range True; outside, False and a warning naming the library, the installed
  version and the checked range, and the caller keeps the library's own behaviour.
- `require(name)`: for a patch the project cannot do without (its fallback would give wrong numbers or
  half-written files), raises `UnsupportedLibraryError` outside the range instead, before any work starts.

Both take `installed` ({distribution: version}) to judge other versions than those installed; without it
they read the installed versions once per process and warn once per patch.

Kept free of heavy imports: the Kedro process and the datasets import it.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import click
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

logger = logging.getLogger(__name__)

TRL = {"trl": ">=1.16,<1.17"}
TRANSFORMERS = {"transformers": ">=5.17,<5.26"}


@dataclass(frozen=True)
class Patch:
    name: str
    checked: Mapping[str, str]  # distribution -> the version range this patch was checked against
    what: str  # what it changes in which library's internals
    without: str  # outside the range: the library's own behaviour that runs, or why the run is refused
    required: bool = False  # True: refused outside the range (`require`), never silently left out


PATCHES = {
    patch.name: patch
    for patch in (
        # refused: without them metrics, sample weights and DeepSpeed's reference log-probs would be wrong
        Patch(
            "dpo_trainer",
            {**TRL, **TRANSFORMERS},
            "EduBiasDPOTrainer overrides TRL's `log` (reading its private `_metrics` buffer) and `evaluate`, "
            "and transformers' private `_prepare_inputs`, `_get_train_sampler` and `_get_eval_sampler`",
            "the training stage's trainer cannot run without these overrides",
            required=True,
        ),
        # off: TRL's own reference pass gives the same values, only not kept for later runs
        Patch(
            "reference_log_probs_cache",
            TRL,
            "EduBiasDPOTrainer wraps TRL's private `_precompute_ref_logps` to keep the reference log-probs "
            "across runs, keyed with TRL's `_precompute_model_hash` (training.reference_cache_dir)",
            "TRL computes the reference log-probs itself and keeps them for this run only",
        ),
        # off: the extra step is transformers' documented behaviour, and the warning says so
        Patch(
            "resume_at_max_steps",
            TRANSFORMERS,
            "EduBiasDPOTrainer overrides transformers' private `Trainer._run_epoch` so that a run resumed "
            "from a checkpoint at max_steps trains no further step",
            "transformers' own loop runs: a run resumed at max_steps trains one more step",
        ),
        # off: TRL's gathers give the same loss and metrics, only slower
        Patch(
            "rank_local_step_metrics",
            TRL,
            "EduBiasDPOTrainer.compute_loss makes the accelerator's gathers inside TRL's private "
            "`_compute_loss` return this rank's values (training.gather_step_metrics: false)",
            "TRL gathers its step metrics across the ranks in every micro-batch",
        ),
        # off: the configured batch is what the user asked for; at worst it runs out of memory, loudly
        Patch(
            "batch_size_probe",
            {**TRL, **TRANSFORMERS},
            "training.batch_size.fit_batch_size calls the Trainer's private `_prepare_inputs` and "
            "`_remove_unused_columns`, sets `_train_batch_size` and clears TRL's `_metrics` and "
            "`_total_train_tokens` (training.probe_batch_size)",
            "no probe: training runs at the configured per_device_train_batch_size",
        ),
        # off: PEFT's casts give the same values, only slower
        Patch(
            "adapter_input_casts",
            {"peft": ">=0.21,<0.22"},
            "The trainer sets PEFT's `BaseTunerLayer.cast_input_dtype_enabled` to False on every LoRA layer "
            "of a bf16/fp16 run, for the trainer's whole life",
            "PEFT casts each adapter's input to float32 and back (same values, slower)",
        ),
        # off: DeepSpeed's norm is the same norm summed in another order
        Patch(
            "zero2_foreach_grad_norm",
            {"deepspeed": "==0.19.8"},
            "training.zero_grad_norm replaces `DeepSpeedZeroOptimizer.get_grad_norm_direct` on the run's "
            "ZeRO-1/2 optimizer (deepspeed.foreach_grad_norm)",
            "DeepSpeed's own gradient norm runs",
        ),
        # off: the plain forward pass gives the same log-probs, only slower
        Patch(
            "shared_prompt_cache",
            TRANSFORMERS,
            "Scoring runs a prompt shared by a batch once and repeats its key/value cache over the batch by "
            "replacing the per-layer `keys` / `values` tensors of transformers' Cache",
            "scoring takes the plain padded forward pass (the same numbers, slower)",
        ),
        # refused: every output must be complete or absent, and saving in place is neither when killed
        Patch(
            "atomic_saves",
            {"kedro": ">=1.7,<1.8", "kedro-datasets": ">=9.6,<9.7"},
            "AtomicSaveMixin redirects a kedro-datasets file dataset's private `_get_save_path` to a "
            "temporary file that is renamed into place",
            "saving in place could leave a half-written output",
            required=True,
        ),
        # off: it acts only after a failure, whose exit code already says this run's outputs are missing
        Patch(
            "stale_output_paths",
            {"kedro-datasets": ">=9.6,<9.7"},
            "StaleOutputsHook reads a dataset's private `_filepath` / `_protocol` to find its local path",
            "a failed run leaves the earlier outputs of its pipeline in place",
        ),
    )
}


class UnsupportedLibraryError(click.ClickException, RuntimeError):
    """An installed library outside the range a patch the project needs was checked against.

    A click exception, so `kedro run` prints the message alone and exits with 1."""


_verdicts: dict[str, bool] = {}  # for the installed versions, judged once per process
_required_ok: set[str] = set()  # required patches whose installed libraries were found in range


def installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def mismatches(patch: Patch, installed: Mapping[str, str] | None = None) -> list[str]:
    """`library version (checked range)` for each library of `patch` whose version is outside its range."""
    found = []
    for library, checked in patch.checked.items():
        version = installed[library] if installed and library in installed else installed_version(library)
        if not _within(version, checked):
            found.append(f"{library} {version or '(not installed)'} (checked: {library}{checked})")
    return found


def _within(version: str | None, checked: str) -> bool:
    if version is None:
        return False
    try:
        # a local build (5.17.0+cu130) or a pre-release of a checked release counts as that release
        return Version(Version(version).base_version) in SpecifierSet(checked)
    except InvalidVersion:
        return False


def applies(name: str, installed: Mapping[str, str] | None = None) -> bool:
    """Whether patch `name` is applied: True inside its checked range; outside, False with a warning."""
    if installed is None and name in _verdicts:
        return _verdicts[name]
    patch = PATCHES[name]
    if patch.required:
        raise ValueError(f"patch {name} is required: guard it with patches.require")
    found = mismatches(patch, installed)
    if found:
        logger.warning("%s is off: %s; %s. (%s.)", name, ", ".join(found), patch.without, patch.what)
    if installed is None:
        _verdicts[name] = not found
    return not found


def require(name: str, installed: Mapping[str, str] | None = None) -> None:
    """Raise `UnsupportedLibraryError` unless every library of patch `name` is inside its checked range."""
    if installed is None and name in _required_ok:
        return
    patch = PATCHES[name]
    found = mismatches(patch, installed)
    if not found:
        if installed is None:
            _required_ok.add(name)
        return
    pins = ", ".join(f"{library}{checked}" for library, checked in patch.checked.items())
    raise UnsupportedLibraryError(
        f"{'; '.join(found)}: {name} was checked against other releases, and {patch.without}. "
        f"({patch.what}.) Install {pins}, as pyproject.toml pins them."
    )
