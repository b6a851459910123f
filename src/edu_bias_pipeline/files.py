"""Writing files that other processes read while they may be written."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, payload: Any, indent: int | None = 2) -> None:
    """Write JSON beside `path` and rename it into place: a reader sees the old file or the whole new one."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=indent, ensure_ascii=False, default=str), encoding="utf-8")
    tmp.replace(path)
