"""Log-probability of a completion given a prompt, and the implicit DPO reward built on it.

The one implementation used by the evaluation stage, the `kedro bias test` CLI and the correctness tests.

Tokenisation follows the project contract (the same one training hands to TRL):
prompt ids = ``tokenizer(render_prompt(...), add_special_tokens=False)``, completion ids =
``tokenizer(statement, add_special_tokens=False) + [eos]``; only completion tokens are scored. Sequences
longer than ``max_length`` are cut keeping their start, as TRL's default ``truncation_mode="keep_start"``.

Implicit reward of a completion y after prompt x: ``beta * (log pi(y|x) - log pi_ref(y|x))``, the log-probs
summed over completion tokens. The reference is the base model for a full checkpoint and the same model with
its adapter disabled for a LoRA adapter.

torch / transformers / peft are imported inside functions, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import inspect
import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import click
from pydantic import ValidationError

from edu_bias_pipeline import patches
from edu_bias_pipeline.dpo.config import looks_like_hub_id
from edu_bias_pipeline.dpo.contract import DEFAULT_BETA, FINAL_DIR, METADATA_FILE, FinalMetadata
from edu_bias_pipeline.files import write_json_atomic
from edu_bias_pipeline.pairs import DEFAULT_INSTRUCTION, render_prompt

if TYPE_CHECKING:  # pragma: no cover
    import torch

logger = logging.getLogger(__name__)

ADAPTER_CONFIG_FILE = "adapter_config.json"
Dtype = Literal["auto", "float32", "float64", "bfloat16", "float16"]
DTYPES = get_args(Dtype)

# Architectures whose logits are exactly lm_head(last hidden state): for these the vocabulary projection
# is applied to completion positions only (the prompt's logits are never needed), which saves memory and
# about a fifth of the compute on a 0.5B model with a 150k vocabulary. Others take the plain forward pass.
_HIDDEN_STATE_ARCHS = frozenset({"qwen2", "qwen3", "llama", "mistral"})
# Rows of the vocabulary projection computed at once: bounds the float32 logits buffer.
_LOGIT_CHUNK_TOKENS = 2048


class CheckpointError(click.ClickException, ValueError):
    """A checkpoint that cannot be scored: missing, unreadable, without a reference model, or a device that
    cannot work here. A click exception, so `kedro run` and `kedro bias test` print the message alone."""


# --------------------------------------------------------------------------------------- metadata
def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read training metadata {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"training metadata {path} must be a JSON object, got {type(data).__name__}")
    return data


def find_metadata_file(checkpoint: Path) -> Path | None:
    """The metadata that describes `checkpoint`: its own file, else its run's ``final/`` file.

    A ``checkpoint-N`` directory written mid-training has no metadata of its own; its siblings' ``final/``
    (same run, same base model, beta and instruction) does, once training completed.
    """
    own = checkpoint / METADATA_FILE
    if own.is_file():
        return own
    sibling = checkpoint.parent / FINAL_DIR / METADATA_FILE
    if checkpoint.name != FINAL_DIR and sibling.is_file():
        return sibling
    return None


def resolve_metadata(checkpoint: Path, overrides: dict[str, Any] | None = None) -> FinalMetadata:
    """What scoring needs to know about how `checkpoint` was trained (`FinalMetadata.SCORING_FIELDS`):
    overrides (non-None) > metadata file > adapter config > defaults. `reference_sha256` is dropped when the
    base model is overridden: it no longer describes the reference."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    values: dict[str, Any] = {}
    sources: list[str] = []
    meta_file = find_metadata_file(checkpoint)
    if meta_file is not None:
        data = _read_json(meta_file)
        for key in FinalMetadata.SCORING_FIELDS:
            if data.get(key) is not None:
                values[key] = data[key]
        sources.append(str(meta_file))
    adapter_config = checkpoint / ADAPTER_CONFIG_FILE
    # The files on disk decide adapter-or-not: a checkpoint-N of a LoRA run is an adapter whatever the
    # fallback metadata says.
    values["is_adapter"] = adapter_config.is_file()
    if values["is_adapter"] and "base_model" not in values:
        base = _read_json(adapter_config).get("base_model_name_or_path")
        if base:
            values["base_model"] = base
            sources.append(str(adapter_config))
    if overrides:
        if "base_model" in overrides:
            values.pop("reference_sha256", None)
        values.update(overrides)
        sources.append("parameters")
    if values.get("beta") is None:
        logger.warning("No beta in metadata or parameters for %s; using %s", checkpoint, DEFAULT_BETA)
    for key in ("base_model", "instruction", "max_length"):  # empty: unset
        if not values.get(key):
            values.pop(key, None)
    if "base_model" in values:
        values["base_model"] = str(values["base_model"])  # a path
    try:
        return FinalMetadata(**values, source=" + ".join(sources) or "defaults")
    except ValidationError as exc:
        raise CheckpointError(f"training metadata of {checkpoint} ({' + '.join(sources)}): {exc}") from None


# --------------------------------------------------------------------------------------- loading
@dataclass
class ScoringModels:
    """A policy, its reference and the tokenizer, ready for scoring."""

    policy: Any
    reference: Any | None  # None: the reference is `policy` with its adapter disabled
    tokenizer: Any
    metadata: FinalMetadata
    checkpoint: Path
    device: Any
    dtype: Any

    def reference_model(self) -> contextlib.AbstractContextManager[Any]:
        return _reference_context(self.policy, self.reference)

    def context_length(self) -> int | None:
        """The model's context window (`max_position_embeddings`): where texts scored without a prompt are
        cut (training's `max_length` is a limit of prompt + answer pairs, not of a benchmark's texts);
        None when the config does not say."""
        value = getattr(getattr(self.policy, "config", None), "max_position_embeddings", None)
        return value if isinstance(value, int) else None


@contextlib.contextmanager
def _reference_context(policy: Any, reference: Any | None) -> Iterator[Any]:
    """The reference model: `reference` itself, or `policy` with its adapter disabled while inside."""
    if reference is not None:
        yield reference
    else:
        with policy.disable_adapter():  # peft's context manager yields nothing: hand back the policy
            yield policy


def resolve_dtype(dtype: str, device: Any) -> torch.dtype:
    """``auto`` means bf16 on a GPU that supports it, float32 otherwise."""
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if dtype != "auto":
        return getattr(torch, dtype)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


class DeviceError(CheckpointError):
    """A device this machine or this torch build cannot use; the message says which one would work."""


def resolve_device(device: str) -> torch.device:
    """``auto`` means the first GPU when there is one, else the CPU; any other name must be usable here."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(
            f"device {device!r} is not a device name torch knows; use auto, cpu, cuda or cuda:N"
        ) from None
    if resolved.type == "cuda":
        if torch.version.cuda is None:
            raise DeviceError(
                f"device {device!r} asked for, but this torch build ({torch.__version__}) has no CUDA "
                "support; use device=cpu (or auto), or install a CUDA build of torch"
            )
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(
                f"device {device!r} asked for, but no CUDA GPU is visible (check the driver and "
                "CUDA_VISIBLE_DEVICES); use device=cpu (or auto)"
            )
        if resolved.index is not None and resolved.index >= count:
            raise DeviceError(
                f"device {device!r} asked for, but only {count} CUDA GPU(s) are visible "
                f"(cuda:0..cuda:{count - 1})"
            )
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(
            f"device {device!r} asked for, but MPS is not available here; use device=cpu (or auto)"
        )
    elif resolved.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"device {device!r} is not supported for scoring; use auto, cpu, cuda or cuda:N")
    return resolved


def check_checkpoint_dir(checkpoint: Path) -> None:
    """A CheckpointError unless CHECKPOINT is a directory, saying what to pass instead; for training's record
    of a run (trained_model.json), the model directory it names."""
    if checkpoint.is_dir():
        return
    example = "e.g. data/06_models/dpo_model/final or data/06_models/dpo_model/checkpoint-N"
    if not checkpoint.exists():
        raise CheckpointError(
            f"checkpoint {str(checkpoint)!r} not found: the path does not exist. Pass a model or LoRA "
            f"adapter directory, {example}"
        )
    model_dir = None
    # Only a small JSON file can be training's record; a weights file may be many GB.
    if checkpoint.suffix == ".json" and checkpoint.stat().st_size <= 1 << 20:
        with contextlib.suppress(OSError, UnicodeDecodeError, ValueError):
            record = json.loads(checkpoint.read_text(encoding="utf-8"))
            if isinstance(record, dict) and isinstance(record.get("model_dir"), str):
                model_dir = record["model_dir"]
    if model_dir is not None:
        raise CheckpointError(
            f"checkpoint {str(checkpoint)!r} is training's record of a run, not a model: pass the model "
            f"directory it names, {model_dir!r} (relative to the project directory)"
        )
    raise CheckpointError(
        f"checkpoint {str(checkpoint)!r} is a file: pass a model or LoRA adapter directory, {example}"
    )


def _model_ref(name: str, checkpoint: Path) -> str:
    """A base-model reference as a usable path or hub id: relative paths are tried from the cwd (the
    project root under `kedro run`) and then from the checkpoint directory."""
    path = Path(name)
    if path.is_absolute() or path.exists():
        return str(path)
    for root in (checkpoint, *checkpoint.parents):
        candidate = root / name
        if candidate.exists():
            return str(candidate)
    if looks_like_hub_id(name):
        return name  # offline mode turns an uncached hub id into a clear error below
    raise CheckpointError(
        f"reference model {name!r} is not a directory here (looked from the working directory and from "
        f"{checkpoint} upwards) and is not a hub id: pass the base model's directory with --reference-model "
        "(evaluation.reference_model under kedro run)"
    )


def _from_pretrained(loader: Any, ref: str, what: str, **kwargs: Any) -> Any:
    try:
        return loader.from_pretrained(ref, **kwargs)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot load {what} from {ref!r}: {exc}") from exc


def load_scoring_models(
    checkpoint: str | Path,
    *,
    reference_model: str | None = None,
    beta: float | None = None,
    instruction: str | None = None,
    max_length: int | None = None,
    dtype: str = "auto",
    device: str = "auto",
    trust_remote_code: bool = False,
) -> ScoringModels:
    """Load a checkpoint (full model or LoRA adapter directory) and its reference model.

    `reference_model` / `beta` / `instruction` / `max_length`, when given, override the checkpoint's metadata;
    a checkpoint without metadata needs `reference_model` (a full model) to have a reference at all.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # Before anything is read: a device that cannot work here fails in one line, not deep in model loading.
    torch_device = resolve_device(device)
    checkpoint = Path(checkpoint)
    check_checkpoint_dir(checkpoint)
    meta = resolve_metadata(
        checkpoint,
        {"base_model": reference_model, "beta": beta, "instruction": instruction, "max_length": max_length},
    )
    if meta.trust_remote_code and not trust_remote_code:
        logger.warning(
            "%s was trained with trust_remote_code=true; it stays off here unless you pass it explicitly",
            checkpoint,
        )
    if trust_remote_code:
        logger.warning(
            "trust_remote_code is on: loading %s (and its reference %s) runs Python code shipped with it",
            checkpoint,
            meta.base_model,
        )
    if meta.base_model is None:
        raise CheckpointError(
            f"no reference model for {checkpoint}: it has no {METADATA_FILE} (nor a sibling final/ one) and "
            "no reference was given; set evaluation.reference_model (or --reference-model) to the base model"
        )
    torch_dtype = resolve_dtype(dtype, torch_device)
    load_kwargs = {"dtype": torch_dtype, "trust_remote_code": trust_remote_code}
    base_ref = _model_ref(meta.base_model, checkpoint)

    if meta.is_adapter:
        from peft import PeftModel

        base = _from_pretrained(AutoModelForCausalLM, base_ref, "the adapter's base model", **load_kwargs)
        try:
            policy = PeftModel.from_pretrained(base, str(checkpoint))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot load the LoRA adapter in {checkpoint}: {exc}") from exc
        if torch_dtype == torch.float64:
            # peft keeps adapter weights in float32; exact comparisons want every weight in float64.
            policy = policy.double()
        reference = None
    else:
        policy = _from_pretrained(AutoModelForCausalLM, str(checkpoint), "the trained model", **load_kwargs)
        # A model evaluated against itself (e.g. the base model's own baseline): one copy serves as both.
        if Path(base_ref).resolve() == checkpoint.resolve():
            reference = policy
        else:
            reference = _from_pretrained(AutoModelForCausalLM, base_ref, "the reference model", **load_kwargs)

    tok_source = checkpoint if _has_tokenizer(checkpoint) else Path(base_ref)
    tokenizer = _from_pretrained(
        AutoTokenizer, str(tok_source), "the tokenizer", trust_remote_code=trust_remote_code
    )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    for model in (policy, reference):
        if model is not None:
            model.to(torch_device)
            model.eval()
    logger.info(
        "Loaded %s %s (reference: %s, beta=%s, dtype=%s, device=%s; metadata from %s)",
        "LoRA adapter" if meta.is_adapter else "model",
        checkpoint,
        "adapter disabled" if meta.is_adapter else base_ref,
        meta.beta,
        torch_dtype,
        torch_device,
        meta.source,
    )
    return ScoringModels(policy, reference, tokenizer, meta, checkpoint, torch_device, torch_dtype)


def _has_tokenizer(path: Path) -> bool:
    return any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json"))


# --------------------------------------------------------------------------------------- tokenising
@dataclass(frozen=True)
class EncodedCompletion:
    input_ids: list[int]
    n_prompt: int  # tokens before the completion (after truncation, still <= len(input_ids))
    truncated: bool

    @property
    def n_completion(self) -> int:
        return len(self.input_ids) - self.n_prompt


def encode_prompts(
    tokenizer: Any, prompts: Sequence[str | None], instruction: str = DEFAULT_INSTRUCTION
) -> list[list[int]]:
    """Token ids of each rendered prompt (`pairs.render_prompt`), what completions are scored after."""
    rendered: dict[str | None, list[int]] = {}
    for prompt in set(prompts):
        text = render_prompt(tokenizer, prompt, instruction)
        rendered[prompt] = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [list(rendered[prompt]) for prompt in prompts]


def _cut(prompt_ids: list[int], completion_ids: list[int], max_length: int | None) -> EncodedCompletion:
    full = prompt_ids + completion_ids
    truncated = max_length is not None and len(full) > max_length
    if truncated:
        full = full[:max_length]
    return EncodedCompletion(full, min(len(prompt_ids), len(full)), truncated)


def encode_completions(
    tokenizer: Any,
    prompts: Sequence[str | None],
    completions: Sequence[str],
    instruction: str = DEFAULT_INSTRUCTION,
    max_length: int | None = None,
) -> list[EncodedCompletion]:
    """Token ids of rendered prompt + completion + eos for each (prompt, completion), per the contract."""
    if len(prompts) != len(completions):
        raise ValueError("prompts and completions must have the same length")
    prompt_ids = encode_prompts(tokenizer, prompts, instruction)
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    completion_ids = (
        tokenizer(list(completions), add_special_tokens=False)["input_ids"] if completions else []
    )
    return [
        _cut(prompt, list(ids) + eos, max_length)
        for prompt, ids in zip(prompt_ids, completion_ids, strict=True)
    ]


def prefix_token_id(tokenizer: Any) -> int:
    """The one token an unconditional text is scored after: bos, or eos for tokenizers without one (Qwen2).

    The rule of lm-evaluation-harness (`HFLM.prefix_token_id`) for an empty context, so a text's
    log-likelihood here is the one lm-eval reports for it.
    """
    token = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if token is None:
        raise CheckpointError("the tokenizer has neither a bos nor an eos token to score a text after")
    return int(token)


def encode_texts(
    tokenizer: Any, texts: Sequence[str], max_length: int | None = None
) -> list[EncodedCompletion]:
    """Unconditional text likelihood: no instruction, no chat template, no eos appended.

    Ids = ``[prefix_token_id] + tokenizer(text, add_special_tokens=False)``; every text token is scored (the
    first one predicted from the prefix token). As in lm-eval, a text whose first token already is the
    prefix token is not given a second one. Cut to `max_length` keeping the start.
    """
    prefix = prefix_token_id(tokenizer)
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []
    out = []
    for text_ids in ids:
        text_ids = list(text_ids)
        if text_ids and text_ids[0] == prefix:
            out.append(_cut(text_ids[:1], text_ids[1:], max_length))
        else:
            out.append(_cut([prefix], text_ids, max_length))
    return out


# --------------------------------------------------------------------------------------- scoring
def _shared_prompt(batch: Sequence[EncodedCompletion]) -> list[int] | None:
    """The prompt ids every sequence of the batch starts with and scores after, if they all do."""
    first = batch[0]
    prompt = first.input_ids[: first.n_prompt]
    if first.n_prompt < 1:
        return None
    for enc in batch:
        if enc.n_prompt != first.n_prompt or enc.input_ids[: enc.n_prompt] != prompt:
            return None
    if all(enc.n_completion == 0 for enc in batch):
        return None
    return prompt


def _decoder_and_head(model: Any) -> tuple[Any, Any] | None:
    if not patches.applies("shared_prompt_cache"):
        return None
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    model_type = getattr(getattr(causal_lm, "config", None), "model_type", None)
    if model_type in _HIDDEN_STATE_ARCHS and hasattr(causal_lm, "model") and hasattr(causal_lm, "lm_head"):
        return causal_lm.model, causal_lm.lm_head
    return None


@dataclass
class _Prefix:
    """A prompt already run through a decoder: its key/value cache and last hidden state (batch of 1)."""

    prompt: list[int]
    cache: Any
    last_hidden: Any


@functools.cache
def _cache_keyword(decoder_class: type) -> str:
    # transformers 5.2x renamed the key/value cache, argument and output, from `past_key_values` to `cache`
    # (the old name goes in 5.40); earlier 5.x releases know only the old one.
    return "cache" if "cache" in inspect.signature(decoder_class.forward).parameters else "past_key_values"


def _run_prefix(decoder: Any, prompt: list[int], device: Any) -> _Prefix:
    import torch

    out = decoder(input_ids=torch.tensor([prompt], device=device), use_cache=True)
    return _Prefix(list(prompt), out[_cache_keyword(type(decoder))], out.last_hidden_state[:, -1:])


def _prefix_for(model: Any, prompt: list[int] | None, device: Any) -> _Prefix | None:
    """The prompt's prefix state under `model` as it is now (adapter on or off), if its route applies."""
    head = _decoder_and_head(model)
    if head is None or not prompt:
        return None
    return _run_prefix(head[0], prompt, device)


def _batch_cache(prefix: _Prefix, n: int) -> Any:
    """The prefix cache seen by a batch of n: per-layer views expanded over the batch, so nothing is copied
    until the forward pass appends the completions (which builds new tensors and leaves the prefix intact)."""
    cache = copy.copy(prefix.cache)
    layers = cache.layers
    cache.layers = []
    for layer in layers:
        clone = copy.copy(layer)
        if getattr(layer, "keys", None) is not None and layer.keys.numel():
            clone.keys = layer.keys.expand(n, *layer.keys.shape[1:])
            clone.values = layer.values.expand(n, *layer.values.shape[1:])
        cache.layers.append(clone)
    return cache


@dataclass
class _Scored:
    """The scored positions of a batch after one forward pass: what predicts each completion token."""

    positions: Any  # hidden states (project is set) or logits, one row per scored token
    targets: Any  # the token each row predicts
    rows: Any  # the batch row each scored token belongs to
    counts: Any  # scored tokens per batch row
    project: Any | None  # the vocabulary projection still to apply to `positions`, or None

    def logits(self, start: int, stop: int) -> torch.Tensor:
        """Logits of scored tokens start..stop, at least float32 (float64 stays float64)."""
        import torch

        chunk = self.positions[start:stop]
        chunk = self.project(chunk) if self.project is not None else chunk
        return chunk.to(torch.promote_types(chunk.dtype, torch.float32))


def _prompt_index(batch: Sequence[EncodedCompletion]) -> tuple[list[list[int]], list[int]] | None:
    """The batch's distinct prompts (first seen first) and each sequence's index into them; None when a
    sequence has no prompt or no sequence has a completion token left (the plain pass serves those)."""
    if any(enc.n_prompt < 1 for enc in batch) or all(enc.n_completion == 0 for enc in batch):
        return None
    distinct: dict[tuple[int, ...], int] = {}
    index = [distinct.setdefault(tuple(enc.input_ids[: enc.n_prompt]), len(distinct)) for enc in batch]
    return [list(p) for p in distinct], index


def _right_padded(rows: Sequence[Sequence[int]], pad_id: int, device: Any):
    """(token ids, attention mask) of `rows`, right-padded to the longest, on `device`."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids.to(device), mask.to(device)


def _after_prompts(
    decoder: Any,
    batch: Sequence[EncodedCompletion],
    prompts: list[list[int]],
    index: list[int],
    pad_id: int,
    device: Any,
):
    """(hidden states predicting each completion token, those tokens, completion mask) for a batch whose
    sequences follow several prompts.

    The prompts run once each, right-padded side by side; each sequence then continues its own prompt's
    key/value cache. A sequence's positions continue from its prompt's real length, and the attention mask
    hides the pads between its prompt and its completion, so the numbers are those of one unpadded pass.
    """
    import torch

    lengths = torch.tensor([len(p) for p in prompts], device=device)
    prompt_ids, prompt_mask = _right_padded(prompts, pad_id, device)
    longest = prompt_ids.shape[1]
    out = decoder(input_ids=prompt_ids, attention_mask=prompt_mask, use_cache=True)
    cache = out[_cache_keyword(type(decoder))]
    which = torch.tensor(index, device=device)
    cache.reorder_cache(which)  # row i of the batch now holds the cache of prompt index[i]
    last = out.last_hidden_state[torch.arange(len(prompts), device=device), lengths - 1][which]

    ids, comp_mask = _right_padded([enc.input_ids[enc.n_prompt :] for enc in batch], pad_id, device)
    steps = torch.arange(ids.shape[1], device=device)
    hidden = decoder(
        input_ids=ids,
        attention_mask=torch.cat([prompt_mask[which], comp_mask], dim=1),
        **{_cache_keyword(type(decoder)): cache},
        use_cache=True,
        position_ids=lengths[which].unsqueeze(1) + steps,
        cache_position=longest + steps,
    ).last_hidden_state
    predictors = torch.cat([last.unsqueeze(1), hidden[:, :-1]], dim=1)
    target_mask = comp_mask.bool()
    return predictors[target_mask], ids[target_mask], target_mask


def _scored_positions(
    model: Any, batch: Sequence[EncodedCompletion], pad_id: int, device: Any, prefix: _Prefix | None = None
) -> _Scored:
    """One forward pass over the batch, keeping only the positions that predict completion tokens.

    Two routes to the same numbers (the float64 tests hold both to a plain forward pass):
    - shared prompt (every batch `score_encoded_pairs` / `score_sequences` builds, for the architectures
      in `_HIDDEN_STATE_ARCHS`): the prompt runs once, its key/value cache is repeated over the batch, only
      the completions are run after it, and the vocabulary projection covers completion positions only.
      With a 30-token chat prompt this roughly halves the tokens processed.
    - several prompts (the batches `score_encoded_options` builds with `mix_prompts`, e.g. one question
      with its own context per item): the same, with the batch's distinct prompts run once each, side by
      side, and each prompt's cache repeated over its own completions.
    - plain padded forward pass with full logits: other architectures (whose logits are not just
      lm_head(hidden)) and batches without a common prompt (only degenerate ones: every completion cut
      away by max_length).
    """
    import torch

    head = _decoder_and_head(model)
    prompt = _shared_prompt(batch) if head is not None else None
    prompts = _prompt_index(batch) if head is not None and prompt is None else None
    if prompt is not None:
        decoder, project = head
        n_prompt = len(prompt)
        comps = [enc.input_ids[n_prompt:] for enc in batch]
        width = max(len(c) for c in comps)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), n_prompt + width), dtype=torch.long)
        attention[:, :n_prompt] = 1
        for i, comp in enumerate(comps):
            ids[i, : len(comp)] = torch.tensor(comp, dtype=torch.long)
            attention[i, n_prompt : n_prompt + len(comp)] = 1
        ids, attention = ids.to(device), attention.to(device)
        if prefix is None or prefix.prompt != prompt:
            prefix = _run_prefix(decoder, prompt, device)
        cache = _batch_cache(prefix, len(batch))
        positions_ids = torch.arange(n_prompt, n_prompt + width, device=device).unsqueeze(0)
        hidden = decoder(
            input_ids=ids,
            attention_mask=attention,
            **{_cache_keyword(type(decoder)): cache},
            use_cache=True,
            position_ids=positions_ids.expand(len(batch), -1),
            cache_position=torch.arange(n_prompt, n_prompt + width, device=device),
        ).last_hidden_state
        # Completion token j is predicted from the hidden state before it: the prompt's last for j = 0.
        last = prefix.last_hidden.expand(len(batch), 1, -1)
        predictors = torch.cat([last, hidden[:, :-1]], dim=1)
        target_mask = attention[:, n_prompt:].bool()
        positions = predictors[target_mask]
        targets = ids[target_mask]
    elif prompts is not None:
        positions, targets, target_mask = _after_prompts(head[0], batch, *prompts, pad_id, device)
        project = head[1]
    else:
        width = max(len(e.input_ids) for e in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        scored = torch.zeros((len(batch), width), dtype=torch.bool)
        for i, enc in enumerate(batch):
            # Right padding: the causal mask keeps pads from influencing the real tokens before them.
            ids[i, : len(enc.input_ids)] = torch.tensor(enc.input_ids, dtype=torch.long)
            attention[i, : len(enc.input_ids)] = 1
            scored[i, enc.n_prompt : len(enc.input_ids)] = True
        ids, attention, scored = ids.to(device), attention.to(device), scored.to(device)
        # Token t is predicted from position t-1: the first token of a sequence is never scored.
        target_mask = scored[:, 1:]
        targets = ids[:, 1:][target_mask]
        logits = model(input_ids=ids, attention_mask=attention, use_cache=False).logits
        positions = logits[:, :-1][target_mask]
        project = None
    rows = torch.arange(len(batch), device=device).unsqueeze(1).expand_as(target_mask)[target_mask]
    return _Scored(positions, targets, rows, target_mask.sum(dim=1), project)


def _per_row(values: list[torch.Tensor], scored: _Scored, n: int) -> list[float]:
    """Per-token values (in scored order, chunked) summed per batch row, in float64."""
    import torch

    device = scored.rows.device
    flat = (
        torch.cat(values).to(torch.float64) if values else torch.zeros(0, dtype=torch.float64, device=device)
    )
    return torch.zeros(n, dtype=torch.float64, device=device).index_add_(0, scored.rows, flat).cpu().tolist()


def _token_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)


def _completion_logps(
    model: Any, batch: Sequence[EncodedCompletion], pad_id: int, device: Any, prefix: _Prefix | None = None
):
    """(sum of completion-token log-probs, completion token count) per sequence, one forward pass."""
    scored = _scored_positions(model, batch, pad_id, device, prefix)
    token_logps = []
    for start in range(0, scored.positions.shape[0], _LOGIT_CHUNK_TOKENS):
        stop = start + _LOGIT_CHUNK_TOKENS
        token_logps.append(_token_logps(scored.logits(start, stop), scored.targets[start:stop]))
    return _per_row(token_logps, scored, len(batch)), scored.counts.cpu().tolist()


def _batches(order: list[int], batch_size: int) -> list[list[int]]:
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _progress(total: int, desc: str, enabled: bool | None, unit: str = "pair"):
    from tqdm.auto import tqdm

    # On by default only for long runs, so tests and CLI calls on a handful of statements stay quiet.
    disable = not enabled if enabled is not None else total < 512
    return tqdm(total=total, desc=desc, unit=unit, disable=disable)


@dataclass
class PairScores:
    """Per-pair log-probs under policy and reference (chosen and rejected), summed and token counts."""

    policy_chosen: list[float] = field(default_factory=list)
    policy_rejected: list[float] = field(default_factory=list)
    reference_chosen: list[float] = field(default_factory=list)
    reference_rejected: list[float] = field(default_factory=list)
    chosen_tokens: list[int] = field(default_factory=list)
    rejected_tokens: list[int] = field(default_factory=list)
    truncated: list[bool] = field(default_factory=list)
    reference_cache: str | None = None  # "reused <file>" / "written <file>", None when not cached


@dataclass
class OptionScores:
    """Per item, per option: summed log-probs under policy and reference and completion token counts."""

    policy: list[list[float]] = field(default_factory=list)
    reference: list[list[float]] = field(default_factory=list)
    tokens: list[list[int]] = field(default_factory=list)
    truncated: list[bool] = field(default_factory=list)  # any option of the item cut by max_length


def score_encoded_options(
    models: ScoringModels | tuple[Any, Any],
    options: Sequence[Sequence[EncodedCompletion]],
    *,
    pad_id: int,
    batch_size: int = 16,
    device: Any = None,
    progress: bool | None = None,
    reference_logps: Sequence[Sequence[float]] | None = None,
    mix_prompts: bool = False,
    unit: str = "item",
) -> OptionScores:
    """Score already-tokenised items of k options each (a pair: chosen and rejected; a multiple-choice
    question: its answers). `models` is ScoringModels or a (policy, reference) tuple of modules.

    Items are sorted by length (longest first, so an out-of-memory shows up in the first batch) and each
    batch stacks the options of its `batch_size` items: one forward pass per model per batch. Without
    `mix_prompts` a batch holds the items of one prompt only, and a prompt shared by many items runs once
    per model for all its batches; with it, items with different prompts share batches (each prompt still
    runs once per batch), which keeps batches full when every item has a prompt of its own.
    `reference_logps` (per item, per option), when known, replace the reference model's passes.
    """
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(options)
    k = len(options[0]) if n else 0
    if any(len(item) != k for item in options):
        raise ValueError("every item must have the same number of options")
    if isinstance(models, ScoringModels):
        policy, reference, device = models.policy, models.reference, models.device
    else:
        policy, reference = models
        device = device if device is not None else next(policy.parameters()).device

    def longest_first(members: list[int]) -> list[int]:
        return sorted(members, key=lambda i: -max(len(enc.input_ids) for enc in options[i]))

    if mix_prompts:
        batches = _batches(longest_first(list(range(n))), batch_size)
    else:
        groups: dict[tuple[int, ...], list[int]] = {}
        for i in range(n):
            groups.setdefault(tuple(options[i][0].input_ids[: options[i][0].n_prompt]), []).append(i)
        batches = [b for members in groups.values() for b in _batches(longest_first(members), batch_size)]
    prefixes: dict[tuple[int, ...], tuple[_Prefix | None, _Prefix | None]] = {}
    scores = OptionScores([[0.0] * k] * n, [[0.0] * k] * n, [[0] * k] * n)
    with torch.inference_mode(), _progress(n, f"scoring {unit}s", progress, unit) as bar:
        for idx in batches:
            # Option-major: the first options of the batch's items, then their second options, ...
            seqs = [options[i][slot] for slot in range(k) for i in idx]
            # A shared prompt runs once per model for all its batches, not once per batch.
            prompt = _shared_prompt(seqs)
            key = tuple(prompt) if prompt is not None else None
            if key is not None and key not in prefixes:
                pol_prefix, ref_prefix = _prefix_for(policy, prompt, device), None
                if reference_logps is None:
                    with _reference_context(policy, reference) as reference_model:
                        ref_prefix = _prefix_for(reference_model, prompt, device)
                prefixes[key] = (pol_prefix, ref_prefix)
            pol_prefix, ref_prefix = prefixes.get(key, (None, None))
            p_sums, p_counts = _completion_logps(policy, seqs, pad_id, device, pol_prefix)
            m = len(idx)
            if reference_logps is None:
                with _reference_context(policy, reference) as reference_model:
                    r_sums, _ = _completion_logps(reference_model, seqs, pad_id, device, ref_prefix)
            else:
                r_sums = [reference_logps[i][slot] for slot in range(k) for i in idx]
            for j, i in enumerate(idx):
                scores.policy[i] = [p_sums[slot * m + j] for slot in range(k)]
                scores.reference[i] = [r_sums[slot * m + j] for slot in range(k)]
                scores.tokens[i] = [p_counts[slot * m + j] for slot in range(k)]
            bar.update(m)
    scores.truncated = [any(enc.truncated for enc in item) for item in options]
    return scores


def score_encoded_pairs(
    models: ScoringModels | tuple[Any, Any],
    chosen: Sequence[EncodedCompletion],
    rejected: Sequence[EncodedCompletion],
    *,
    pad_id: int,
    batch_size: int = 16,
    device: Any = None,
    progress: bool | None = None,
    reference_logps: tuple[Sequence[float], Sequence[float]] | None = None,
) -> PairScores:
    """Score already-tokenised pairs: `score_encoded_options` with two options, chosen and rejected.

    `reference_logps` (chosen, rejected), when known, replace the reference model's passes.
    """
    if len(chosen) != len(rejected):
        raise ValueError("chosen and rejected must have the same length")
    scores = score_encoded_options(
        models,
        list(zip(chosen, rejected, strict=True)),
        pad_id=pad_id,
        batch_size=batch_size,
        device=device,
        progress=progress,
        reference_logps=list(zip(*reference_logps, strict=True)) if reference_logps is not None else None,
        unit="pair",
    )
    return PairScores(
        policy_chosen=[p[0] for p in scores.policy],
        policy_rejected=[p[1] for p in scores.policy],
        reference_chosen=[r[0] for r in scores.reference],
        reference_rejected=[r[1] for r in scores.reference],
        chosen_tokens=[c[0] for c in scores.tokens],
        rejected_tokens=[c[1] for c in scores.tokens],
        truncated=scores.truncated,
    )


# Part of every cached reference key: raise it when the scoring numerics change (batching, prefix reuse).
REFERENCE_CACHE_VERSION = 1


def reference_logps_key(
    models: ScoringModels,
    chosen: Sequence[EncodedCompletion],
    rejected: Sequence[EncodedCompletion],
    batch_size: int,
) -> str | None:
    """Key of the reference log-probs of these pairs, None when the reference weights have no recorded hash.

    What the values depend on: the reference weights (the sha256 training recorded), the token ids, the
    dtype and device, and the batch size (padding moves low-precision sums in their last bits).
    """
    if not models.metadata.reference_sha256:
        return None
    meta = models.metadata
    digest = hashlib.sha256(
        f"{REFERENCE_CACHE_VERSION}|{meta.reference_sha256}|{meta.base_model}|{meta.is_adapter}|"
        f"{models.dtype}|{models.device.type}|{batch_size}".encode()
    )
    for enc in (*chosen, *rejected):
        digest.update(f"{len(enc.input_ids)}:{enc.n_prompt}:".encode())
        digest.update(",".join(map(str, enc.input_ids)).encode())
    return digest.hexdigest()[:24]


def _read_reference_logps(path: Path, n: int) -> tuple[list[float], list[float]] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    chosen, rejected = data.get("chosen"), data.get("rejected")
    if not (isinstance(chosen, list) and isinstance(rejected, list) and len(chosen) == len(rejected) == n):
        return None
    return chosen, rejected


def check_statements_scored(
    enc_chosen: Sequence[EncodedCompletion], enc_rejected: Sequence[EncodedCompletion], max_length: int | None
) -> None:
    """Fail when max_length leaves a pair's chosen or rejected statement no token to score: the prompt
    fills it, so the statement would score log-prob 0 and the pair count as a tie (wrong)."""
    empty = sum(
        c.n_completion == 0 or r.n_completion == 0 for c, r in zip(enc_chosen, enc_rejected, strict=True)
    )
    if empty:
        raise ValueError(
            f"max_length={max_length} (evaluation.max_length, else the checkpoint's training metadata) "
            f"leaves {empty} of {len(enc_chosen)} pairs with no token of their chosen or rejected statement "
            "to score (the rendered prompt fills it), so they would score log-prob 0 and count as wrong; "
            "raise evaluation.max_length (--params evaluation.max_length=N)"
        )


def score_pairs(
    models: ScoringModels,
    prompts: Sequence[str | None],
    chosen: Sequence[str],
    rejected: Sequence[str],
    *,
    batch_size: int = 16,
    progress: bool | None = None,
    reference_cache_dir: str | Path | None = None,
) -> PairScores:
    """Log-probs of each pair's chosen and rejected statement under the policy and the reference.

    With `reference_cache_dir`, the reference's log-probs are kept there as `eval-ref-<key>.json` and a later
    run on the same pairs, reference weights and numerics (another checkpoint of the same run, the same
    checkpoint again) runs the reference model not at all. Only references whose weights training recorded
    a hash of (`reference_sha256` in the checkpoint's metadata) are cached; for LoRA that hash also covers
    the adapter's initial weights, so only runs with the same seed and adapter shape share entries.
    """
    meta = models.metadata
    enc_c = encode_completions(models.tokenizer, prompts, chosen, meta.instruction, meta.max_length)
    enc_r = encode_completions(models.tokenizer, prompts, rejected, meta.instruction, meta.max_length)
    check_statements_scored(enc_c, enc_r, meta.max_length)
    n_trunc = sum(a.truncated or b.truncated for a, b in zip(enc_c, enc_r, strict=True))
    if n_trunc:
        logger.warning(
            "%d of %d pairs exceed max_length=%s and were truncated (keep_start)",
            n_trunc,
            len(enc_c),
            meta.max_length,
        )
    return score_encoded_pairs_cached(
        models,
        enc_c,
        enc_r,
        batch_size=batch_size,
        progress=progress,
        reference_cache_dir=reference_cache_dir,
    )


def score_encoded_pairs_cached(
    models: ScoringModels,
    enc_c: Sequence[EncodedCompletion],
    enc_r: Sequence[EncodedCompletion],
    *,
    batch_size: int = 16,
    progress: bool | None = None,
    reference_cache_dir: str | Path | None = None,
    cache_name: str = "eval",
) -> PairScores:
    """`score_encoded_pairs` with the reference log-probs kept in, and reused from, `reference_cache_dir`
    as `<cache_name>-ref-<key>.json` (see `score_pairs`); any tokenisation of the pairs, the key holds
    their token ids."""
    key = reference_logps_key(models, enc_c, enc_r, batch_size) if reference_cache_dir else None
    path = Path(reference_cache_dir) / f"{cache_name}-ref-{key}.json" if key else None
    cached = _read_reference_logps(path, len(enc_c)) if path and path.is_file() else None
    scores = score_encoded_pairs(
        models,
        enc_c,
        enc_r,
        pad_id=models.tokenizer.pad_token_id,
        batch_size=batch_size,
        progress=progress,
        reference_logps=cached,
    )
    if cached is not None:
        scores.reference_cache = f"reused {path}"
    elif path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"key": key, "chosen": scores.reference_chosen, "rejected": scores.reference_rejected}
        write_json_atomic(path, payload, indent=None)
        scores.reference_cache = f"written {path}"
    if scores.reference_cache:
        logger.info("reference log-probs: %s", scores.reference_cache)
    return scores


def implicit_reward(beta: float, policy_logp: float, reference_logp: float) -> float:
    return beta * (policy_logp - reference_logp)


@dataclass(frozen=True)
class StatementScore:
    """A single statement scored as the completion of the bias-judgement prompt."""

    statement: str
    policy_logp: float
    reference_logp: float
    n_tokens: int
    reward: float  # beta * (log pi - log pi_ref): > 0 when training made the statement more likely
    reward_per_token: float

    @property
    def bias_score(self) -> float:
        """Higher = more biased-looking to the aligned model: the negated implicit reward."""
        return -self.reward


def score_statements(
    models: ScoringModels, statements: Sequence[str], *, batch_size: int = 16
) -> list[StatementScore]:
    """Implicit reward of each statement as the answer to the bias-judgement instruction."""
    meta = models.metadata
    enc = encode_completions(
        models.tokenizer, [None] * len(statements), statements, meta.instruction, meta.max_length
    )
    scores = score_sequences(models, enc, batch_size=batch_size)
    out = []
    for statement, pol, ref, count in zip(
        statements, scores.policy, scores.reference, scores.tokens, strict=True
    ):
        reward = implicit_reward(meta.beta, pol, ref)
        out.append(StatementScore(statement, pol, ref, count, reward, reward / count if count else 0.0))
    return out


@dataclass
class SequenceScores:
    """Per sequence: summed completion-token log-probs under policy and reference, the scored token count,
    and (when asked for) the summed per-token KL(policy ‖ reference) of the next-token distributions."""

    policy: list[float]
    reference: list[float]
    tokens: list[int]
    kl: list[float] | None = None


def score_sequences(
    models: ScoringModels | tuple[Any, Any],
    encoded: Sequence[EncodedCompletion],
    *,
    batch_size: int = 16,
    with_kl: bool = False,
    pad_id: int | None = None,
    device: Any = None,
    progress: bool | None = None,
) -> SequenceScores:
    """Score single sequences (no pairing) under the policy and the reference, batched longest first.

    With `with_kl`, each completion position also gets the exact KL(π ‖ π_ref) = Σ_v π(v|·)·(log π(v|·) −
    log π_ref(v|·)) over the whole vocabulary, from the same forward passes (one per model per batch).
    `models` is ScoringModels or a (policy, reference) tuple of modules (then give `pad_id`).
    """
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(models, ScoringModels):
        policy, reference, device = models.policy, models.reference, models.device
        pad_id = models.tokenizer.pad_token_id if pad_id is None else pad_id
    else:
        policy, reference = models
        device = device if device is not None else next(policy.parameters()).device
    if pad_id is None:
        raise ValueError("pad_id is required when models is a (policy, reference) tuple")
    n = len(encoded)
    order = sorted(range(n), key=lambda i: -len(encoded[i].input_ids))
    pol, ref, kls = [0.0] * n, [0.0] * n, [0.0] * n
    tokens = [0] * n
    with torch.inference_mode(), _progress(n, "scoring texts", progress) as bar:
        for idx in _batches(order, batch_size):
            seqs = [encoded[i] for i in idx]
            p_scored = _scored_positions(policy, seqs, pad_id, device)
            with _reference_context(policy, reference) as reference_model:
                r_scored = _scored_positions(reference_model, seqs, pad_id, device)
            p_logps, r_logps, token_kl = [], [], []
            for start in range(0, p_scored.positions.shape[0], _LOGIT_CHUNK_TOKENS):
                stop = start + _LOGIT_CHUNK_TOKENS
                targets = p_scored.targets[start:stop]
                # The vocabulary projection runs where its model is the reference (a LoRA adapter's
                # lm_head may be adapted too).
                p_logits = p_scored.logits(start, stop)
                with _reference_context(policy, reference):
                    r_logits = r_scored.logits(start, stop)
                p_logps.append(_token_logps(p_logits, targets))
                r_logps.append(_token_logps(r_logits, targets))
                if with_kl:
                    p_log = p_logits.log_softmax(-1)
                    token_kl.append((p_log.exp() * (p_log - r_logits.log_softmax(-1))).sum(-1))
            sums = (
                _per_row(p_logps, p_scored, len(idx)),
                _per_row(r_logps, p_scored, len(idx)),
                _per_row(token_kl, p_scored, len(idx)) if with_kl else [0.0] * len(idx),
            )
            counts = p_scored.counts.cpu().tolist()
            for j, i in enumerate(idx):
                pol[i], ref[i], kls[i], tokens[i] = sums[0][j], sums[1][j], sums[2][j], counts[j]
            bar.update(len(idx))
    return SequenceScores(pol, ref, tokens, kls if with_kl else None)


def generate_from_reference(
    models: ScoringModels,
    prompt_ids: Sequence[list[int]],
    *,
    max_new_tokens: int,
    do_sample: bool,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 64,
) -> list[EncodedCompletion]:
    """One completion of each prompt sampled (or greedily decoded) from the reference model, as the scorer
    encodes it: prompt ids + generated ids, up to and including eos when the model produced it.

    Prompts are generated `batch_size` at a time, longest first, left-padded (every step then advances all
    of them at once). Sampling draws from the model's own distribution at `temperature`: no top-k/top-p cut
    and no repetition penalty, whatever the model's generation config says. It is seeded and leaves the
    global torch random state as it was.
    """
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    eos, pad = models.tokenizer.eos_token_id, models.tokenizer.pad_token_id
    decoding = (
        {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
        if do_sample
        else {"do_sample": False}
    )
    order = sorted(range(len(prompt_ids)), key=lambda i: -len(prompt_ids[i]))
    out: list[EncodedCompletion | None] = [None] * len(prompt_ids)
    devices = [models.device] if models.device.type == "cuda" else []
    with torch.inference_mode(), torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        with models.reference_model() as reference:
            for idx in _batches(order, batch_size):
                width = max(len(prompt_ids[i]) for i in idx)
                ids = torch.full((len(idx), width), pad, dtype=torch.long)
                attention = torch.zeros((len(idx), width), dtype=torch.long)
                for j, i in enumerate(idx):
                    n = len(prompt_ids[i])
                    ids[j, width - n :] = torch.tensor(prompt_ids[i], dtype=torch.long)
                    attention[j, width - n :] = 1
                generated = reference.generate(
                    input_ids=ids.to(models.device),
                    attention_mask=attention.to(models.device),
                    max_new_tokens=max_new_tokens,
                    pad_token_id=pad,
                    eos_token_id=eos,
                    repetition_penalty=1.0,
                    **decoding,
                )
                for j, i in enumerate(idx):
                    row = generated[j, width:].tolist()
                    completion = row[: row.index(eos) + 1] if eos is not None and eos in row else row
                    out[i] = EncodedCompletion(list(prompt_ids[i]) + completion, len(prompt_ids[i]), False)
    return [enc for enc in out if enc is not None]


def generate_answer(models: ScoringModels, statement: str, *, max_new_tokens: int = 48) -> str:
    """The policy's greedy answer when asked to judge `statement` (user turn: instruction + statement)."""
    import torch

    meta = models.metadata
    text = render_prompt(models.tokenizer, f"{meta.instruction}{statement}", meta.instruction)
    inputs = models.tokenizer(text, add_special_tokens=False, return_tensors="pt").to(models.device)
    with torch.inference_mode():
        out = models.policy.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=models.tokenizer.pad_token_id,
            eos_token_id=models.tokenizer.eos_token_id,
        )
    return models.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default); (nan, nan) when n == 0."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # Exact at the edges: rounding would otherwise leave 1e-17 above 0 (k = 0) or below 1 (k = n).
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


__all__ = [
    "CheckpointError",
    "DeviceError",
    "EncodedCompletion",
    "OptionScores",
    "PairScores",
    "ScoringModels",
    "StatementScore",
    "SequenceScores",
    "encode_completions",
    "encode_prompts",
    "encode_texts",
    "generate_from_reference",
    "prefix_token_id",
    "find_metadata_file",
    "generate_answer",
    "implicit_reward",
    "load_scoring_models",
    "resolve_metadata",
    "resolve_device",
    "score_encoded_options",
    "score_encoded_pairs",
    "score_encoded_pairs_cached",
    "score_sequences",
    "score_pairs",
    "score_statements",
    "wilson_interval",
]
