"""Every relative link in README.md and docs/ leads to a file of the repository, and a `#section` to a heading
of that file: pages move (the performance log, the migration notes), and a reader following a link must
land."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import PROJECT_ROOT

LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.MULTILINE)


def pages() -> list[Path]:
    return [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").rglob("*.md"))]


def heading_anchors(page: Path) -> set[str]:
    """GitHub's anchors: lower case, punctuation dropped, spaces to hyphens."""
    return {
        re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        for title in HEADING.findall(page.read_text(encoding="utf-8"))
    }


def broken_links(page: Path) -> list[str]:
    broken = []
    for link in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", link):  # http:, https:, mailto:
            continue
        path, _, section = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link} (no such file)")
        elif section and target.suffix == ".md" and section not in heading_anchors(target):
            broken.append(f"{link} (no heading #{section})")
    return broken


def test_relative_links_in_readme_and_docs_resolve() -> None:
    found = {str(page.relative_to(PROJECT_ROOT)): broken_links(page) for page in pages()}
    assert "README.md" in found and "docs/performance.md" in found
    assert {page: links for page, links in found.items() if links} == {}


def test_a_broken_link_and_a_missing_section_are_found(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## Measuring it again\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md) [ok](other.md#measuring-it-again) [web](https://example.org/x.md)\n"
        "[gone](moved.md) [no section](other.md#running-it-again)\n",
        encoding="utf-8",
    )
    assert broken_links(page) == [
        "moved.md (no such file)",
        "other.md#running-it-again (no heading #running-it-again)",
    ]
