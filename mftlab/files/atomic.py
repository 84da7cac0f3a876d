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


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _default_mode() -> int:
    # mkstemp creates 0600 files; give outputs the permissions a plain open() would.
    return 0o666 & ~_umask()


def _writable_dir(target: str) -> str:
    folder = os.path.dirname(os.path.abspath(target)) or "."
    if not os.path.isdir(folder):
        raise MftlabError(f"folder '{folder}' for output '{target}' does not exist; create it first")
    return folder


def _write_failure(exc: BaseException) -> str | None:
    """Why a write failed (full disk, file too large, no permission), or None for any other error.

    safetensors and torch.save report I/O failures as their own error types, not OSError.
    """
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    text = str(exc)
    if type(exc).__name__ == "SafetensorError" and "I/O error" in text:
        return text.split("I/O error:", 1)[1].strip()
    if isinstance(exc, RuntimeError) and "write failed" in text:  # torch.save's PytorchStreamWriter
        return "file write failed (full disk?)"
    return None


def _failed(target: str, reason: str) -> MftlabError:
    return MftlabError(f"could not write '{target}': {reason}; check free space and permissions")


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
    except BaseException as exc:
        _remove(tmp)
        reason = _write_failure(exc)
        if reason is not None:
            raise _failed(target, reason) from None
        raise


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike):
    """Yield a temporary folder next to `target`; on success it becomes `target` (which must not exist)."""
    target = os.fspath(target)
    folder = _writable_dir(target)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=folder)
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders; give what os.mkdir would
        os.rename(tmp, target)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        reason = _write_failure(exc)
        if reason is not None:
            raise _failed(target, reason) from None
        raise


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    """Write a small text file (JSON, CSV, markdown) atomically."""
    with atomic_path(target) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def append_line(file, line: str) -> None:
    """Append one line to an open log file and flush it; a failed write becomes a clean MftlabError.

    A torn last line is possible after such a failure (or a kill); the readers drop it.
    """
    try:
        file.write(line + "\n")
        file.flush()
    except OSError as exc:
        with contextlib.suppress(OSError):
            file.close()  # drops the unwritable buffer, so the caller's close() does not fail again
        raise _failed(file.name, exc.strerror or str(exc)) from None


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
