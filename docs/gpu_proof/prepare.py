"""GPU proof setup (run on the device): a random-init Qwen2-0.5B-architecture model and train/val splits.

No hub there: the tokenizer is the embedded BPE one trained on the sample pairs (ChatML template), the model
is Qwen2Config with Qwen2-0.5B's dimensions (vocab padded to Qwen2's 151,936 rows).
    python docs/gpu_proof/prepare.py
"""

import json
import random
from pathlib import Path

from transformers import Qwen2Config, Qwen2ForCausalLM

from edu_bias_pipeline.dpo.architectures import QWEN2_ARCHITECTURES, QWEN2_VOCAB_SIZE
from edu_bias_pipeline.dpo.tiny_model import build_tiny_model
from edu_bias_pipeline.files import fingerprint_file

ROOT = Path(__file__).resolve().parents[2]
rows = [
    json.loads(line)
    for line in (ROOT / "data/01_raw/edu_bias_pairs.jsonl").open(encoding="utf-8")
    if line.strip()
]
split = []
for i, r in enumerate(rows):
    split.append(
        {
            "pair_id": str(i),
            "source_line": i + 1,
            "prompt": r.get("prompt"),
            "chosen": r["chosen"],
            "rejected": r["rejected"],
            "bias_type": r["meta"]["bias_type"],
            "warnings": [],
            "meta": {},
            "split": "train",
            "sample_weight": 1.0,
        }
    )
random.Random(0).shuffle(split)
out = ROOT / "data/05_model_input"
out.mkdir(parents=True, exist_ok=True)
for name, part in (("val", split[:46]), ("train", split[46:])):
    with (out / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(dict(r, split=name), ensure_ascii=False) + "\n" for r in part)
# Training reads only split files that split_report.json describes (edu_bias_pipeline.split_files).
files = {
    n: {"path": f"data/05_model_input/{n}.jsonl", **fingerprint_file(out / f"{n}.jsonl")}
    for n in ("train", "val")
}
report = ROOT / "data/08_reporting/split_report.json"
report.parent.mkdir(parents=True, exist_ok=True)
report.write_text(json.dumps({"seed": 0, "files": files}, indent=2), encoding="utf-8")

model_dir = ROOT / "data/06_models/qwen2_0_5b_random"
build_tiny_model([r["chosen"] for r in split] + [r["rejected"] for r in split], model_dir)
tok_cfg = Qwen2ForCausalLM.from_pretrained(model_dir).config
config = Qwen2Config(
    vocab_size=QWEN2_VOCAB_SIZE,
    max_position_embeddings=2048,
    **QWEN2_ARCHITECTURES["0.5b"],
    bos_token_id=None,
    eos_token_id=tok_cfg.eos_token_id,
    pad_token_id=tok_cfg.pad_token_id,
)
model = Qwen2ForCausalLM(config)
model.save_pretrained(model_dir)
print("model", model_dir, f"{sum(p.numel() for p in model.parameters()) / 1e9:.3f}B params")
