"""Open a local HTML page in real headless Chromium with networking off, and read what a user would see.

`open_page` loads a copy of the page (same directory, so its relative assets resolve) with a probe script
appended: after load it writes into the DOM what the page looks like (computed styles, which libraries
ran, every resource URL, the title). `--dump-dom` returns the DOM. Networking is off: every http(s)
request goes to a proxy at 127.0.0.1:9 that does not exist, so a page that needs a CDN shows it.
"""

from __future__ import annotations

import html
import json
import os
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--allow-file-access-from-files",
    # No network: every request that is not file:// or loopback goes to a closed port.
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--host-resolver-rules=MAP * ~NOTFOUND",
]

# Runs after the page's own scripts (appended at the end of <body>, then waits for load + fonts): records
# what the user sees into <pre id="probe-result">.
PROBE = """
<script id="probe-script">
(function () {
  function finish() {
    var style = function (sel, prop) {
      var el = document.querySelector(sel);
      return el ? getComputedStyle(el).getPropertyValue(prop) : null;
    };
    var urls = [];
    var tags = 'script[src], link[href], img[src], iframe[src], source[src]';
    document.querySelectorAll(tags).forEach(function (el) {
      if (el.tagName === 'LINK' && !/stylesheet|icon|preload/i.test(el.rel)) return;
      urls.push(el.src || el.href);
    });
    performance.getEntriesByType('resource').forEach(function (e) { urls.push(e.name); });
    var out = {
      title: document.title,
      jquery: typeof window.jQuery,
      bootstrap_table: !!document.querySelector('.bootstrap-table'),
      vega_embeds: document.querySelectorAll('.vega-embed').length,
      vega_drawn: document.querySelectorAll('.vega-embed canvas, .vega-embed svg.marks').length,
      // a face of that family declared (by the stylesheet) and actually loaded (by an icon on the page)
      fa_loaded: Array.from(document.fonts).some(function (f) {
        return f.family.replace(/["']/g, '') === 'Font Awesome 6 Free' && f.status === 'loaded';
      }),
      body_font: style('body', 'font-family'),
      badge_success_bg: style('.badge-success', 'background-color'),
      badge_danger_bg: style('.badge-danger', 'background-color'),
      table_border_collapse: style('table.table', 'border-collapse'),
      navbar_display: style('.navbar', 'display'),
      images: document.images.length,
      images_drawn: Array.from(document.images).filter(function (i) {
        return i.complete && i.naturalWidth > 0;
      }).length,
      urls: urls
    };
    var pre = document.createElement('pre');
    pre.id = 'probe-result';
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }
  window.addEventListener('load', function () {
    document.fonts.ready.then(function () { setTimeout(finish, 500); });
  });
})();
</script>
"""


def require_chromium() -> str:
    """The Chromium binary; under CI=true its absence fails the test instead of skipping it."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{CHROMIUM} is missing; .ci/run installs the Debian package `chromium`")
    pytest.skip(f"headless Chromium ({CHROMIUM}) is not installed: apt-get install chromium")


def _run(args: list[str], timeout: int = 120) -> str:
    binary = require_chromium()
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        proc = subprocess.run(
            [binary, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if proc.returncode != 0:
        raise AssertionError(f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def _probed_copy(page: Path) -> Path:
    text = page.read_text(encoding="utf-8")
    end = text.rfind("</body>")  # the last one: inlined scripts may hold the string too
    probed = page.with_name(f".probe-{page.name}")
    probed.write_text(text[:end] + PROBE + text[end:] if end >= 0 else text + PROBE, encoding="utf-8")
    return probed


def open_page(page: Path, screenshot: Path | None = None) -> tuple[dict[str, Any], str]:
    """(probe result, dumped DOM) of `page` as rendered offline; optionally a PNG screenshot too."""
    probed = _probed_copy(page)
    try:
        dom = _run(
            [
                "--virtual-time-budget=10000",
                "--run-all-compositor-stages-before-draw",
                "--dump-dom",
                probed.as_uri(),
            ]
        )
        if screenshot is not None:
            _run(
                [
                    "--virtual-time-budget=10000",
                    "--hide-scrollbars",
                    "--window-size=1280,1400",
                    f"--screenshot={screenshot}",
                    probed.as_uri(),
                ]
            )
    finally:
        probed.unlink(missing_ok=True)
    start = dom.find('<pre id="probe-result">')
    if start < 0:
        raise AssertionError(f"the probe never ran on {page} (the page's scripts broke?)")
    end = dom.find("</pre>", start)
    result = json.loads(html.unescape(dom[start + len('<pre id="probe-result">') : end]))
    return result, dom


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    _BLOCKS = frozenset("p div td th tr li br table h1 h2 h3 h4 h5 h6 pre ul ol".split())

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def visible_text(dom: str) -> str:
    """The DOM's text as a user reads it (script/style bodies left out)."""
    parser = _Text()
    parser.feed(dom)
    return "".join(parser.parts)


def external_urls(result: dict[str, Any]) -> list[str]:
    return sorted(
        {u for u in result["urls"] if u and not u.startswith(("file:", "data:", "about:", "blob:"))}
    )
