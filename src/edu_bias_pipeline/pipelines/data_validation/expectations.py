"""The Great Expectations suites over the rows read, and their Data Docs.

GX 1.x, ephemeral context (nothing to commit under gx/), one Checkpoint with two validations of the same
batch (every row read, quarantined ones included), rendered into the catalog's `data_docs` directory:

* suite `<suite_name>`, the stage's verdict. It holds exactly what `validation_summary.json`'s `passed`
  means (at least one row read; quarantined share at most `max_error_rate`, as the mean of a 0/1 column,
  which is the same float division the summary makes) plus the contract of the kept rows (the
  validated_pairs.jsonl columns and their constraints, over rows with `quarantined == 0`). Its status is
  the summary's `passed`.
* suite `<suite_name>_row_checks`, what each check found: one expectation per check over a column
  `check_<name>` that is null for a row the check did not flag and "line N: <text>" for one it did, so
  an expectation fails exactly when its check flagged rows, and lists them.

Pages are made safe to open: data shown as bare values is escaped (gx_views.py), and every CSS/JS/font
the pages load is a local copy (edu_bias_pipeline.assets), so they render without network.
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edu_bias_pipeline import assets, pairs
from edu_bias_pipeline.files import replace_directory
from edu_bias_pipeline.pipelines.data_validation.checks import (
    PARSE_CHECKS,
    check_descriptions,
    configured_checks,
)
from edu_bias_pipeline.pipelines.data_validation.config import ValidationConfig

logger = logging.getLogger(__name__)

SITE_NAME = "edu_bias_data_docs"
CHECK_PREFIX = "check_"
QUARANTINED = "quarantined"
ROW_CHECKS_SUFFIX = "_row_checks"
VENDOR_DIR = "static/vendor"  # inside the site: local copies of the pages' CSS/JS/fonts
_SNIPPET = 40  # characters of the row's text shown next to its line number


def check_severities(config: ValidationConfig) -> dict[str, str]:
    """Every check that can flag a row, in report order: parse checks (always errors), then row checks."""
    severities = {name: "error" for name in PARSE_CHECKS}
    for check in configured_checks(config):
        severities[check.name] = check.severity
    return severities


def gx_frame(checked: pd.DataFrame, config: ValidationConfig) -> pd.DataFrame:
    """Every row read as GX sees it: the validated_pairs columns, `quarantined` (0/1) and one
    `check_<name>` column per check."""
    errors = checked["errors"].to_numpy(dtype=object)
    warnings = checked[pairs.WARNINGS].to_numpy(dtype=object)
    quarantined = np.fromiter((bool(e) for e in errors), dtype=np.int64, count=len(errors))
    frame = pd.DataFrame(
        {
            pairs.PAIR_ID: checked[pairs.PAIR_ID].to_numpy(dtype=object),
            pairs.SOURCE_LINE: checked["source_line"].to_numpy(dtype="int64"),
            pairs.PROMPT: checked[pairs.PROMPT].to_numpy(dtype=object),
            pairs.CHOSEN: checked[pairs.CHOSEN].to_numpy(dtype=object),
            pairs.REJECTED: checked[pairs.REJECTED].to_numpy(dtype=object),
            pairs.BIAS_TYPE: checked[pairs.BIAS_TYPE].to_numpy(dtype=object),
            pairs.WARNINGS: warnings,
            pairs.META: checked[pairs.META].to_numpy(dtype=object),
            QUARANTINED: quarantined,
        }
    )
    lines = frame[pairs.SOURCE_LINE].to_numpy()
    chosen = frame[pairs.CHOSEN].to_numpy()
    raw = checked["raw"].to_numpy(dtype=object)
    names = list(check_severities(config))
    columns = {name: np.full(len(frame), None, dtype=object) for name in names}
    for i in np.flatnonzero([bool(e) or bool(w) for e, w in zip(errors, warnings, strict=True)]):
        text = chosen[i] if isinstance(chosen[i], str) else bytes(raw[i]).decode("utf-8", "backslashreplace")
        shown = f"line {lines[i]}: {text[:_SNIPPET]}"
        for name in (*errors[i], *warnings[i]):
            if name in columns:
                columns[name][i] = shown
    for name in names:
        frame[CHECK_PREFIX + name] = columns[name]
    return frame


def _note(text: str) -> dict[str, Any]:
    return {"notes": {"format": "markdown", "content": [text]}}


def build_suite(taxonomy: Sequence[str], config: ValidationConfig) -> Any:
    """The verdict (the quality gate, as the summary computes it) and the contract of the kept rows."""
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    suite = gx.ExpectationSuite(name=config.suite_name)
    add = suite.add_expectation
    kept = Column(QUARANTINED) == 0

    add(gxe.ExpectTableRowCountToBeBetween(min_value=1, meta=_note("gate: at least one row was read")))
    add(
        gxe.ExpectColumnMeanToBeBetween(
            column=QUARANTINED,
            min_value=0,
            max_value=config.max_error_rate,
            meta=_note(
                "gate: the share of rows quarantined is at most `data_validation.max_error_rate` "
                "(the summary's `quarantined_share`; this expectation and the summary's `passed` agree)"
            ),
        )
    )
    for column in pairs.VALIDATED_FIELDS:
        add(gxe.ExpectColumnToExist(column=column, meta=_note("schema: validated_pairs.jsonl contract")))
    # The kept-rows contract holds only as far as the checks guarding it quarantine (severity error): a
    # check set to `warning` or `off` keeps the rows it flags, so its clause is left out, or the pages
    # would say Failed while validation_summary.json says passed (enforce_error_rate refuses that).
    errors = {name for name, severity in check_severities(config).items() if severity == "error"}
    # chosen/rejected are always strings (missing_field and wrong_type are parse checks, always errors);
    # bias_type is None when the label is missing or not in the taxonomy.
    required = [pairs.PAIR_ID, pairs.SOURCE_LINE, pairs.CHOSEN, pairs.REJECTED]
    if {"missing_bias_type", "unknown_bias_type"} <= errors:
        required.append(pairs.BIAS_TYPE)
    for column in required:
        add(
            gxe.ExpectColumnValuesToNotBeNull(
                column=column, row_condition=kept, meta=_note("schema: required field of a kept row")
            )
        )
    add(
        gxe.ExpectColumnValuesToMatchRegex(
            column=pairs.PAIR_ID,
            regex=r"^[0-9a-f]{16}$",
            row_condition=kept,
            meta=_note("pair_id: 16 hex digits of a content hash"),
        )
    )
    if "duplicate_pair" in errors:  # equal pair_id == equal normalised texts == duplicate_pair's rule
        add(
            gxe.ExpectColumnValuesToBeUnique(
                column=pairs.PAIR_ID, row_condition=kept, meta=_note("uniqueness: no duplicate kept pairs")
            )
        )
    add(
        gxe.ExpectColumnValuesToBeUnique(column=pairs.SOURCE_LINE, meta=_note("uniqueness: one row per line"))
    )
    add(
        gxe.ExpectColumnValuesToBeBetween(
            column=pairs.SOURCE_LINE, min_value=1, meta=_note("source_line is 1-based")
        )
    )
    if "unknown_bias_type" in errors:
        add(
            gxe.ExpectColumnValuesToBeInSet(
                column=pairs.BIAS_TYPE,
                value_set=sorted(taxonomy),
                row_condition=kept,
                meta=_note("taxonomy: kept rows carry canonical bias types only"),
            )
        )
    # empty_text guards the lower bound 1, length_out_of_bounds the configured bounds of non-empty texts.
    lengths = "length_out_of_bounds" in errors
    min_value = None
    if "empty_text" in errors:
        min_value = max(config.min_chars, 1) if lengths else 1
    max_value = config.max_chars if lengths else None
    if min_value is not None or max_value is not None:
        for column in (pairs.CHOSEN, pairs.REJECTED):
            add(
                gxe.ExpectColumnValueLengthsToBeBetween(
                    column=column,
                    min_value=min_value,
                    max_value=max_value,
                    row_condition=kept,
                    meta=_note("lengths: data_validation.min_chars / max_chars"),
                )
            )
    if lengths:
        add(
            gxe.ExpectColumnValueLengthsToBeBetween(
                column=pairs.PROMPT,
                max_value=config.max_prompt_chars,
                row_condition=kept,
                meta=_note("lengths: max_prompt_chars"),
            )
        )
    return suite


def build_row_check_suite(config: ValidationConfig) -> Any:
    """One expectation per check: it fails exactly when the check flagged rows, and lists them."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=config.suite_name + ROW_CHECKS_SUFFIX)
    descriptions = check_descriptions()
    for name, severity in check_severities(config).items():
        outcome = (
            "Flagged rows were quarantined (quarantined_pairs.jsonl)."
            if severity == "error"
            else "Flagged rows were kept, with the warning in their `warnings` field."
        )
        suite.add_expectation(
            gxe.ExpectColumnValuesToBeNull(
                column=CHECK_PREFIX + name,
                severity="critical" if severity == "error" else "warning",
                meta=_note(
                    f"row check `{name}` ({severity}): {descriptions.get(name, '')}. {outcome} "
                    f"This suite reports what the checks found; the stage's verdict is suite "
                    f"`{config.suite_name}`."
                ),
            )
        )
    return suite


def _failed(run: Any) -> list[dict[str, Any]]:
    return [
        {
            "expectation": r.expectation_config.type,
            "column": r.expectation_config.kwargs.get("column"),
            "unexpected_count": (r.result or {}).get("unexpected_count"),
            "observed_value": (r.result or {}).get("observed_value"),
        }
        for r in run.results
        if not r.success
    ]


def run_data_docs(
    checked: pd.DataFrame,
    taxonomy: Sequence[str],
    config: ValidationConfig,
    site: str | Path,
    counts: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Validate every row read with both suites through one Checkpoint and (re)build the Data Docs site."""
    site_dir = Path(site).resolve()
    frame = gx_frame(checked, config)
    report = replace_directory(site_dir, lambda tmp: _build_site(tmp, frame, taxonomy, config, counts or {}))
    report["data_docs"] = str(site_dir / "index.html")
    logger.info(
        "GX suite '%s' %s (%d/%d expectations met); row checks flagged rows in %d check(s); Data Docs at %s",
        report["suite"],
        "passed" if report["success"] else "FAILED",
        report["successful_expectations"],
        report["evaluated_expectations"],
        len(report["row_checks"]["failed_expectations"]),
        report["data_docs"],
    )
    return report


def _build_site(
    site_dir: Path,
    frame: pd.DataFrame,
    taxonomy: Sequence[str],
    config: ValidationConfig,
    counts: dict[str, int],
) -> dict[str, Any]:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction

    views = "edu_bias_pipeline.pipelines.data_validation.gx_views"
    page_view = {"module_name": views, "class_name": "EscapingPageView"}
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    context.add_data_docs_site(
        site_name=SITE_NAME,
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site_dir)},
            "site_index_builder": {
                "class_name": "DefaultSiteIndexBuilder",
                "view": {"module_name": views, "class_name": "EscapingIndexPageView"},
            },
            "site_section_builders": {
                "expectations": {"view": page_view},
                "validations": {"view": page_view},
                "profiling": {"view": page_view},
            },
        },
    )
    batch = (
        context.data_sources.add_pandas("edu_bias")
        .add_dataframe_asset("rows_read")
        .add_batch_definition_whole_dataframe("all_rows")
    )
    definitions = [
        context.validation_definitions.add(
            gx.ValidationDefinition(name=suite.name, data=batch, suite=context.suites.add(suite))
        )
        for suite in (build_suite(taxonomy, config), build_row_check_suite(config))
    ]
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="data_validation",
            validation_definitions=definitions,
            actions=[UpdateDataDocsAction(name="update_data_docs", site_names=[SITE_NAME])],
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 20},
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    runs = {run.suite_name: run for run in result.run_results.values()}
    verdict, row_checks = runs[config.suite_name], runs[config.suite_name + ROW_CHECKS_SUFFIX]
    report = {
        "suite": config.suite_name,
        "success": bool(verdict.success),
        "evaluated_expectations": int(verdict.statistics["evaluated_expectations"]),
        "successful_expectations": int(verdict.statistics["successful_expectations"]),
        "failed_expectations": _failed(verdict),
        "row_checks": {
            "suite": row_checks.suite_name,
            "evaluated_expectations": int(row_checks.statistics["evaluated_expectations"]),
            "failed_expectations": _failed(row_checks),
        },
    }
    finish_site(site_dir, report, counts)
    return report


def finish_site(site_dir: Path, report: dict[str, Any], counts: dict[str, int]) -> None:
    """Local copies of the pages' assets, URLs rewritten to them, and the project's summary on the index."""
    assets.copy_web_assets(site_dir / VENDOR_DIR)
    for css in (site_dir / "static" / "styles").glob("*.css"):
        css.write_text(assets.localize_css(css.read_text(encoding="utf-8"), "../images/"), encoding="utf-8")
    for page in sorted(site_dir.rglob("*.html")):
        if VENDOR_DIR in page.relative_to(site_dir).as_posix():
            continue
        up = "../" * (len(page.relative_to(site_dir).parts) - 1)
        text = assets.localize_html(
            page.read_text(encoding="utf-8"), up + VENDOR_DIR + "/", up + "static/images/"
        )
        if page == site_dir / "index.html":
            text = text.replace("<body>", "<body>" + _summary_block(site_dir, report, counts), 1)
        page.write_text(text, encoding="utf-8")


def _summary_block(site_dir: Path, report: dict[str, Any], counts: dict[str, int]) -> str:
    """The verdict, the checks that flagged rows and links, as static HTML at the top of the index.

    Everything from the data or the configuration is escaped.
    """
    e = html.escape
    pages = sorted(
        p.relative_to(site_dir).as_posix() for p in site_dir.rglob("*.html") if p.name != "index.html"
    )
    names = {p: p.split("/")[1] + ("" if p.startswith("expectations/") else " results") for p in pages}
    links = ", ".join(
        f'<a href="{e(p)}">{e(names[p])}</a>'
        for p in pages
        if p.startswith(("expectations/", "validations/"))
    )
    status = (
        '<span class="badge badge-success" data-status="passed">passed</span>'
        if report["success"]
        else '<span class="badge badge-danger" data-status="failed">FAILED</span>'
    )
    flagged = "".join(
        f"<li><code>{e(str(f['column']))}</code>: {e(str(f['unexpected_count']))} row(s)</li>"
        for f in report["row_checks"]["failed_expectations"]
    )
    failed = "".join(
        f"<li><code>{e(str(f['column']))}</code> {e(str(f['expectation']))}</li>"
        for f in report["failed_expectations"]
    )
    table = (
        '<table class="table table-sm table-bordered w-auto"><tr>'
        + "".join(f"<th>{e(str(k))}</th>" for k in counts)
        + "</tr><tr>"
        + "".join(f"<td>{e(str(v))}</td>" for v in counts.values())
        + "</tr></table>"
        if counts
        else ""
    )
    return (
        '<div id="edu-bias-summary" class="container-fluid p-3">'
        f"<h2>Data validation: suite <code>{e(report['suite'])}</code> {status}</h2>"
        f"<p>{report['successful_expectations']} of {report['evaluated_expectations']} expectations met "
        "(the same verdict as validation_summary.json).</p>"
        + (f"<p>Failed expectations:</p><ul>{failed}</ul>" if failed else "")
        + (
            f"<p>Checks that flagged rows (suite <code>{e(report['row_checks']['suite'])}</code>; "
            f"errors were quarantined, warnings kept):</p><ul>{flagged}</ul>"
            if flagged
            else "<p>No check flagged any row.</p>"
        )
        + table
        + f"<p>Pages: {links}</p></div>"
    )
