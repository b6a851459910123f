"""Causal LMs whose preferences a test sets, for checking that a score moves the way its formula says.

They go through the real scorer (`scoring.py`'s plain padded forward pass: they are not one of the
architectures whose decoder it runs itself) and return `.logits` like a Hugging Face model.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch

from edu_bias_pipeline.dpo.contract import FinalMetadata
from edu_bias_pipeline.scoring import ScoringModels


class MemorisingLM(torch.nn.Module):
    """Uniform over the vocabulary, except on the token sequences it was given: there every next token
    gets `boost` extra logit, so each of those sequences is far more likely than any other text."""

    def __init__(self, vocab_size: int, preferred: list[list[int]], boost: float = 10.0) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.preferred = {tuple(ids) for ids in preferred}
        self.boost = boost
        self.anchor = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))  # a device and dtype to report

    def forward(self, input_ids, attention_mask=None, **_: object):
        batch, width = input_ids.shape
        logits = torch.zeros(batch, width, self.vocab_size, dtype=torch.float64)
        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        for b in range(batch):
            ids = input_ids[b][mask[b].bool()].tolist()
            if tuple(ids) in self.preferred:
                for t in range(len(ids) - 1):
                    logits[b, t, ids[t + 1]] = self.boost
        return SimpleNamespace(logits=logits)


def scripted_models(policy: torch.nn.Module, reference: torch.nn.Module, tokenizer) -> ScoringModels:
    """ScoringModels around two scripted modules, as `load_scoring_models` would hand them to the nodes."""
    return ScoringModels(
        policy=policy.eval(),
        reference=reference.eval(),
        tokenizer=tokenizer,
        metadata=FinalMetadata(base_model="scripted", beta=0.1),
        checkpoint=Path("scripted"),
        device=torch.device("cpu"),
        dtype=torch.float64,
    )
