"""CBBQ question-answering throughput: questions/s of the evaluation stage's scoring on a GPU.

Each question's three answers are scored after its own context and question, exactly as the stage does
(`scoring.encode_completions`, then `scoring.score_encoded_options` with `mix_prompts`: the batch's contexts
run once each, side by side, and every answer continues its own context's key/value cache), under a policy
and a reference: two random-init models of a Qwen2 architecture (`--arch`, no hub).

Two steps, because the questions are read by the project's CBBQ reader (Kedro, pydantic) and the GPU machine
needs only torch and transformers:

    python benchmarks/cbbq_throughput.py export /path/to/CBBQ/data questions.jsonl.gz   # here
    python benchmarks/cbbq_throughput.py run questions.jsonl.gz --tokenizer data/06_models/base_model

`run` prints one JSON line per batch size (also appended to `$OUT/cbbq.jsonl` when OUT is set): questions/s,
answer sequences/s, peak memory; `--compare-grouped` also times one question per batch (the batching that
pairs use, where questions never share a context) on the first questions. The tokenizer decides the token
counts: the embedded model's byte-level BPE (data/06_models/base_model) gives about one token per Chinese
character, close to Qwen2's own.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def export(cbbq: str, out: str) -> None:
    """Every question of a CBBQ copy the stage would score, as {prompt, answers} lines."""
    import yaml

    from edu_bias_pipeline.pipelines.evaluation import cbbq_qa

    conf = Path(__file__).resolve().parents[1] / "conf" / "base"
    taxonomy = yaml.safe_load((conf / "parameters_data_validation.yml").read_text())["taxonomy"]
    imports = yaml.safe_load((conf / "parameters_data_import.yml").read_text())["data_import"]
    questions, info = cbbq_qa.read_cbbq_questions(cbbq, {}, imports, taxonomy)
    with gzip.open(out, "wt", encoding="utf-8") as fh:
        for q in questions.to_dict("records"):
            fh.write(json.dumps({"prompt": q["prompt"], "answers": q["answers"]}, ensure_ascii=False) + "\n")
    print(f"{len(questions)} questions from {len(info['files'])} files -> {out}")


def run(args: argparse.Namespace) -> None:
    import torch
    from eval_throughput import QWEN2_0_5B, build_model, peak_memory_mib
    from transformers import AutoTokenizer

    from edu_bias_pipeline import scoring
    from edu_bias_pipeline.dpo.architectures import QWEN2_ARCHITECTURES, QWEN2_VOCAB_SIZE
    from edu_bias_pipeline.pairs import DEFAULT_INSTRUCTION

    with gzip.open(args.questions, "rt", encoding="utf-8") as fh:
        questions = [json.loads(line) for line in fh][: args.limit]
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    prompts = [q["prompt"] for q in questions for _ in q["answers"]]
    answers = [a for q in questions for a in q["answers"]]
    t0 = time.perf_counter()
    flat = scoring.encode_completions(tokenizer, prompts, answers, DEFAULT_INSTRUCTION)
    encode_s = time.perf_counter() - t0
    items = [flat[3 * i : 3 * i + 3] for i in range(len(questions))]

    device = scoring.resolve_device(args.device)
    dtype = scoring.resolve_dtype(args.dtype, device)
    arch = QWEN2_0_5B
    if args.arch != "0.5b":
        arch = dict(QWEN2_ARCHITECTURES[args.arch], vocab_size=QWEN2_VOCAB_SIZE)
    policy, reference = build_model(arch, 0, device, dtype), build_model(arch, 1, device, dtype)
    env = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "dtype": str(dtype).replace("torch.", ""),
        "arch": f"qwen2-{args.arch} (random init), policy + reference",
        "questions": len(items),
        "tokens_per_sequence": round(sum(len(e.input_ids) for e in flat) / len(flat), 1),
        "context_tokens_per_question": round(sum(item[0].n_prompt for item in items) / len(items), 1),
        "encode_s": round(encode_s, 2),
    }
    print(json.dumps({"env": env}), flush=True)

    def timed(subset, batch_size: int, mix: bool) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        scoring.score_encoded_options(
            (policy, reference), subset, pad_id=0, batch_size=batch_size, device=device, mix_prompts=mix
        )
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    timed(items[: max(args.batch_sizes)], max(args.batch_sizes), True)  # warm-up
    rows = []
    for batch_size in args.batch_sizes:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        try:
            seconds = timed(items, batch_size, True)
        except torch.OutOfMemoryError:
            print(json.dumps({"batch_size": batch_size, "error": "out of memory"}), flush=True)
            torch.cuda.empty_cache()
            continue
        rows.append(
            {
                "batch_size": batch_size,
                "mix_prompts": True,
                "seconds": round(seconds, 2),
                "questions_per_s": round(len(items) / seconds, 1),
                "peak_memory_mib": round(peak_memory_mib(device), 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    if args.compare_grouped:
        subset = items[: args.compare_grouped]
        seconds = timed(subset, max(args.batch_sizes), False)
        rows.append(
            {
                "batch_size": 1,
                "mix_prompts": False,
                "questions": len(subset),
                "seconds": round(seconds, 2),
                "questions_per_s": round(len(subset) / seconds, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "cbbq.jsonl"), "a", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps({**env, **row}) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="read a CBBQ copy through the project's reader (here)")
    ex.add_argument("cbbq")
    ex.add_argument("out")
    go = sub.add_parser("run", help="time the scoring (on the GPU)")
    go.add_argument("questions")
    go.add_argument("--tokenizer", default="data/06_models/base_model")
    go.add_argument("--arch", default="0.5b", choices=("0.5b", "1.5b", "7b"))
    go.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128, 256])
    go.add_argument("--limit", type=int, default=None, help="first N questions only")
    go.add_argument(
        "--compare-grouped", type=int, default=0, metavar="N", help="also time N questions unmixed"
    )
    go.add_argument("--device", default="auto")
    go.add_argument("--dtype", default="auto")
    args = parser.parse_args(argv)
    if args.command == "export":
        export(args.cbbq, args.out)
    else:
        run(args)


if __name__ == "__main__":
    main()
