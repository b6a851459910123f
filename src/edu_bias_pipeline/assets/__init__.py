"""Local copies of the CSS/JS/fonts that GX Data Docs and `dvc plots show` otherwise load from CDNs.

The files under `web/` are the unmodified release files of the npm packages named by each folder (same
versions the GX 1.x templates and dvc-render reference; licence files beside them). An air-gapped cluster
gets fully styled Data Docs and drawn DVC plots only when nothing is fetched from the network, so the
pages' CDN URLs are rewritten to relative paths of copies shipped next to them.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"

# CDN URL (without query string) -> file under WEB_DIR. GX 1.x templates (js_script_imports.j2, page.j2,
# index_page.j2, top_navbar.j2) and dvc-render's VegaRenderer.SCRIPTS name exactly these.
CDN_FILES: dict[str, str] = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": (
        "bootstrap-4.3.1/css/bootstrap.min.css"
    ),
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": (
        "bootstrap-4.3.1/js/bootstrap.min.js"
    ),
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery-3.7.1/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": (
        "popper.js-1.12.9/umd/popper.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": (
        "bootstrap-table-1.19.1/bootstrap-table.min.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": (
        "bootstrap-table-1.19.1/bootstrap-table.min.js"
    ),
    # GX names 1.19.0 for the filter-control CSS and 1.19.1 for its JS; one copy (1.19.1) serves both.
    **{
        f"https://unpkg.com/bootstrap-table@{v}/dist/extensions/filter-control/{name}": (
            f"bootstrap-table-1.19.1/extensions/filter-control/{name}"
        )
        for v in ("1.19.0", "1.19.1")
        for name in (
            "bootstrap-table-filter-control.css",
            "bootstrap-table-filter-control.min.css",
            "bootstrap-table-filter-control.min.js",
        )
    },
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css": (
        "bootstrap-datepicker-1.9.0/css/bootstrap-datepicker.min.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js": (
        "bootstrap-datepicker-1.9.0/js/bootstrap-datepicker.min.js"
    ),
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css": (
        "bootstrap-dark-1.1.0/css/bootstrap-prefers-dark.min.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": (
        "fontawesome-free-6.6.0/css/all.min.css"
    ),
    "https://cdn.jsdelivr.net/npm/vega@5": "vega-5.20.2/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite-5.2.0/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed-6.18.2/vega-embed.min.js",
    "https://cdn.jsdelivr.net/npm/vega@5.20.2": "vega-5.20.2/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5.2.0": "vega-lite-5.2.0/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6.18.2": "vega-embed-6.18.2/vega-embed.min.js",
}

# Resource-loading tags (script/link/img/iframe/source) and their URL attribute.
_TAG = re.compile(r"<(script|link|img|iframe|source)\b[^>]*>", re.IGNORECASE)
_URL_ATTR = re.compile(r"""\b(src|href)\s*=\s*(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
# SRI and CORS attributes: a file:// page cannot load a `crossorigin` script, and the local copy is the
# reviewed file itself.
_SRI_ATTRS = re.compile(r"""\s(integrity|crossorigin)\s*=\s*(["']).*?\2""", re.IGNORECASE | re.DOTALL)
_CSS_URL = re.compile(r"""url\(\s*(["']?)(https?://[^)"']+)\1\s*\)""", re.IGNORECASE)


def is_external(url: str) -> bool:
    return bool(re.match(r"^\s*(https?:)?//", url, re.IGNORECASE))


def localize_html(text: str, vendor_prefix: str, images_prefix: str) -> str:
    """Rewrite CDN asset URLs in an HTML page to `vendor_prefix + <local file>`.

    GX's logo images come from its own static/images (copied into the site), at `images_prefix`. Any other
    external resource tag is dropped with a warning: offline it could only fail, and a page must not
    reach out when opened.
    """

    def tag(match: re.Match[str]) -> str:
        whole = match.group(0)
        found = _URL_ATTR.search(whole)
        if not found or not is_external(found.group(3)):
            return whole
        url = found.group(3).split("?", 1)[0]
        if url in CDN_FILES:
            local = vendor_prefix + CDN_FILES[url]
        elif "great-expectations-web-assets" in url and url.rsplit("/", 1)[-1].endswith(".png"):
            local = images_prefix + "logo-long.png"
        elif match.group(1).lower() == "link" and "stylesheet" not in whole.lower():
            return whole  # a plain <link rel=...> (e.g. canonical) loads nothing
        else:
            logger.warning("Data Docs: dropped an external resource with no local copy: %s", url)
            return "" if match.group(1).lower() != "script" else "<script>"
        start, end = found.span(3)
        rewritten = whole[:start] + local + whole[end:]
        return _SRI_ATTRS.sub("", rewritten)

    return _TAG.sub(tag, text)


def localize_css(text: str, images_prefix: str) -> str:
    """GX's stylesheet takes a dark-mode logo from S3; point it at the logo shipped in static/images."""
    return _CSS_URL.sub(lambda m: f'url("{images_prefix}logo-long.png")', text)


def copy_web_assets(dest: Path) -> None:
    """The files under WEB_DIR, licences included, copied to `dest`."""
    shutil.copytree(WEB_DIR, dest, dirs_exist_ok=True)


def dvc_plots_template() -> str:
    """An HTML template for `dvc plots show` with Vega, Vega-Lite and Vega-Embed inlined.

    DVC fills `{plot_divs}`; the template leaves out `{scripts}`, which would add dvc-render's CDN tags.
    Inlined (not linked) because DVC writes the page wherever `-o` says, so no relative path is stable.
    """
    scripts = []
    for name in (
        "vega-5.20.2/vega.min.js",
        "vega-lite-5.2.0/vega-lite.min.js",
        "vega-embed-6.18.2/vega-embed.min.js",
    ):
        code = (WEB_DIR / name).read_text(encoding="utf-8")
        if "</script" in code.lower() or "{plot_divs}" in code or "{refresh_tag}" in code:
            raise ValueError(f"{name} cannot be inlined into the DVC plots template")
        scripts.append(f"<script>/* {name} (see src/edu_bias_pipeline/assets/web) */\n{code}\n</script>")
    return (
        '<!DOCTYPE html>\n<html>\n<head>\n{refresh_tag}\n<meta charset="utf-8">\n<title>DVC Plot</title>\n'
        + "\n".join(scripts)
        + "\n<style>table { border-spacing: 15px; }</style>\n</head>\n<body>\n{plot_divs}\n</body>\n</html>\n"
    )
