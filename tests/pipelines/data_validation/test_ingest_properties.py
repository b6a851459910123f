"""Property tests: no byte sequence crashes ingestion, and nothing read is ever lost."""

from __future__ import annotations

import json

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edu_bias_pipeline.datasets.raw_lines import split_lines
from edu_bias_pipeline.pipelines.data_validation.nodes import check_pairs, ingest_lines, partition_pairs

TAXONOMY = {"gender_sexuality": ["gender"], "region": []}
PARAMS = {"min_pairs_per_category": 2}
LOCATIONS = {"input": "in.jsonl", "summary": "s.json", "quarantine": "q.jsonl", "data_docs": "docs"}

# Bytes that look a bit like JSONL pairs, so the generator reaches the deeper branches too.
json_like = st.one_of(
    st.binary(max_size=60),
    st.builds(
        lambda c, r, b, junk: json.dumps({"chosen": c, "rejected": r, "meta": {"bias_type": b}}).encode()[
            : junk or None
        ],
        st.text(max_size=12),
        st.text(max_size=12),
        st.sampled_from(["gender", "region", "x", ""]),
        st.integers(min_value=-20, max_value=0),
    ),
    st.sampled_from(
        [b"\xef\xbb\xbf", b"\r", b"{}", b"[]", b'{"chosen":"\\ud800","rejected":"a"}', b"NaN", b"\x00"]
    ),
)
files = st.lists(json_like, max_size=12).map(lambda parts: b"\n".join(parts))


def run_core(content: bytes):
    frame, stats = ingest_lines(split_lines(content))
    checked = check_pairs(frame, TAXONOMY, PARAMS)
    return partition_pairs(checked, stats, PARAMS, LOCATIONS)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files)
def test_arbitrary_bytes_never_crash_and_rows_are_conserved(content: bytes) -> None:
    validated, quarantined, summary = run_core(content)
    non_blank = sum(
        1 for line in split_lines(content.removeprefix(b"\xef\xbb\xbf")) if line.strip(b" \t\r\n\x0b\x0c")
    )
    assert summary["rows_read"] == non_blank == len(validated) + len(quarantined)
    lines = sorted([*validated["source_line"], *quarantined["source_line"]])
    assert len(set(lines)) == len(lines)
    # Everything written must be valid UTF-8 JSON (the catalog writes these frames as JSONL).
    for frame in (validated, quarantined):
        for row in frame.to_dict("records"):
            orjson.dumps(row)
    orjson.dumps(summary)
    assert all(r for r in quarantined["reasons"])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_split_lines_numbers_lines_like_an_editor(content: bytes) -> None:
    lines = split_lines(content)
    expected_count = content.count(b"\n") + (0 if not content or content.endswith(b"\n") else 1)
    assert len(lines) == expected_count
    parts = content.split(b"\n")[:expected_count]
    assert lines == [p[:-1] if p.endswith(b"\r") else p for p in parts]  # one CR of a CRLF ending goes
