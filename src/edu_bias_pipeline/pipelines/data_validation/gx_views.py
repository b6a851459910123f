"""GX Data Docs views that escape data before it reaches HTML.

GX 1.x escapes the parameters of its string templates, but a content block that is a bare value (a
table cell of the unexpected-values table, an element of a value list) is written into the page as is:
a pair text holding `<svg onload=...>` would run when the page is opened. Bare values here are always
data (renderer markup comes as content-block dicts), so these views escape them. Imported only by GX's
SiteBuilder through the site configuration in expectations.py.
"""

from __future__ import annotations

import html
from typing import Any

from great_expectations.render.components import RenderedContent
from great_expectations.render.view import DefaultJinjaIndexPageView, DefaultJinjaPageView
from jinja2 import pass_context


def _is_block(value: Any) -> bool:
    return isinstance(value, RenderedContent) or (isinstance(value, dict) and "content_block_type" in value)


class _EscapeBareValues:
    @pass_context  # GX registers this method as a Jinja filter that receives the context
    def render_content_block(  # type: ignore[override]
        self,
        jinja_context: Any,
        content_block: Any,
        index: Any = None,
        content_block_id: Any = None,
        render_to_markdown: bool = False,
    ) -> Any:
        if not render_to_markdown and content_block is not None and not _is_block(content_block):
            if isinstance(content_block, list):
                content_block = [c if _is_block(c) else _Escaped.of(c) for c in content_block]
            else:
                return _Escaped.of(content_block)
        return super().render_content_block(  # type: ignore[misc]
            jinja_context, content_block, index, content_block_id, render_to_markdown
        )


class _Escaped(str):
    """Text escaped once; GX wraps a bare list element as `<span>{value}</span>`."""

    @classmethod
    def of(cls, value: Any) -> _Escaped:
        return value if isinstance(value, _Escaped) else cls(html.escape(str(value), quote=True))


class EscapingPageView(_EscapeBareValues, DefaultJinjaPageView):
    """Suite and validation-result pages."""


class EscapingIndexPageView(_EscapeBareValues, DefaultJinjaIndexPageView):
    """The index page."""
