"""Writing files that other processes read while they may be written, or that a kill may interrupt.

Every output is written under a temporary name beside its target (same directory, so the same file
system) and renamed into place: a reader, or the next stage after a `kill -9`, sees the previous file or
the whole new one, never a part. Temporary names are `.<name>.tmp-<pid>` (hidden, and ignored by the
stages); leftovers of a killed process are removed by the next write of the same target.

Temporary files are opened like any other output, so they get the user's umask (not mkstemp's 0600).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

logger = logging.getLogger(__name__)

_TMP_MARK = ".tmp-"
_OLD_MARK = ".old-"
# errno values that mean "you may not write here", as opposed to a full disk or a bad path.
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


class OutputNotWritableError(OSError):
    """An output could not be written; the message names the path, the reason and what to do."""

    def __str__(self) -> str:
        return str(self.strerror)  # the message alone, without OSError's "[Errno N]" prefix


def temporary_path(target: Path, pid: int | None = None) -> Path:
    """The name `target` is written under before it is renamed into place."""
    return target.with_name(f".{target.name}{_TMP_MARK}{os.getpid() if pid is None else pid}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(target: Path) -> None:
    """Delete `.<name>.tmp-<pid>` / `.<name>.old-<pid>` leftovers of processes that no longer run."""
    parent = target.parent
    if not parent.is_dir():
        return
    for mark in (_TMP_MARK, _OLD_MARK):
        prefix = f".{target.name}{mark}"
        for leftover in parent.glob(f"{prefix}*"):
            pid = leftover.name[len(prefix) :]
            if not pid.isdigit() or (int(pid) != os.getpid() and _pid_alive(int(pid))):
                continue
            logger.info("removing %s, left behind by an interrupted write", leftover)
            _remove(leftover)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable; some file systems cannot sync a directory, which is harmless."""
    with contextlib.suppress(OSError):
        _fsync_file(path)


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            _fsync_file(Path(dirpath) / name)
        _fsync_dir(Path(dirpath))


def not_writable_error(target: Path, exc: OSError) -> OutputNotWritableError:
    """A message a user can act on for an OSError raised while writing `target`."""
    if exc.errno in _NOT_WRITABLE:
        where = Path(exc.filename).parent if exc.filename else target.parent
        # The first existing directory on the way is the one that refused the new entry.
        while not where.exists() and where != where.parent:
            where = where.parent
        if exc.errno == errno.EROFS:
            advice = (
                f"{where} is on a read-only file system. Remount it read-write, or run the project from "
                "a copy on a writable disk."
            )
        else:
            advice = (
                f"{where} is not writable by this user ({exc.strerror}). Make it writable (e.g. "
                f"`chmod -R u+w {where}`), or run the project from a copy you can write to."
            )
        return OutputNotWritableError(exc.errno, f"Cannot write output {target}: {advice}")
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        return OutputNotWritableError(
            exc.errno,
            f"Cannot write output {target}: no space left on its file system ({exc.strerror}). "
            "Free some space and run the stage again; the previous output is unchanged.",
        )
    return OutputNotWritableError(
        exc.errno, f"Cannot write output {target}: {exc.strerror or exc}. The previous output is unchanged."
    )


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields a temporary path beside `target`; write a file (or a directory) there. On a clean exit it
    is synced and renamed onto `target`; on an error it is removed and `target` stays as it was.

    A directory replaces the previous one in two renames (old aside, new in): in between `target` is
    absent, never mixed. OSErrors come out as `OutputNotWritableError` naming the path and what to do.
    """
    target = Path(target)
    tmp = temporary_path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target)
        _remove(tmp)
    except OSError as exc:
        raise not_writable_error(target, exc) from exc
    try:
        yield tmp
        if tmp.is_dir():
            _fsync_tree(tmp)
            _replace_dir(tmp, target)
        else:
            _fsync_file(tmp)
            os.replace(tmp, target)
        _fsync_dir(target.parent)
    except OSError as exc:
        _remove(tmp)
        raise not_writable_error(target, exc) from exc
    except BaseException:
        _remove(tmp)
        raise


def _replace_dir(new: Path, target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        old = target.with_name(f".{target.name}{_OLD_MARK}{os.getpid()}")
        _remove(old)
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        if target.exists() or target.is_symlink():
            target.unlink()
        os.replace(new, target)


def replace_directory(target: str | os.PathLike[str], build: Callable[[Path], Any]) -> Any:
    """Run `build(tmp_dir)` to fill a fresh directory beside `target`, then swap it in for `target`.

    For tools that write a whole directory (e.g. GX Data Docs): a failed or killed build leaves the
    previous directory in place. Returns what `build` returns.
    """
    with atomic_path(target) as tmp:
        tmp.mkdir()
        return build(tmp)


@contextlib.contextmanager
def atomic_open(target: str | os.PathLike[str], mode: str = "wb", **kwargs: Any) -> Iterator[BinaryIO]:
    """`open(target, mode)` whose content appears at `target` only once it is complete."""
    with atomic_path(target) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh


def write_json_atomic(path: Path, payload: Any, indent: int | None = 2) -> None:
    """Write JSON beside `path` and rename it into place: a reader sees the old file or the whole new one."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(payload, indent=indent, ensure_ascii=False, default=str))


def display_path(path: str | os.PathLike[str]) -> str:
    """`path` relative to the working directory (the project root in a Kedro run) when it lies inside it:
    Kedro hands datasets absolute paths, and reports kept in git must not depend on the checkout."""
    path = Path(path)
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def fingerprint_bytes(content: bytes) -> dict[str, Any]:
    """What identifies a JSON Lines file's content: its line count, size and SHA-256."""
    lines = content.count(b"\n") + (bool(content) and not content.endswith(b"\n"))
    return {"lines": int(lines), "bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()}


def fingerprint_file(path: str | os.PathLike[str], block: int = 1 << 22) -> dict[str, Any]:
    """`fingerprint_bytes` of a file, read in blocks (the file may be larger than memory allows)."""
    digest = hashlib.sha256()
    size = lines = 0
    last = b"\n"
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
            size += len(chunk)
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    lines += last != b"\n"  # a last line without a final newline
    return {"lines": lines, "bytes": size, "sha256": digest.hexdigest()}
