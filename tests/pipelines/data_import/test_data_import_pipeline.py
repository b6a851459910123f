"""The data_import stage run through real Kedro sessions, on the shared benchmark copies and own fixtures."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED_DIR, read_jsonl, run_pipeline, write_jsonl

CBBQ_DIR = SHARED_DIR / "datasets" / "cbbq"
CROWS_CSV = SHARED_DIR / "datasets" / "crows_pairs" / "data" / "crows_pairs_anonymized.csv"
needs_cbbq = pytest.mark.skipif(
    not (CBBQ_DIR / "data" / "educational_qualification").is_dir(),
    reason=f"CBBQ copy not found at {CBBQ_DIR} (set EDU_BIAS_SHARED_DIR to the folder holding datasets/cbbq)",
)
needs_crows = pytest.mark.skipif(
    not CROWS_CSV.is_file(),
    reason=f"CrowS-Pairs copy not found at {CROWS_CSV} (set EDU_BIAS_SHARED_DIR: folder with datasets/)",
)


def outputs(project: Path) -> tuple[list[dict], dict, list[dict]]:
    rows = read_jsonl(project / "data/03_primary/imported_pairs.jsonl")
    report = json.loads((project / "data/08_reporting/import_report.json").read_text(encoding="utf-8"))
    skipped = read_jsonl(project / "data/08_reporting/import_skipped.jsonl")
    return rows, report, skipped


@needs_cbbq
def test_cbbq_educational_qualification_real_copy(project):
    run_pipeline(
        project,
        "data_import",
        params={
            "data_import": {
                "cbbq": {
                    "path": str(CBBQ_DIR),
                    "categories": "educational_qualification",
                    "conditions": "ambiguous+disambiguous",
                }
            }
        },
    )
    rows, report, skipped = outputs(project)
    (source,) = report["sources"]
    assert source["source"] == "CBBQ" and source["license"] == "CC BY-SA 4.0"
    # 1392 ambiguous + 1392 disambiguated rows in the release; every one is imported or skipped with a reason.
    assert source["rows_read"] == 2784 == len(rows) + len(skipped)
    assert source["rows_imported"] == len(rows) and source["rows_skipped"] == len(skipped)
    assert report["rows_imported"] == len(rows)
    edu = source["per_category"]["educational_qualification"]
    assert edu["bias_type"] == "educational_qualification" and edu["rows_read"] == 2784
    assert sum(edu["skipped_by_reason"].values()) == edu["rows_skipped"] == len(skipped)
    # The release's unfilled "{{NAME2]}" template rows (20 per condition) are skipped, never imported.
    assert edu["skipped_by_reason"]["unfilled_placeholder"] == 80
    assert not any("{" in r["prompt"] + r["chosen"] + r["rejected"] for r in rows)
    assert {r["meta"]["license"] for r in rows} == {"CC BY-SA 4.0"}
    assert {r["meta"]["bias_type"] for r in rows} == {"educational_qualification"}
    unknown = {"不知道", "不确定", "无法判断", "没有足够信息"}
    ambiguous = [r for r in rows if r["meta"]["context_condition"] == "ambiguous"]
    assert len(ambiguous) > 1200
    assert {r["chosen"] for r in ambiguous} == unknown  # all four wordings of the release occur
    assert all(r["rejected"] not in unknown and r["prompt"].endswith("？") for r in ambiguous)
    first = next(r for r in ambiguous if r["meta"]["example_id"] == "1")
    assert first["rejected"] == "毕业院校层次更低的毕业生" and first["chosen"] == "没有足够信息"
    # Disambiguated rows whose label was copied onto a context with the facts swapped are all reported.
    assert edu["skipped_by_reason"]["label_ignores_name_swap"] > 1000
    for row in rows:
        if row["meta"]["context_condition"] == "disambiguous":
            assert row["chosen"] not in unknown and row["rejected"] not in unknown
    reasons = {s["reason"] for s in skipped}
    assert reasons == set(edu["skipped_by_reason"])
    assert all(s["file"].endswith(".csv") and s["record"] >= 1 and s["detail"] for s in skipped)


@needs_crows
def test_crows_pairs_real_copy_is_eval_only_and_never_flipped(project):
    run_pipeline(project, "data_import", params={"data_import": {"crows_pairs": {"path": str(CROWS_CSV)}}})
    rows, report, skipped = outputs(project)
    with CROWS_CSV.open(encoding="utf-8") as fh:
        source_rows = {r[""]: r for r in csv.DictReader(fh)}
    assert len(rows) + len(skipped) == len(source_rows) == report["rows_read"] == 1508
    assert all(s["reason"] == "duplicate_pair" for s in skipped)  # the release has one exact duplicate
    directions = set()
    for row in rows:
        original = source_rows[row["meta"]["crows_id"]]
        assert (row["rejected"], row["chosen"]) == (
            original["sent_more"].strip(),
            original["sent_less"].strip(),
        )
        assert row["meta"]["eval_only"] is True and row["meta"]["license"] == "CC BY-SA 4.0"
        directions.add(row["meta"]["stereo_antistereo"])
    assert directions == {"stereo", "antistereo"}
    per_category = report["sources"][0]["per_category"]
    assert per_category["race-color"]["bias_type"] == "ethnicity"
    assert per_category["sexual-orientation"]["bias_type"] == "gender_sexuality"
    assert per_category["physical-appearance"]["bias_type"] == "physical_appearance"
    assert per_category["socioeconomic"]["bias_type"] == "socioeconomic"
    assert report["sources"][0]["eval_only"] is True


def test_generic_jsonl_with_column_mapping_and_a_broken_line(project, tmp_path):
    src = write_jsonl(
        tmp_path / "mine.jsonl",
        [
            {
                "good": "两类学校的毕业生都可能胜任。",
                "bad": "普通学校毕业的人能力差。",
                "info": {"label": "学历"},
            },
            '{"good": "broken',
            {"good": "老人也能学会新技术。", "bad": "老人学不会新技术。", "info": {"label": "ageism"}},
            {"good": "x", "bad": "y", "info": {"label": "星座"}},
            {
                "good": "两类学校的毕业生都可能胜任。",
                "bad": "普通学校毕业的人能力差。",
                "info": {"label": "学历"},
            },
        ],
    )
    run_pipeline(
        project,
        "data_import",
        params={
            "data_import": {
                "generic": {
                    "path": str(src),
                    "source": "my-pairs",
                    "license": "CC-BY-4.0",
                    "columns": {"chosen": "good", "rejected": "bad", "bias_type": "info.label"},
                    "bias_type_map": {"学历": "educational_qualification"},
                }
            }
        },
    )
    rows, report, skipped = outputs(project)
    assert [r["meta"]["bias_type"] for r in rows] == ["educational_qualification", "age"]
    assert {r["meta"]["source"] for r in rows} == {"my-pairs"}
    assert [(s["record"], s["reason"]) for s in skipped] == [
        (2, "invalid_json"),
        (4, "unknown_bias_type"),
        (5, "duplicate_pair"),
    ]
    source = report["sources"][0]
    assert source["skipped_by_reason"] == {"invalid_json": 1, "unknown_bias_type": 1, "duplicate_pair": 1}
    assert source["per_category"]["学历"] == {
        "bias_type": "educational_qualification",
        "rows_read": 2,
        "rows_imported": 1,
        "rows_skipped": 1,
        "skipped_by_reason": {"duplicate_pair": 1},
    }
    assert source["license"] == "CC-BY-4.0" and source["rows_read"] == 5


def test_no_source_configured_gives_a_clear_message(project):
    with pytest.raises(ValueError, match=r"(?s)no source configured.*data_import\.cbbq\.path="):
        run_pipeline(project, "data_import")


def test_a_path_pointing_nowhere_names_the_parameter(project):
    with pytest.raises(
        FileNotFoundError, match=r"(?s)data_import\.crows_pairs\.path = '/nowhere/crows\.csv'.*not found"
    ):
        run_pipeline(
            project, "data_import", params={"data_import": {"crows_pairs": {"path": "/nowhere/crows.csv"}}}
        )


def test_bad_parameters_are_named(project, tmp_path):
    with pytest.raises(ValueError, match=r"data_import\.cbbq\.conditions\.0"):
        run_pipeline(
            project,
            "data_import",
            params={"data_import": {"cbbq": {"path": str(tmp_path), "conditions": "vague"}}},
        )
    with pytest.raises(ValueError, match=r"data_import\.generic\.license is required"):
        run_pipeline(project, "data_import", params={"data_import": {"generic": {"path": str(tmp_path)}}})


def _mini_cbbq(root: Path) -> Path:
    folder = root / "data" / "educational_qualification" / "ambiguous"
    folder.mkdir(parents=True)
    header = (
        "example_id,question_index,question_polarity,context_condition,category,subcategory,"
        "bias_targeted_groups,source,context,question,ans0,ans1,ans2,label"
    )
    lines = [
        "1,1,neg,ambiguous,educational_qualification,招聘,学历差异人群,s,一个是本科，一个是高中。,谁更不会被选择？,"
        "低学历的,高学历的,不知道,2",
        "2,1,neg,ambiguous,educational_qualification,招聘,学历差异人群,s,一个是高中，一个是本科。,谁更不会被选择？,"
        "低学历的,高学历的,无法判断,2",
        "3,1,neg,ambiguous,educational_qualification,招聘,学历差异人群,s,一个是初中，一个是{{NAME2]}。,谁更不会被选择？,"
        "低学历的,高学历的,不确定,2",
    ]
    (folder / "ambiguous.csv").write_text("\ufeff" + "\n".join([header, *lines]) + "\n", encoding="utf-8")
    return root


def test_import_then_validate_keeps_license_and_source(project, tmp_path):
    """The imported file is what data_validation reads (`--params raw_pairs_path=`), meta preserved."""
    root = _mini_cbbq(tmp_path / "CBBQ")
    run_pipeline(project, "data_import", params={"data_import": {"cbbq": {"path": str(root)}}})
    rows, report, _ = outputs(project)
    assert len(rows) == 2 and report["sources"][0]["missing_files"] == []
    run_pipeline(
        project, "data_validation", params={"raw_pairs_path": "data/03_primary/imported_pairs.jsonl"}
    )
    validated = read_jsonl(project / "data/02_intermediate/validated_pairs.jsonl")
    assert len(validated) == 2
    assert {v["bias_type"] for v in validated} == {"educational_qualification"}
    assert all(v["meta"]["license"] == "CC BY-SA 4.0" and v["meta"]["source"] == "CBBQ" for v in validated)
    assert [v["prompt"] for v in validated] == [
        "一个是本科，一个是高中。谁更不会被选择？",
        "一个是高中，一个是本科。谁更不会被选择？",
    ]


def test_data_import_run_does_not_import_torch(project, tmp_path):
    root = _mini_cbbq(tmp_path / "CBBQ")
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, 'tests');"
        "from conftest import run_pipeline;"
        f"run_pipeline(Path({str(project)!r}), 'data_import',"
        f" params={{'data_import': {{'cbbq': {{'path': {str(root)!r}}}}}}});"
        "print('TORCH_LOADED' if 'torch' in sys.modules else 'TORCH_NOT_LOADED')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TORCH_NOT_LOADED" in result.stdout


@needs_cbbq
def test_cbbq_whole_release_every_row_accounted_for(project):
    run_pipeline(
        project,
        "data_import",
        params={
            "data_import": {"cbbq": {"path": str(CBBQ_DIR / "data"), "conditions": "ambiguous+disambiguous"}}
        },
    )
    rows, report, skipped = outputs(project)
    (source,) = report["sources"]
    assert source["rows_read"] == sum(f["rows_read"] for f in source["files"]) == len(rows) + len(skipped)
    # The release has only templates for race and for three disambiguated conditions: reported, not fatal.
    missing = {(m["category"], m["condition"]) for m in source["missing_files"]}
    assert ("race", "ambiguous") in missing and ("age", "disambiguous") in missing
    unknown = {"不知道", "不确定", "无法判断", "没有足够信息"}
    for row in rows:
        meta = row["meta"]
        assert not any(ch in row["prompt"] + row["chosen"] + row["rejected"] for ch in "{}")
        assert meta["license"] == "CC BY-SA 4.0" and meta["source"] == "CBBQ"
        if meta["context_condition"] == "ambiguous":
            assert row["chosen"] in unknown and row["rejected"] not in unknown
        else:
            assert row["chosen"] not in unknown and row["rejected"] not in unknown
    bias_types = {c: v["bias_type"] for c, v in source["per_category"].items()}
    assert bias_types["gender"] == bias_types["sexual_orientation"] == "gender_sexuality"
    assert bias_types["SES"] == "socioeconomic" and bias_types["household_registration"] == "region"
    assert set(report["imported_per_bias_type"]) <= {
        "gender_sexuality",
        "region",
        "socioeconomic",
        "educational_qualification",
        "disability",
        "ethnicity",
        "age",
        "physical_appearance",
        "religion",
        "nationality",
        "disease",
    }


def test_the_report_names_the_files_where_the_catalog_puts_them(project, tmp_path):
    """The catalog is the one place the stage's paths are set: move its entries and the report follows."""
    moved = {
        "data/03_primary/imported_pairs.jsonl": "data/03_primary/moved/pairs.jsonl",
        "data/08_reporting/import_skipped.jsonl": "data/08_reporting/moved/skipped.jsonl",
    }
    catalog = project / "conf/base/catalog.yml"
    text = catalog.read_text(encoding="utf-8")
    for old, new in moved.items():
        assert text.count(f"filepath: {old}\n") == 1, old
        text = text.replace(f"filepath: {old}\n", f"filepath: {new}\n")
    catalog.write_text(text, encoding="utf-8")
    root = _mini_cbbq(tmp_path / "CBBQ")
    run_pipeline(project, "data_import", params={"data_import": {"cbbq": {"path": str(root)}}})
    report = json.loads((project / "data/08_reporting/import_report.json").read_text(encoding="utf-8"))
    assert (report["output"], report["skipped_rows_file"]) == tuple(moved.values())
    assert (
        len(read_jsonl(project / moved["data/03_primary/imported_pairs.jsonl"]))
        == report["rows_imported"]
        == 2
    )
    assert (
        len(read_jsonl(project / moved["data/08_reporting/import_skipped.jsonl"])) == report["rows_skipped"]
    )
    assert not any((project / old).exists() for old in moved)
