"""The Data Docs as a user opens them: real Kedro run, real GX, pages read in headless Chromium offline.

* they state the same verdict as validation_summary.json, and the failing row-check expectations are
  exactly the checks that flagged rows;
* hostile texts from the data are shown as text, never run;
* every CSS/JS/font is local: the pages are styled, jQuery/bootstrap-table/Font Awesome work, and no
  request leaves the machine.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import run_pipeline, write_jsonl
from dv_fixtures import clean_pairs, dirty_file
from headless_chromium import external_urls, open_page, visible_text

from edu_bias_pipeline.pipelines.data_validation.nodes import DataValidationError

RAW = Path("data/01_raw/edu_bias_pairs.jsonl")
SUMMARY = Path("data/08_reporting/validation_summary.json")
SITE = Path("data/08_reporting/data_docs")
LENIENT = {"data_validation": {"max_error_rate": 1.0, "min_pairs_per_category": 3}}
BOOTSTRAP_SUCCESS_GREEN = "rgb(40, 167, 69)"  # Bootstrap 4's .badge-success: only there if its CSS loaded


def result_page(project: Path, suite: str) -> Path:
    pages = list((project / SITE / "validations" / suite).rglob("*.html"))
    assert len(pages) == 1, pages
    return pages[0]


def page_status(text: str) -> str:
    """The 'Status:' line of a validation-result page's overview, as displayed."""
    found = re.search(r"Status:\s*(Succeeded|Failed)", text)
    assert found, text[:2000]
    return found.group(1)


def sections(dom: str) -> dict[str, str]:
    """The result page's sections by header (a column name, or 'Table-Level Expectations')."""
    found = {}
    for section in re.split(r'<div id="section-\d+" class="ge-section', dom)[1:]:
        header = re.search(r"<h5[^>]*>\s*([^<]+?)\s*</h5>", section)
        if header:
            found[header.group(1)] = section
    return found


def failing_sections(dom: str) -> set[str]:
    """Sections of a result page showing a failed-expectation icon (the overview shows the page status)."""
    return {name for name, section in sections(dom).items() if "fa-times" in section and name != "Overview"}


def index_verdict(dom: str) -> str:
    found = re.search(r'id="edu-bias-summary".*?data-status="(passed|failed)"', dom, re.DOTALL)
    assert found, "no verdict on the index page"
    return found.group(1)


def test_shipped_sample_every_expectation_passes_and_pages_agree_with_summary(
    project: Path, tmp_path: Path
) -> None:
    run_pipeline(project, "data_validation")
    summary = json.loads((project / SUMMARY).read_text(encoding="utf-8"))
    assert summary["passed"] is True

    probe, dom = open_page(project / SITE / "index.html", screenshot=tmp_path / "index.png")
    assert index_verdict(dom) == "passed"
    assert external_urls(probe) == []
    assert probe["badge_success_bg"] == BOOTSTRAP_SUCCESS_GREEN

    for suite in ("validated_pairs", "validated_pairs_row_checks"):
        probe, dom = open_page(result_page(project, suite))
        text = visible_text(dom)
        assert page_status(text) == "Succeeded", suite  # == summary["passed"]
        assert re.search(r"Unsuccessful Expectations\s*0\b", text), suite
        assert failing_sections(dom) == set(), suite
    # The contract columns the old frame lacked are checked like the others.
    suite_page = visible_text(open_page(project / SITE / "expectations" / "validated_pairs.html")[1])
    assert "warnings" in suite_page and "meta" in suite_page


def test_dirty_fixture_failing_expectations_are_the_checks_that_flagged_rows(project: Path) -> None:
    content, _, _ = dirty_file()
    (project / RAW).write_bytes(content)
    run_pipeline(project, "data_validation", params=LENIENT)
    summary = json.loads((project / SUMMARY).read_text(encoding="utf-8"))
    flagged = {f"check_{name}" for name, c in summary["checks"].items() if c["rows"] > 0}
    assert summary["passed"] is True and len(flagged) > 10

    _, dom = open_page(result_page(project, "validated_pairs"))
    assert page_status(visible_text(dom)) == "Succeeded"  # the gate passed (max_error_rate 1.0)
    _, dom = open_page(result_page(project, "validated_pairs_row_checks"))
    assert page_status(visible_text(dom)) == "Failed"
    assert failing_sections(dom) == flagged
    shown = sections(dom)
    for name, check in summary["checks"].items():  # each failing expectation counts the rows flagged
        if check["rows"]:
            assert f"{check['rows']} unexpected values found" in visible_text(shown[f"check_{name}"]), name


def test_failed_gate_pages_say_failed_like_the_summary(project: Path) -> None:
    content, _, _ = dirty_file()
    (project / RAW).write_bytes(content)
    with pytest.raises(DataValidationError):
        run_pipeline(project, "data_validation")  # default max_error_rate 0.1 < the dirty share
    summary = json.loads((project / SUMMARY).read_text(encoding="utf-8"))
    assert summary["passed"] is False

    _, dom = open_page(project / SITE / "index.html")
    assert index_verdict(dom) == "failed"
    _, dom = open_page(result_page(project, "validated_pairs"))
    text = visible_text(dom)
    assert page_status(text) == "Failed"
    assert failing_sections(dom) == {"quarantined"}  # only the gate; the kept rows meet the contract


# Each payload changes the page title if it ever runs; each fits the 40 characters the pages show.
HOSTILE = [
    "<svg onload=document.title='PWNED'>",
    "<script>document.title='PWNED'</script>",
    '"><img src=x onerror=document.title=1>',
]
GX_TITLES = {"Data Docs created by Great Expectations", "Data documentation compiled by Great Expectations"}


def hostile_rows() -> list[dict]:
    rows = clean_pairs(40)
    base = clean_pairs(48)[40:]
    for i, payload in enumerate(HOSTILE):
        # Kept with a warning (a zero-width space): the text is listed on the row-check page.
        rows.append(
            {
                "prompt": payload + "问题",
                "chosen": payload + "\u200b" + base[i]["chosen"],
                "rejected": payload + base[i]["rejected"],
                "meta": {"bias_type": "region", "note": payload},
            }
        )
        # Quarantined for its label: an unknown bias_type holding the payload.
        rows.append(
            {
                "chosen": payload + base[i + 3]["chosen"],
                "rejected": base[i + 3]["rejected"],
                "meta": {"bias_type": payload},
            }
        )
    return rows


def test_hostile_texts_are_shown_literally_and_never_run(project: Path) -> None:
    write_jsonl(project / RAW, hostile_rows())
    run_pipeline(project, "data_validation", params=LENIENT)

    pages = sorted(p for p in (project / SITE).rglob("*.html") if "static" not in p.parts)
    assert len(pages) == 5, pages  # index, two suites, two results
    for page in pages:
        probe, dom = open_page(page)
        assert probe["title"] in GX_TITLES, (page, probe["title"])  # no payload ran
        assert external_urls(probe) == [], page
        assert (
            "<svg onload" not in dom
            and '<img src="x"' not in dom
            and "document.title='PWNED'</script>" not in dom
        )

    _, dom = open_page(result_page(project, "validated_pairs_row_checks"))
    text = visible_text(dom)
    for payload in HOSTILE:
        assert payload in text, payload  # shown as the text it is


def test_pages_are_styled_and_scripted_offline(project: Path, tmp_path: Path) -> None:
    """Bootstrap, bootstrap-table, jQuery and Font Awesome load from the site itself, with no network."""
    content, _, _ = dirty_file()
    (project / RAW).write_bytes(content)
    run_pipeline(project, "data_validation", params=LENIENT)

    index, _ = open_page(project / SITE / "index.html", screenshot=tmp_path / "index.png")
    result, _ = open_page(result_page(project, "validated_pairs_row_checks"), screenshot=tmp_path / "rc.png")
    for probe in (index, result):
        assert external_urls(probe) == []
        assert probe["jquery"] == "function"  # jQuery ran
        assert probe["bootstrap_table"] is True  # bootstrap-table drew its tables
        assert probe["fa_loaded"] is True  # the pass/fail icons' font
        assert probe["navbar_display"] == "flex"  # Bootstrap's .navbar rule applied
        assert "Segoe UI" in probe["body_font"]  # Bootstrap's body font stack, not the browser default
    assert index["badge_success_bg"] == BOOTSTRAP_SUCCESS_GREEN


@pytest.mark.parametrize(
    ("max_error_rate", "rows", "bad"),
    [
        (0.7, 1490, 1043),  # 1043/1490 <= 0.7, but (1490-1043)/1490 < 1-0.7: GX's `mostly` would disagree
        (0.1, 30, 3),  # exactly at the limit: passes
        (0.1, 30, 4),  # just above: fails
    ],
)
def test_verdict_suite_agrees_with_summary_at_the_limit(
    tmp_path: Path, max_error_rate: float, rows: int, bad: int
) -> None:
    """The verdict suite and the summary's `passed` come from the same division, so they agree at the
    boundary too (the nodes themselves, real GX, no browser needed)."""
    from edu_bias_pipeline.pipelines.data_validation import nodes

    params = {"max_error_rate": max_error_rate, "min_pairs_per_category": 0}
    site = str(tmp_path / "docs")
    locations = {"input": "pairs.jsonl", "summary": "s.json", "quarantine": "q.jsonl", "data_docs": site}
    good = [json.dumps(row, ensure_ascii=False).encode() for row in clean_pairs(rows - bad)]
    ingested, stats = nodes.ingest_lines(good + [b"{not json"] * bad)
    taxonomy = {"gender_sexuality": [], "region": []}
    checked = nodes.check_pairs(ingested, taxonomy, params)
    _, quarantined, summary = nodes.partition_pairs(checked, stats, params, locations)
    assert len(quarantined) == bad
    report = nodes.build_data_docs(checked, taxonomy, params, site)
    assert report["success"] is summary["passed"] is (bad / rows <= max_error_rate)


def test_localize_html_rewrites_known_assets_and_drops_unknown_ones() -> None:
    from edu_bias_pipeline import assets

    page = (
        '<script src="https://code.jquery.com/jquery-3.7.1.min.js" integrity="sha384-x" '
        'crossorigin="anonymous"></script>'
        '<script src="https://evil.example/track.js"></script>'
        '<img src="https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png?d=1">'
        '<a href="https://greatexpectations.io">GX</a>'
    )
    out = assets.localize_html(page, "../static/vendor/", "../static/images/")
    assert '<script src="../static/vendor/jquery-3.7.1/jquery.min.js"></script>' in out
    assert "evil.example" not in out and "<script></script>" in out
    assert '<img src="../static/images/logo-long.png">' in out
    assert '<a href="https://greatexpectations.io">' in out  # a link loads nothing until clicked
    for local in assets.CDN_FILES.values():
        assert (assets.WEB_DIR / local).is_file(), local


@pytest.mark.parametrize(
    "severity",
    [
        {"length_out_of_bounds": "warning"},
        {"length_out_of_bounds": "off", "empty_text": "warning"},
    ],
)
def test_checks_set_to_warning_keep_rows_and_the_pages_still_agree_with_summary(
    project: Path, severity: dict[str, str]
) -> None:
    """A check set to warning keeps the rows it flags, so the verdict suite must not assert its clause of
    the kept-rows contract: the pages say what validation_summary.json says."""
    params = {"data_validation": {"max_chars": 12, "max_prompt_chars": 5, "severity": severity}}
    run_pipeline(project, "data_validation", params=params)
    summary = json.loads((project / SUMMARY).read_text(encoding="utf-8"))
    assert summary["passed"] is True
    if "length_out_of_bounds" in severity and severity["length_out_of_bounds"] == "warning":
        assert summary["checks"]["length_out_of_bounds"]["rows"] > 0  # kept rows break the tight bounds

    _, dom = open_page(project / SITE / "index.html")
    assert index_verdict(dom) == "passed"
    _, dom = open_page(result_page(project, "validated_pairs"))
    assert page_status(visible_text(dom)) == "Succeeded"
    assert failing_sections(dom) == set()


def test_a_verdict_that_contradicts_the_summary_is_a_named_error() -> None:
    from edu_bias_pipeline.pipelines.data_validation.nodes import VerdictMismatchError, enforce_error_rate

    summary = {
        "passed": True,
        "rows_read": 3,
        "rows_kept": 3,
        "rows_quarantined": 0,
        "quarantined_share": 0.0,
        "input": "data/01_raw/x.jsonl",
        "rows_with_warnings": 0,
        "checks": {},
        "max_error_rate": 0.1,
        "reports": {"summary": "s.json", "quarantine": "q.jsonl", "data_docs": "d/index.html"},
    }
    with pytest.raises(VerdictMismatchError, match="contradicts validation_summary.json"):
        enforce_error_rate(summary, {"success": False, "suite": "validated_pairs", "failed_expectations": []})
