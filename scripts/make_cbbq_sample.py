"""Rebuild data/01_raw/benchmarks/cbbq_sample/ from a full copy of CBBQ.

    python scripts/make_cbbq_sample.py /path/to/CBBQ/data [--per-cell 24] [--seed 0]

The sample keeps CBBQ's own layout and columns (<category>/<condition>/<condition>.csv), so the evaluation
stage reads it exactly as it reads the full benchmark. Its rows are drawn from the questions the stage would
score in the full files (the importer's checks are applied to the whole file first: a disambiguated row
whose name-swapped twin contradicts its label is only recognisable there), `--per-cell` per category and
condition, half of each polarity where the data allow, seeded.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from edu_bias_pipeline.pipelines.evaluation import cbbq_qa  # noqa: E402

CATEGORIES = ("educational_qualification", "gender", "SES", "region")
DEST = ROOT / "data" / "01_raw" / "benchmarks" / "cbbq_sample"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cbbq", help="CBBQ's data/ folder")
    parser.add_argument("--per-cell", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    conf = ROOT / "conf" / "base"
    taxonomy = yaml.safe_load((conf / "parameters_data_validation.yml").read_text())["taxonomy"]
    import_params = yaml.safe_load((conf / "parameters_data_import.yml").read_text())["data_import"]
    config = {
        "cbbq_qa": {"categories": list(CATEGORIES), "sample_per_category": args.per_cell, "seed": args.seed}
    }
    questions, _ = cbbq_qa.read_cbbq_questions(args.cbbq, config, import_params, taxonomy)
    selected, _ = cbbq_qa.select_cbbq_questions(questions, config, {}, {})
    for (category, condition), group in selected.groupby(["cbbq_category", "condition"]):
        folder = {"disambiguated": "disambiguous"}.get(condition, condition)
        source = Path(group["source_file"].iloc[0])
        with source.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            header, rows = reader.fieldnames, list(reader)
        keep = sorted(int(r) for r in group["source_record"])  # 1-based data rows
        out = DEST / category / folder / f"{folder}.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows[r - 1] for r in keep)
        print(f"{out.relative_to(ROOT)}: {len(keep)} questions")


if __name__ == "__main__":
    main()
