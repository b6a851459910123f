"""Nodes of the data_import stage: a downloaded benchmark -> raw pairs + an import report.

The benchmark copies live outside the project (the product does not ship them) and are picked by
parameters: a CBBQ folder with a category/condition tree, a CrowS-Pairs CSV, any CSV/JSONL. So the source
nodes read the files the parameters name (CBBQ's tree cannot be a single catalog entry whose category and
condition selection is a parameter); everything the stage writes goes through the catalog.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from edu_bias_pipeline.pairs import META
from edu_bias_pipeline.pipelines.data_import import importers as I
from edu_bias_pipeline.pipelines.data_import.cbbq import read_cbbq_files
from edu_bias_pipeline.pipelines.data_import.config import PARAMS_HINT, ImportConfig
from edu_bias_pipeline.pipelines.data_import.tables import ImportSourceError, read_csv_table, read_jsonl_table

logger = logging.getLogger(__name__)


def check_import_params(params: ImportConfig) -> ImportConfig:
    """The validated `data_import` group (typed, so Kedro validates it when the run starts), if it names a
    source to import."""
    config = ImportConfig.parse(params)
    if not config.enabled():
        raise ValueError(
            "data_import: no source configured. The benchmarks are not shipped with the project: "
            "download one "
            "and point its path at your copy, e.g.\n"
            "  kedro run --pipelines data_import --params data_import.cbbq.path=/path/to/CBBQ/data\n"
            "  kedro run --pipelines data_import --params data_import.crows_pairs.path="
            "/path/to/crows_pairs_anonymized.csv\n"
            f"or set data_import.<cbbq|crows_pairs|generic>.path in {PARAMS_HINT}."
        )
    return config


# ------------------------------------------------------------------------------------------------ reading
def _existing(path_text: str, what: str, key: str) -> Path:
    path = Path(path_text).expanduser()
    if not path.exists():
        raise ImportSourceError(
            f"data_import.{key}.path = {path_text!r}: {what} not found at {path.resolve()}. "
            "The project does not "
            f"ship this dataset; download it and set data_import.{key}.path to your copy ({PARAMS_HINT})."
        )
    return path


# ------------------------------------------------------------------------------------------ source nodes
def _result(name: str, source: str, license: str | None, path: str | None, eval_only: bool) -> dict[str, Any]:
    return {
        "importer": name,
        "source": source,
        "license": license,
        "path": path,
        "eval_only": eval_only,
        "rows": [],
        "skipped": [],
        "rows_read": 0,
        "files": [],
        "missing_files": [],
    }


def import_cbbq_source(config: ImportConfig, taxonomy: dict[str, Any]) -> dict[str, Any]:
    cfg = config.cbbq
    if not cfg.path:
        return {}  # disabled (Kedro does not save None)
    path = _existing(cfg.path, "CBBQ folder", "cbbq")
    result = _result("cbbq", I.CBBQ_SOURCE, cfg.license, cfg.path, cfg.eval_only)
    for file in read_cbbq_files(path, cfg.categories, cfg.conditions):
        where = f"CBBQ {file.category}/{file.condition}"
        if file.frame is None:
            result["missing_files"].append(
                {
                    "file": str(file.path),
                    "category": file.category,
                    "condition": file.condition,
                    "note": file.missing,
                }
            )
            logger.warning("%s: %s not found (%s); skipped", where, file.path, file.missing)
            continue
        rows, skipped = I.import_cbbq(
            file.frame,
            taxonomy=taxonomy,
            license=cfg.license,
            unknown_answers=cfg.unknown_answers,
            target_markers=cfg.target_markers,
            condition=file.condition,
            category=file.category,
            eval_only=cfg.eval_only,
        )
        read = len(file.frame)
        result["rows"].extend(rows)
        result["skipped"].extend(skipped)
        result["rows_read"] += read
        result["files"].append(
            {
                "file": str(file.path),
                "category": file.category,
                "condition": file.condition,
                "rows_read": read,
                "rows_imported": len(rows),
            }
        )
        logger.info("%s: %d rows read, %d imported, %d skipped", where, read, len(rows), len(skipped))
    return result


def import_crows_pairs_source(config: ImportConfig, taxonomy: dict[str, Any]) -> dict[str, Any]:
    cfg = config.crows_pairs
    if not cfg.path:
        return {}  # disabled (Kedro does not save None)
    path = _existing(cfg.path, "CrowS-Pairs CSV", "crows_pairs")
    if path.is_dir():
        candidates = sorted(path.rglob("crows_pairs_anonymized.csv"))
        if not candidates:
            raise ImportSourceError(
                f"data_import.crows_pairs.path = {cfg.path!r}: no crows_pairs_anonymized.csv "
                "inside; point it at the CSV file"
            )
        path = candidates[0]
    frame = read_csv_table(path)
    rows, skipped = I.import_crows_pairs(
        frame, taxonomy=taxonomy, license=cfg.license, eval_only=cfg.eval_only
    )
    result = _result("crows_pairs", I.CROWS_SOURCE, cfg.license, cfg.path, True)
    result.update(
        rows=rows,
        skipped=skipped,
        rows_read=len(frame),
        files=[{"file": str(path), "rows_read": len(frame), "rows_imported": len(rows)}],
    )
    logger.info(
        "CrowS-Pairs: %d rows read, %d imported (eval_only), %d skipped", len(frame), len(rows), len(skipped)
    )
    return result


def import_generic_source(config: ImportConfig, taxonomy: dict[str, Any]) -> dict[str, Any]:
    cfg = config.generic
    if not cfg.path:
        return {}  # disabled (Kedro does not save None)
    path = _existing(cfg.path, "input file", "generic")
    if not path.is_file():
        raise ImportSourceError(f"data_import.generic.path = {cfg.path!r} is not a file")
    fmt = cfg.format
    if fmt == "auto":
        suffix = path.suffix.lower()
        fmt = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".tsv": "tsv"}.get(suffix, "csv")
    frame = (
        read_jsonl_table(path) if fmt == "jsonl" else read_csv_table(path, sep="\t" if fmt == "tsv" else ",")
    )
    rows, skipped = I.import_generic(
        frame,
        taxonomy=taxonomy,
        columns=cfg.columns.model_dump(),
        source=cfg.source,
        license=cfg.license or "",
        bias_type=cfg.bias_type,
        bias_type_map=cfg.bias_type_map,
        meta_columns=cfg.meta_columns,
        eval_only=cfg.eval_only,
    )
    result = _result("generic", cfg.source, cfg.license, cfg.path, cfg.eval_only)
    result.update(
        rows=rows,
        skipped=skipped,
        rows_read=len(frame),
        files=[{"file": str(path), "format": fmt, "rows_read": len(frame), "rows_imported": len(rows)}],
    )
    logger.info("%s: %d rows read, %d imported, %d skipped", cfg.source, len(frame), len(rows), len(skipped))
    return result


# ------------------------------------------------------------------------------------------------ combine
def _source_report(
    result: dict[str, Any],
    kept: list[dict[str, Any]],
    skipped: list[dict[str, Any]],
    examples_per_reason: int,
) -> dict[str, Any]:
    per_category: dict[str, dict[str, Any]] = defaultdict(
        lambda: {
            "bias_type": None,
            "rows_read": 0,
            "rows_imported": 0,
            "rows_skipped": 0,
            "skipped_by_reason": Counter(),
        }
    )
    per_condition: Counter = Counter()
    for row in kept:
        meta = row[META]
        entry = per_category[I.row_category(meta)]
        entry["bias_type"] = meta["bias_type"]
        entry["rows_imported"] += 1
        entry["rows_read"] += 1
        if meta.get("context_condition"):
            per_condition[meta["context_condition"]] += 1
    examples: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for skip in skipped:
        entry = per_category[str(skip.get("category") or "(none)")]
        entry["rows_skipped"] += 1
        entry["rows_read"] += 1
        entry["skipped_by_reason"][skip["reason"]] += 1
        if len(examples[skip["reason"]]) < examples_per_reason:
            examples[skip["reason"]].append({k: skip[k] for k in ("file", "record", "id", "detail")})
    report = {
        "importer": result["importer"],
        "source": result["source"],
        "license": result["license"],
        "path": result["path"],
        "eval_only": result["eval_only"],
        "rows_read": result["rows_read"],
        "rows_imported": len(kept),
        "rows_skipped": len(skipped),
        "skipped_by_reason": dict(Counter(s["reason"] for s in skipped).most_common()),
        "per_category": {
            name: {**entry, "skipped_by_reason": dict(entry["skipped_by_reason"].most_common())}
            for name, entry in sorted(per_category.items())
        },
        "files": result["files"],
        "missing_files": result["missing_files"],
        "skipped_examples": dict(examples),
    }
    if per_condition:
        report["imported_per_condition"] = dict(per_condition)
    return report


def _jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def combine_imports(
    config: ImportConfig, locations: dict[str, str], *results: dict[str, Any]
) -> tuple[str, dict[str, Any], str]:
    """All enabled sources -> one raw pairs file (duplicates dropped, reported), the report, skipped rows.

    `locations` (catalog `data_import_locations`): the `output` and `skipped_rows_file` the report names."""
    results_list = [r for r in results if r]
    all_rows = [row for r in results_list for row in r["rows"]]
    kept, duplicates = I.drop_duplicate_pairs(all_rows)
    kept_ids = {id(row) for row in kept}
    sources = []
    all_skipped: list[dict[str, Any]] = []
    for result in results_list:
        mine = [row for row in result["rows"] if id(row) in kept_ids]
        skipped = result["skipped"] + [d for d in duplicates if d["source"] == result["source"]]
        if result["rows_read"] != len(mine) + len(skipped):
            raise RuntimeError(
                f"{result['source']}: {result['rows_read']} rows read but "
                f"{len(mine)} imported + {len(skipped)} skipped; importer bug"
            )
        sources.append(_source_report(result, mine, skipped, config.skipped_examples_per_reason))
        all_skipped.extend(skipped)
    report = {
        "output": locations["output"],
        "skipped_rows_file": locations["skipped_rows_file"],
        "rows_read": sum(s["rows_read"] for s in sources),
        "rows_imported": len(kept),
        "rows_skipped": len(all_skipped),
        "imported_per_bias_type": dict(Counter(row[META]["bias_type"] for row in kept).most_common()),
        "sources": sources,
    }
    if not kept:
        logger.warning("data_import: every row was skipped; see %s", locations["skipped_rows_file"])
    for source in sources:
        logger.info(
            "%s (%s): %d read, %d imported, %d skipped %s",
            source["source"],
            source["license"],
            source["rows_read"],
            source["rows_imported"],
            source["rows_skipped"],
            source["skipped_by_reason"] or "",
        )
    return _jsonl(kept), report, _jsonl(all_skipped)
