"""Outputs get the permissions the user's umask gives, like any file the user creates.

Some writers create private files whatever the umask: `tempfile.mkdtemp` makes 0700 directories and
transformers' `save_pretrained` writes `model.safetensors` as 0600. A model dir shared with a group (or
served to an evaluation job under another account) then cannot be read; these modes are put right before the
dir is renamed into place.
"""

from __future__ import annotations

import os
from pathlib import Path


def current_umask() -> int:
    """The process umask, read without changing it where /proc allows (os.umask sets it to read it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(root: str | Path) -> None:
    """Files 0666 and directories 0777 under `root` (itself included), less the umask; links untouched."""
    mask = current_umask()
    root = Path(root)
    paths = [root, *root.rglob("*")] if root.is_dir() else [root]
    for path in paths:
        if path.is_symlink():
            continue
        mode = 0o777 if path.is_dir() else 0o666
        os.chmod(path, mode & ~mask)
