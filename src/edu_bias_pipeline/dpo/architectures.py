"""Qwen2 architecture shapes for random-init models (benchmarks, GPU proofs): no hub download needed.

Dimensions as published for Qwen2-0.5B / 1.5B / 7B; `tiny` is the embedded default model's shape.
"""

from __future__ import annotations

from dataclasses import asdict

from edu_bias_pipeline.dpo.tiny_model import TinyModelSpec

QWEN2_VOCAB_SIZE = 151936
# dense bf16 of an H100/H200 SXM: the bare-TRL anchor's MFU denominator, which the benchmarks share
PEAK_BF16_FLOPS = 989e12

_tiny = asdict(TinyModelSpec())
_SHAPE = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
)
QWEN2_ARCHITECTURES: dict[str, dict] = {
    "0.5b": dict(
        hidden_size=896,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        intermediate_size=4864,
        tie_word_embeddings=True,
    ),
    "1.5b": dict(
        hidden_size=1536,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        intermediate_size=8960,
        tie_word_embeddings=True,
    ),
    "7b": dict(
        hidden_size=3584,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        intermediate_size=18944,
        tie_word_embeddings=False,
    ),
    "tiny": {k: _tiny[k] for k in _SHAPE} | {"tie_word_embeddings": True},
}
