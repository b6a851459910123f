"""The embedded default model: a byte-level BPE tokenizer trained on the pairs and a random-init Qwen2.

It exists so the whole pipeline runs offline on a CPU in about a minute; it is not meant to be good.
The build is deterministic in (texts, spec) and cached: a directory whose fingerprint matches is reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from edu_bias_pipeline.dpo.permissions import apply_umask
from edu_bias_pipeline.files import replace_directory

logger = logging.getLogger(__name__)

FINGERPRINT_FILE = "edu_bias_tiny_model.json"
EMBEDDED_MODEL_NAME = "embedded-tiny-qwen2"

# Qwen2's own ChatML template, so the tiny model and Qwen/Qwen2-*-Instruct format prompts alike.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


@dataclass(frozen=True)
class TinyModelSpec:
    vocab_size: int = 3000
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    intermediate_size: int = 176
    max_position_embeddings: int = 512
    seed: int = 0


def _fingerprint(texts: list[str], spec: TinyModelSpec) -> str:
    digest = hashlib.sha256(json.dumps(asdict(spec), sort_keys=True).encode())
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:16]


def is_cached(output_dir: Path, fingerprint: str) -> bool:
    marker = Path(output_dir) / FINGERPRINT_FILE
    if not marker.exists():
        return False
    try:
        return json.loads(marker.read_text(encoding="utf-8")).get("fingerprint") == fingerprint
    except (OSError, json.JSONDecodeError):
        return False


def build_tiny_model(texts: Iterable[str], output_dir: str | Path, spec: TinyModelSpec | None = None) -> Path:
    """Build (or reuse) the tiny model + tokenizer in `output_dir`; returns the directory.

    The directory is written beside its final place and renamed into it, so a reader never sees a
    half-written model.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    spec = spec or TinyModelSpec()
    corpus = sorted({t for t in texts if t})
    if not corpus:
        raise ValueError("cannot build the embedded tiny model: no training texts were given")
    output_dir = Path(output_dir)
    fingerprint = _fingerprint(corpus, spec)
    if is_cached(output_dir, fingerprint):
        logger.info("Reusing embedded tiny model at %s (fingerprint %s)", output_dir, fingerprint)
        return output_dir

    logger.info("Building embedded tiny Qwen2 model from %d texts into %s", len(corpus), output_dir)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # The chat scaffolding is part of every training sequence, so the tokenizer learns it too.
    bpe.train_from_iterator(corpus + ["user\nassistant\nsystem\n"], trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=spec.max_position_embeddings,
    )
    tokenizer.chat_template = CHAT_TEMPLATE

    torch.manual_seed(spec.seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / FINGERPRINT_FILE).write_text(
            json.dumps(
                {
                    "name": EMBEDDED_MODEL_NAME,
                    "fingerprint": fingerprint,
                    "spec": asdict(spec),
                    "n_texts": len(corpus),
                },
                indent=2,
            ),
            encoding="utf-8",
        )
        apply_umask(tmp)  # save_pretrained writes 0600 weights whatever the umask

    # built beside output_dir and swapped in: a reader sees the previous model or the whole new one
    replace_directory(output_dir, write)
    return output_dir
