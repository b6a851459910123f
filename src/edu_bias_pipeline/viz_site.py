"""The Kedro-Viz static site of the project's pipelines, built offline: `make viz` or
`python -m edu_bias_pipeline.viz_site`.

`kedro viz build` (kedro-viz, the `viz` extra) writes the site into `build/` of the project root, always, and
exits 0 also when it failed. This module runs it, checks that it finished, moves the site to `build/viz/`
(swapped in whole: a failed build leaves the previous site) and removes the page's Google Fonts links, so
the page requests nothing from the network (it falls back to the system sans-serif font). The build reads
the pipeline registry and the catalog's entries only: it runs no node and loads no dataset.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from importlib.resources import files
from pathlib import Path

from edu_bias_pipeline.files import atomic_open, replace_directory
from edu_bias_pipeline.offline import apply_offline_defaults

logger = logging.getLogger(__name__)

KEDRO_VIZ_BUILD_DIR = "build"  # where `kedro viz build` writes, relative to the working directory
DEFAULT_SITE_DIR = Path("build") / "viz"
# Written last by kedro-viz's deployer: its presence means the build finished.
FINISHED_MARKER = Path("api") / "deploy-viz-metadata"
BUILD_TIMEOUT_S = 600
_EXTERNAL_LINK = re.compile(r"""<link\b[^>]*\bhref\s*=\s*["']?(?:https?:)?//[^>]*>\s*""", re.IGNORECASE)
_EXTERNAL_REF = re.compile(r"""\b(?:src|href)\s*=\s*["']?((?:https?:)?//[^"'\s>]+)""", re.IGNORECASE)


class VizBuildError(RuntimeError):
    """`kedro viz build` did not produce a complete site; the message holds the end of its output."""


def kedro_viz_outputs() -> list[str]:
    """The names `kedro viz build` writes into build/: its bundled web app's files plus the api/ folder."""
    try:
        html = files("kedro_viz") / "html"
    except ModuleNotFoundError:
        raise VizBuildError(
            "kedro-viz is not installed: pip install -e '.[viz]' (the project's viz extra)"
        ) from None
    return sorted({"api", *(p.name for p in html.iterdir() if not p.name.startswith("."))})


def offline_index(page: str) -> str:
    """`page` without its links to other hosts (Google Fonts stylesheet and preconnects)."""
    return _EXTERNAL_LINK.sub("", page)


def _run_kedro_viz_build(project_dir: Path) -> None:
    # The project's settings.py applies the same defaults; they are set here too because the Kedro CLI's
    # telemetry plugin may look before the project's settings are imported.
    apply_offline_defaults()
    # kedro-viz asks kedro-telemetry for a user id whatever the consent, which writes
    # ~/.config/kedro/telemetry.toml: the build gets a throwaway config directory instead.
    with tempfile.TemporaryDirectory(prefix="kedro-viz-config-") as config_home:
        proc = subprocess.run(
            [sys.executable, "-m", "kedro", "viz", "build"],
            cwd=project_dir,
            env={**os.environ, "XDG_CONFIG_HOME": config_home},
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
    built = project_dir / KEDRO_VIZ_BUILD_DIR
    if proc.returncode != 0 or not (built / FINISHED_MARKER).is_file():
        tail = (proc.stdout + proc.stderr)[-4000:]
        raise VizBuildError(
            f"kedro viz build in {project_dir} did not finish (exit {proc.returncode}):\n{tail}"
        )
    logger.debug("kedro viz build output:\n%s", proc.stdout + proc.stderr)


def build_site(project_dir: Path, site_dir: Path = DEFAULT_SITE_DIR) -> Path:
    """Build the Kedro-Viz site of the project at `project_dir` into `site_dir` (relative to the project)."""
    project_dir = project_dir.resolve()
    target = site_dir if site_dir.is_absolute() else project_dir / site_dir
    built = project_dir / KEDRO_VIZ_BUILD_DIR
    outputs = kedro_viz_outputs()
    if target.resolve() in {(built / name).resolve() for name in [".", *outputs]}:
        raise VizBuildError(f"{target} is where kedro viz build writes its own files: choose another folder")

    def build(tmp: Path) -> None:
        # kedro-viz adds to build/ without removing what an earlier build left there (nodes since deleted):
        # start from none of its files.
        for name in outputs:
            leftover = built / name
            if leftover.is_dir():
                shutil.rmtree(leftover)
            elif leftover.exists():
                leftover.unlink()
        _run_kedro_viz_build(project_dir)
        for name in outputs:
            if (built / name).exists():
                shutil.move(built / name, tmp / name)
        index = tmp / "index.html"
        page = offline_index(index.read_text(encoding="utf-8"))
        with atomic_open(index, "w", encoding="utf-8") as fh:
            fh.write(page)
        remaining = _EXTERNAL_REF.findall(page)
        if remaining:
            logger.warning("the Kedro-Viz page still refers to other hosts (needs network): %s", remaining)

    replace_directory(target, build)
    main = json.loads((target / "api" / "main").read_text(encoding="utf-8"))
    logger.info(
        "Kedro-Viz site of %d pipelines (%d nodes in __default__) in %s: serve it with "
        "`python -m http.server -d %s` and open http://localhost:8000",
        len(main.get("pipelines", [])),
        len(main.get("nodes", [])),
        target,
        target,
    )
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project-dir", type=Path, default=Path.cwd(), help="the Kedro project root")
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_SITE_DIR, help="site folder, relative to the project root"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        build_site(args.project_dir, args.output)
    except VizBuildError as exc:
        logger.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
