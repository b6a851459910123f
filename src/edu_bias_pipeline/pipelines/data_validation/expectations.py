"""The Great Expectations suite over the validated pairs, and its Data Docs.

GX 1.x, ephemeral context (nothing to commit under gx/), one suite, one Checkpoint whose
UpdateDataDocsAction renders our own Data Docs site into `data_validation.data_docs_dir`.
The computed row checks become expectations over derived columns `check_<name>`: null for a clean row,
"line N: <text>" for an offending one, so a failed expectation lists the offending lines in the docs.
"""

from __future__ import annotations

import html
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edu_bias_pipeline import pairs
from edu_bias_pipeline.pipelines.data_validation.checks import ValidationConfig, configured_checks

logger = logging.getLogger(__name__)

SITE_NAME = "edu_bias_data_docs"
CHECK_PREFIX = "check_"


def gx_frame(kept: pd.DataFrame, config: ValidationConfig) -> pd.DataFrame:
    """The validated rows as GX sees them: contract columns plus one `check_<name>` column per check."""
    frame = pd.DataFrame(
        {
            pairs.PAIR_ID: kept["pair_id"].to_numpy(dtype=object),
            pairs.SOURCE_LINE: kept["source_line"].to_numpy(dtype="int64"),
            pairs.PROMPT: kept["prompt"].to_numpy(dtype=object),
            pairs.CHOSEN: kept["chosen"].to_numpy(dtype=object),
            pairs.REJECTED: kept["rejected"].to_numpy(dtype=object),
            pairs.BIAS_TYPE: kept["bias_type"].to_numpy(dtype=object),
        }
    )
    warnings = kept[pairs.WARNINGS].to_numpy(dtype=object)
    lines = frame[pairs.SOURCE_LINE].to_numpy()
    chosen = frame[pairs.CHOSEN].to_numpy()
    flagged = [i for i, ws in enumerate(warnings) if ws]
    for check in configured_checks(config):
        column = np.full(len(frame), None, dtype=object)
        for i in flagged:
            if check.name in warnings[i]:
                column[i] = f"line {lines[i]}: {chosen[i][:40]}"
        frame[CHECK_PREFIX + check.name] = column
    return frame


def build_suite(taxonomy: Sequence[str], config: ValidationConfig) -> Any:
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=config.suite_name)
    add = suite.add_expectation

    def note(text: str) -> dict[str, Any]:
        return {"notes": {"format": "markdown", "content": [text]}}

    add(gxe.ExpectTableRowCountToBeBetween(min_value=1, meta=note("at least one pair survives validation")))
    for column in pairs.VALIDATED_FIELDS:
        add(gxe.ExpectColumnToExist(column=column, meta=note("schema: validated_pairs.jsonl contract")))
    for column in (pairs.PAIR_ID, pairs.SOURCE_LINE, pairs.CHOSEN, pairs.REJECTED, pairs.BIAS_TYPE):
        add(gxe.ExpectColumnValuesToNotBeNull(column=column, meta=note("schema: required field")))
    add(
        gxe.ExpectColumnValuesToMatchRegex(
            column=pairs.PAIR_ID,
            regex=r"^[0-9a-f]{16}$",
            meta=note("pair_id: 16 hex digits of a content hash"),
        )
    )
    add(gxe.ExpectColumnValuesToBeUnique(column=pairs.PAIR_ID, meta=note("uniqueness: no duplicate pairs")))
    add(gxe.ExpectColumnValuesToBeUnique(column=pairs.SOURCE_LINE, meta=note("uniqueness: one row per line")))
    add(
        gxe.ExpectColumnValuesToBeBetween(
            column=pairs.SOURCE_LINE, min_value=1, meta=note("source_line is 1-based")
        )
    )
    add(
        gxe.ExpectColumnValuesToBeInSet(
            column=pairs.BIAS_TYPE,
            value_set=sorted(taxonomy),
            meta=note("taxonomy: canonical bias types only"),
        )
    )
    for column in (pairs.CHOSEN, pairs.REJECTED):
        add(
            gxe.ExpectColumnValueLengthsToBeBetween(
                column=column,
                min_value=max(config.min_chars, 1),
                max_value=config.max_chars,
                meta=note("lengths: data_validation.min_chars / max_chars"),
            )
        )
    add(
        gxe.ExpectColumnValueLengthsToBeBetween(
            column=pairs.PROMPT,
            max_value=config.max_prompt_chars,
            meta=note("lengths: max_prompt_chars"),
        )
    )
    for check in configured_checks(config):
        add(
            gxe.ExpectColumnValuesToBeNull(
                column=CHECK_PREFIX + check.name,
                meta=note(
                    f"row check `{check.name}` ({check.severity}): {check.description}. "
                    + (
                        "Errors were quarantined, so this must pass."
                        if check.severity == "error"
                        else "Warnings are kept; failures list the lines."
                    )
                ),
            )
        )
    return suite


def run_data_docs(
    kept: pd.DataFrame,
    taxonomy: Sequence[str],
    config: ValidationConfig,
    counts: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Validate `kept` with the suite through a Checkpoint and (re)build the Data Docs site."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction

    site_dir = Path(config.data_docs_dir).resolve()
    if site_dir.exists():
        shutil.rmtree(site_dir)  # the ephemeral stores hold only this run; stale pages would linger
    site_dir.mkdir(parents=True)

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    context.add_data_docs_site(
        site_name=SITE_NAME,
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    asset = context.data_sources.add_pandas("edu_bias").add_dataframe_asset("validated_pairs")
    batch = asset.add_batch_definition_whole_dataframe("all_rows")
    suite = context.suites.add(build_suite(taxonomy, config))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="validated_pairs_validation", data=batch, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="data_validation",
            validation_definitions=[definition],
            actions=[UpdateDataDocsAction(name="update_data_docs", site_names=[SITE_NAME])],
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 20},
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": gx_frame(kept, config)})
    failed: list[dict[str, Any]] = []
    stats: dict[str, Any] = {}
    for run in result.run_results.values():
        stats = dict(run.statistics)
        for r in run.results:
            if not r.success:
                failed.append(
                    {
                        "expectation": r.expectation_config.type,
                        "column": r.expectation_config.kwargs.get("column"),
                        "unexpected_count": (r.result or {}).get("unexpected_count"),
                    }
                )
    index = site_dir / "index.html"
    add_offline_fallbacks(site_dir, config.suite_name, bool(result.success), stats, failed, counts or {})
    logger.info("GX suite '%s': %s; Data Docs at %s", config.suite_name, stats, index)
    return {
        "suite": config.suite_name,
        "success": bool(result.success),
        "evaluated_expectations": int(stats.get("evaluated_expectations", 0)),
        "successful_expectations": int(stats.get("successful_expectations", 0)),
        "failed_expectations": failed,
        "data_docs": str(index),
    }


# GX's pages take Bootstrap, jQuery and Font Awesome from CDNs. Offline (this project's default) the
# index table is drawn by JavaScript that never loads and the pass/fail icons are blank, so every page gets
# a small inline stylesheet that spells the status out, and the index gets a static summary with links.
_OFFLINE_STYLE = """<style id="edu-bias-offline">
body { font-family: sans-serif; margin: 1em 2em; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 2px 8px; vertical-align: top; }
.fa-check-circle::before { content: "\\2714  passed"; color: #1a7f37; font-style: normal; font-weight: bold; }
.fa-times::before { content: "\\2718  FAILED"; color: #c62828; font-style: normal; font-weight: bold; }
#edu-bias-summary { border: 2px solid #888; padding: 0.5em 1em; margin-bottom: 1em; }
#edu-bias-summary .failed { color: #c62828; font-weight: bold; } #edu-bias-summary .passed { color: #1a7f37; }
</style>"""


def add_offline_fallbacks(
    site_dir: Path,
    suite: str,
    success: bool,
    stats: dict[str, Any],
    failed: list[dict[str, Any]],
    counts: dict[str, int],
) -> None:
    """Inline status styles on every page; a static summary with links at the top of index.html."""
    pages = sorted(site_dir.rglob("*.html"))
    for page in pages:
        text = page.read_text(encoding="utf-8")
        if 'id="edu-bias-offline"' not in text:
            page.write_text(text.replace("</head>", _OFFLINE_STYLE + "</head>", 1), encoding="utf-8")
    links = [p.relative_to(site_dir).as_posix() for p in pages if p.name != "index.html"]
    suites = [link for link in links if link.startswith("expectations/")]
    results = [link for link in links if link.startswith("validations/")]
    status = '<span class="passed">passed</span>' if success else '<span class="failed">FAILED</span>'
    failures = "".join(
        f"<li><code>{html.escape(str(f['column']))}</code> {html.escape(f['expectation'])}: "
        f"{f['unexpected_count']} unexpected</li>"
        for f in failed
    )
    block = (
        '<div id="edu-bias-summary">'
        f"<h2>Validated pairs: suite <code>{html.escape(suite)}</code> {status}</h2>"
        f"<p>{stats.get('successful_expectations', 0)} of {stats.get('evaluated_expectations', 0)} "
        "expectations met. Failed <code>check_*</code> expectations of severity <i>warning</i> list the kept "
        "rows that carry that warning; errors were quarantined (see quarantined_pairs.jsonl).</p>"
        + (f"<p>Failed expectations:</p><ul>{failures}</ul>" if failures else "")
        + (
            "<table><tr>"
            + "".join(f"<th>{html.escape(k)}</th>" for k in counts)
            + "</tr><tr>"
            + "".join(f"<td>{v}</td>" for v in counts.values())
            + "</tr></table>"
            if counts
            else ""
        )
        + "<p>Validation results: "
        + ", ".join(f'<a href="{html.escape(r)}">{html.escape(r)}</a>' for r in results)
        + "<br>Expectation suite: "
        + ", ".join(f'<a href="{html.escape(r)}">{html.escape(r)}</a>' for r in suites)
        + "</p></div>"
    )
    index = site_dir / "index.html"
    text = index.read_text(encoding="utf-8")
    if 'id="edu-bias-summary"' not in text:
        index.write_text(text.replace("<body>", "<body>" + block, 1), encoding="utf-8")
