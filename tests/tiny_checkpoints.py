"""Tiny "trained" checkpoints for the evaluation / scoring / CLI tests, built without the training stage.

- base: `build_tiny_model` (random-init Qwen2 + BPE tokenizer with the ChatML template)
- full: the base model with perturbed weights in `<root>/dpo_model/final/` + edu_bias_training.json,
  and the same weights again as `<root>/dpo_model/checkpoint-2/` (no metadata, like a mid-run checkpoint)
- lora: a peft LoRA adapter with non-zero init in `<root>/lora_model/final/` + metadata

Built once per test session (about 5 s) and shared by every test module through `get_checkpoints`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from edu_bias_pipeline.pairs import DEFAULT_INSTRUCTION

BETA = 0.25
MAX_LENGTH = 96  # small enough that LONG_STATEMENT gets truncated

CATEGORIES = ("gender_sexuality", "region", "socioeconomic")
STATEMENTS = {
    "gender_sexuality": [
        ("无论性别，逻辑与语言能力都能通过训练提升。", "男生天生逻辑更好；女生适合语言类专业。"),
        ("领导能力取决于经验与情商，与性别无关。", "女性情绪化，不适合当领导。"),
        ("女生也可以学好物理。", "女生学不好物理。"),
    ],
    "region": [
        ("农村学生同样可以考上好大学。", "农村学生素质低，考不上好大学。"),
        ("学习成绩与出生地没有必然关系。", "外地学生成绩一定差。"),
    ],
    "socioeconomic": [
        ("家庭收入不决定孩子的学习能力。", "穷人家的孩子天生笨。"),
        ("奖学金应按学业表现评定。", "家境好的学生才配拿奖学金。"),
    ],
}
LONG_STATEMENT = "每个学生都有自己的长处，" * 12 + "老师应当因材施教。"
# Only part of the statements: the others tokenise into several pieces, as real text does.
TOKENIZER_TEXTS = [
    DEFAULT_INSTRUCTION,
    "学生 老师 学习 成绩 能力 性别 农村 家庭 收入 大学 领导 逻辑 语言",
    "无论性别，逻辑与语言能力都能通过训练提升。",
    "女性情绪化，不适合当领导。",
]


@dataclass(frozen=True)
class TinyCheckpoints:
    root: Path
    base: Path
    full: Path  # dpo_model/final: perturbed full model + metadata
    full_step: Path  # dpo_model/checkpoint-2: same weights, no metadata of its own
    lora: Path  # lora_model/final: adapter + metadata


def pair_rows(with_prompt: bool = True, with_long: bool = True) -> list[dict]:
    """Split-output rows (the test.jsonl contract) over CATEGORIES."""
    rows = []
    line = 0
    for category, pairs in STATEMENTS.items():
        for chosen, rejected in pairs:
            line += 1
            rows.append(
                {
                    "pair_id": f"p{line:03d}",
                    "source_line": line,
                    "prompt": None,
                    "chosen": chosen,
                    "rejected": rejected,
                    "bias_type": category,
                    "warnings": [],
                    "meta": {},
                    "split": "test",
                    "sample_weight": 1.0,
                }
            )
    if with_prompt:
        rows[1]["prompt"] = "这句话公平吗？"
    if with_long:
        line += 1
        rows.append(
            {
                "pair_id": f"p{line:03d}",
                "source_line": line,
                "prompt": None,
                "chosen": LONG_STATEMENT,
                "rejected": "学生的长处不重要。",
                "bias_type": "region",
                "warnings": [],
                "meta": {},
                "split": "test",
                "sample_weight": 1.0,
            }
        )
    return rows


def _metadata(base: Path, is_adapter: bool) -> dict:
    return {
        "base_model": str(base),
        "is_adapter": is_adapter,
        "beta": BETA,
        "instruction": DEFAULT_INSTRUCTION,
        "max_length": MAX_LENGTH,
        "trust_remote_code": False,
    }


def build_checkpoints(root: Path) -> TinyCheckpoints:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from edu_bias_pipeline.dpo.tiny_model import TinyModelSpec, build_tiny_model

    base = build_tiny_model(TOKENIZER_TEXTS, root / "base_model", TinyModelSpec(vocab_size=400))
    tokenizer = AutoTokenizer.from_pretrained(base)

    model = AutoModelForCausalLM.from_pretrained(base)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.2 * torch.randn(param.shape, generator=generator))
    full = root / "dpo_model" / "final"
    full_step = root / "dpo_model" / "checkpoint-2"
    for out in (full, full_step):
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    (full / "edu_bias_training.json").write_text(json.dumps(_metadata(base, False)), encoding="utf-8")

    torch.manual_seed(11)
    lora_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(
            r=4,
            lora_alpha=8,
            target_modules=["q_proj", "v_proj", "up_proj"],
            init_lora_weights=False,
            task_type="CAUSAL_LM",
        ),
    )
    lora = root / "lora_model" / "final"
    lora_model.save_pretrained(lora)
    tokenizer.save_pretrained(lora)
    (lora / "edu_bias_training.json").write_text(json.dumps(_metadata(base, True)), encoding="utf-8")
    return TinyCheckpoints(root, base, full, full_step, lora)


_CACHE: dict[str, TinyCheckpoints] = {}


def with_recorded_reference(checkpoint: Path, dest: Path, sha: str = "ab" * 32) -> Path:
    """A copy of `checkpoint` whose metadata records its reference's hash, as gpu-profile training does."""
    shutil.copytree(checkpoint, dest)
    meta_file = dest / "edu_bias_training.json"
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    meta_file.write_text(json.dumps({**meta, "reference_sha256": sha}), encoding="utf-8")
    return dest


def get_checkpoints(tmp_path_factory) -> TinyCheckpoints:
    """One build per test session, whichever module asks first."""
    if "built" not in _CACHE:
        _CACHE["built"] = build_checkpoints(tmp_path_factory.mktemp("tiny_checkpoints"))
    return _CACHE["built"]


def plain_logp_float64(
    model, tokenizer, prompt, statement, instruction=DEFAULT_INSTRUCTION, max_length=MAX_LENGTH
) -> float:
    """Independent of scoring.py: one unpadded float64 forward pass, log_softmax and gather by hand.

    Token ids per the contract: rendered prompt, then the statement, then eos; cut to max_length
    keeping the start; only completion tokens are summed.
    """
    import torch

    from edu_bias_pipeline.pairs import render_prompt

    prompt_text = render_prompt(tokenizer, prompt, instruction)
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(statement, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = (prompt_ids + completion_ids)[:max_length]
    x = torch.tensor([ids])
    with torch.no_grad():
        logits = model(input_ids=x).logits[0].to(torch.float64)
    logps = torch.log_softmax(logits[:-1], dim=-1).gather(1, x[0, 1:].unsqueeze(1)).squeeze(1)
    # logps[i] is the log-prob of token i + 1; completion tokens start at index len(prompt_ids).
    return float(logps[len(prompt_ids) - 1 :].sum())


def float64_models(checkpoints: TinyCheckpoints, which: str):
    """(policy, reference) loaded independently in float64: the reference is always the plain base model."""
    import torch
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(checkpoints.base, dtype=torch.float64).eval()
    if which == "lora":
        from peft import PeftModel

        policy_base = AutoModelForCausalLM.from_pretrained(checkpoints.base, dtype=torch.float64)
        policy = PeftModel.from_pretrained(policy_base, str(checkpoints.lora)).double().eval()
    else:
        policy = AutoModelForCausalLM.from_pretrained(getattr(checkpoints, which), dtype=torch.float64).eval()
    return policy, base
