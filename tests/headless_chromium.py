"""Open a local HTML page in real headless Chromium with networking off, and read what a user would see.

`open_page` loads a copy of the page (same directory, so its relative assets resolve) with a probe script
appended: after load it writes into the DOM what the page looks like (computed styles, which libraries
ran, every resource URL, the title). `--dump-dom` returns the DOM. Networking is off: every http(s)
request goes to a proxy at 127.0.0.1:9 that does not exist, so a page that needs a CDN shows it.

`serve(directory)` is for apps that fetch their data over HTTP (file:// pages cannot): the directory is
served on 127.0.0.1 by a thread, with the probe appended to each HTML page it serves; other hosts stay
unreachable.
"""

from __future__ import annotations

import contextlib
import html
import http.server
import json
import os
import subprocess
import tempfile
import threading
from collections.abc import Iterator
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
# For pages served on 127.0.0.1 (`serve`): that address is reached directly, every other host still not.
SERVED_FLAGS = [
    *(f for f in FLAGS if not f.startswith(("--proxy-bypass-list", "--host-resolver-rules"))),
    "--proxy-bypass-list=127.0.0.1",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
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


def _run(args: list[str], timeout: int = 120, flags: list[str] = FLAGS) -> str:
    binary = require_chromium()
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        proc = subprocess.run(
            [binary, *flags, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if proc.returncode != 0:
        raise AssertionError(f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def _with_probe(text: str) -> str:
    end = text.rfind("</body>")  # the last one: inlined scripts may hold the string too
    return text[:end] + PROBE + text[end:] if end >= 0 else text + PROBE


def _probed_copy(page: Path) -> Path:
    probed = page.with_name(f".probe-{page.name}")
    probed.write_text(_with_probe(page.read_text(encoding="utf-8")), encoding="utf-8")
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
    return _probe_result(dom, page), dom


def _probe_result(dom: str, where: object) -> dict[str, Any]:
    start = dom.find('<pre id="probe-result">')
    if start < 0:
        raise AssertionError(f"the probe never ran on {where} (the page's scripts broke?)")
    end = dom.find("</pre>", start)
    return json.loads(html.unescape(dom[start + len('<pre id="probe-result">') : end]))


class _ProbingHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the files of `directory`; HTML pages with the probe appended."""

    def do_GET(self) -> None:
        local = Path(self.translate_path(self.path))
        if local.is_dir():
            local = local / "index.html"
        if local.suffix != ".html" or not local.is_file():
            super().do_GET()
            return
        body = _with_probe(local.read_text(encoding="utf-8")).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass


class LocalSite:
    """A directory served on 127.0.0.1 (`url`); `open` shows its pages in headless Chromium, every other
    host unreachable as for `open_page`."""

    def __init__(self, url: str) -> None:
        self.url = url

    def open(
        self, path: str = "/", screenshot: Path | None = None, budget_ms: int = 10000
    ) -> tuple[dict[str, Any], str]:
        """(probe result, dumped DOM) of the page at `path` (query string included); optionally a PNG."""
        url = self.url + path
        args = [
            f"--virtual-time-budget={budget_ms}",
            "--hide-scrollbars",
            "--window-size=1280,900",
            "--run-all-compositor-stages-before-draw",
            "--dump-dom",
            *([f"--screenshot={screenshot}"] if screenshot is not None else []),  # same run, same page
            url,
        ]
        dom = _run(args, flags=SERVED_FLAGS)
        return _probe_result(dom, url), dom

    def external_urls(self, result: dict[str, Any]) -> list[str]:
        """The URLs of the probe result that are neither local files nor this site."""
        return [u for u in external_urls(result) if not u.startswith(self.url + "/")]


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[LocalSite]:
    """Serve `directory` on 127.0.0.1 from a thread, stopped on exit."""
    require_chromium()

    def handler(*args: Any) -> _ProbingHandler:
        return _ProbingHandler(*args, directory=str(directory))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LocalSite(f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


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
