"""Atomic writes: write to a temporary name in the target folder, then rename into place.

A crash or kill at any moment leaves either the previous file (or folder) or the new one,
never a half-written one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

from mftlab.errors import MftlabError


def _default_mode() -> int:
    # mkstemp creates 0600 files; give outputs the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _writable_dir(target: str) -> str:
    folder = os.path.dirname(os.path.abspath(target)) or "."
    if not os.path.isdir(folder):
        raise MftlabError(f"folder '{folder}' for output '{target}' does not exist; create it first")
    return folder


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike):
    """Yield a temporary file path next to `target`; on success it replaces `target`."""
    target = os.fspath(target)
    folder = _writable_dir(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, target)
    except OSError as exc:
        _remove(tmp)
        raise MftlabError(f"could not write '{target}': {exc.strerror or exc}; check free space and permissions") from None
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike):
    """Yield a temporary folder next to `target`; on success it becomes `target` (which must not exist)."""
    target = os.fspath(target)
    folder = _writable_dir(target)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=folder)
    try:
        yield tmp
        os.rename(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise MftlabError(f"could not write '{target}': {exc.strerror or exc}; check free space and permissions") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    """Write a small text file (JSON, CSV, markdown) atomically."""
    with atomic_path(target) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
