"""One writer per results folder: an OS lock (`fcntl.flock`) on `OUT/.mftlab.lock`.

    with hold_folder("runs/x"):        # before the first check of the folder, to the end of the run
        ...

The lock file holds the owner's pid, host and start time (JSON), so a second writer can say who
owns the folder. The lock belongs to the open file, not to the file on disk: the operating system
releases it when the owner exits in any way (`kill -9` included), so a killed run never leaves a
stale lock and `--resume` just works. flock does not work across machines on NFS.

Under a launcher (torchrun, accelerate) with an initialised `torch.distributed` process group,
process 0 takes the lock and the others wait for its answer (a broadcast): either all go on, or
all raise the same error. Taking a folder also removes the hidden `.NAME.XXXX.tmp` leftovers of
writes that a killed run left behind (see `mftlab.files.atomic`). Locks nest: a process that already
holds a folder may take it again (a sweep's training runs, the demo's steps).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import re
import shutil
import socket
import sys

from mftlab.errors import MftlabError

LOCK_NAME = ".mftlab.lock"
BUSY = "is in use by another mftlab run"

_held: dict[str, int] = {}  # real path of a lock file -> nesting depth, in this process


class FolderInUseError(MftlabError):
    """Another mftlab run holds the folder."""


def _owner_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            owner = json.load(f)
        started = datetime.datetime.fromtimestamp(float(owner["started"])).strftime("%H:%M:%S")
        return f"pid {owner['pid']} on {owner['host']}, started {started}"
    except (OSError, ValueError, KeyError, TypeError):
        return "owner unknown"  # the owner is between creating the file and writing it


def _busy(folder: str, lock_path: str) -> FolderInUseError:
    return FolderInUseError(
        f"'{folder}' {BUSY} ({_owner_text(lock_path)}); wait for it to finish or choose another --out"
    )


def _try_lock(lock_path: str) -> int | None:
    """An open, locked descriptor of `lock_path`, or None when another process holds it."""
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        # The owner we waited on may have removed the file on release: then this lock is on a dead
        # inode and a newcomer could lock a fresh file. Lock whatever the name points to now.
        try:
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _write_owner(fd: int) -> None:
    owner = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().timestamp(),
        "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv[:8])),
    }
    data = (json.dumps(owner) + "\n").encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


# What `mftlab.files.atomic` leaves when killed mid-write: tempfile's 8 random characters between the
# target's name and `.tmp`, hidden (`.mask.safetensors.k3j_9x0a.tmp`, `.step-000004.a8b2c9d0.tmp`).
_LEFTOVER = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def is_leftover(name: str) -> bool:
    return bool(_LEFTOVER.match(name))


def remove_leftovers(folder: str, recursive: bool = True) -> list[str]:
    """Delete the hidden temporary files and folders of interrupted atomic writes under `folder`.

    Only safe while holding the folder: nobody else is writing there.
    """
    removed = []
    for parent, dirs, files in os.walk(folder):
        for name in [d for d in dirs if is_leftover(d)]:
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
            dirs.remove(name)
            removed.append(os.path.join(parent, name))
        for name in filter(is_leftover, files):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(parent, name))
            removed.append(os.path.join(parent, name))
        if not recursive:
            break
    return removed


def _distributed() -> tuple[int, int]:
    """(rank, world size) of an initialised torch.distributed group, else (0, 1). Never imports torch."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def _share(error: str | None, world: int) -> str | None:
    """Process 0's outcome, on every process (the barrier the other processes wait at)."""
    if world <= 1:
        return error
    import torch.distributed as dist

    box = [error]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextlib.contextmanager
def hold_folder(
    folder: str | os.PathLike, *, shown: str | None = None, clean: bool | str = True, distributed: bool = True
):
    """Own `folder` (created if missing) for the duration of the block; see the module docstring.

    `shown`: how the folder is named in the error (default: as given). `clean`: remove leftovers
    of interrupted writes once the folder is held (True: in the whole tree, as for run folders;
    "top": in the folder itself only, for outputs written into any folder a user names). A folder
    this call created is removed again if it is still empty at the end (a run that failed its
    checks leaves nothing behind).
    """
    folder = os.fspath(folder)
    if os.path.exists(folder) and not os.path.isdir(folder):
        yield  # not a folder: the command refuses it in its own words
        return
    with _hold_path(
        os.path.join(folder, LOCK_NAME), folder, shown or folder, clean=clean, distributed=distributed, make=folder
    ):
        yield


@contextlib.contextmanager
def hold_output(target: str | os.PathLike, *, distributed: bool = True):
    """Own the output `target` (a file, or a folder that must not exist yet) by a lock beside it.

    The lock file is `.NAME.mftlab.lock` in the target's folder, so the target itself stays
    untouched (commands that refuse an existing --out keep doing so).
    """
    target = os.fspath(target)
    parent = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(parent):
        yield  # the writer reports the missing folder in its own words
        return
    lock = os.path.join(parent, f".{os.path.basename(os.path.abspath(target))}{LOCK_NAME}")
    with _hold_path(lock, parent, target, clean=False, distributed=distributed, make=None):
        yield


@contextlib.contextmanager
def _hold_path(lock_path: str, folder: str, shown: str, *, clean: bool | str, distributed: bool, make: str | None):
    rank, world = _distributed() if distributed else (0, 1)
    key = os.path.realpath(lock_path)
    nested = key in _held
    created, fd, error = False, None, None
    if rank == 0 and not nested:
        try:
            if make is not None and not os.path.isdir(make):
                os.makedirs(make, exist_ok=True)
                created = True
            fd = _try_lock(lock_path)
            if fd is None:
                error = str(_busy(shown, lock_path))
            else:
                with contextlib.suppress(OSError):  # a full disk: the lock holds without its owner's name
                    _write_owner(fd)
                if clean:
                    remove_leftovers(folder, recursive=clean != "top")
        except OSError as exc:
            error = f"could not write '{lock_path}': {exc.strerror or exc}; check free space and permissions"
    error = _share(error, world)
    if error is not None:
        if fd is not None:
            _release(fd, lock_path, None)
        if created:
            _remove_if_empty(make)
        raise (FolderInUseError if BUSY in error else MftlabError)(error)
    if fd is not None or nested:
        _held[key] = _held.get(key, 0) + 1
    try:
        yield
    finally:
        if fd is not None or nested:
            _held[key] -= 1
            if not _held[key]:
                del _held[key]
        if fd is not None:
            _release(fd, lock_path, make if created else None)


def _release(fd: int, lock_path: str, created_folder: str | None) -> None:
    # Remove the file while still holding the lock; `_try_lock` re-checks the inode, so a waiter
    # that opened the old file cannot think it owns the folder.
    with contextlib.suppress(OSError):
        if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
            os.remove(lock_path)
    os.close(fd)
    if created_folder is not None:
        _remove_if_empty(created_folder)


def _remove_if_empty(folder: str) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(folder)  # fails unless empty, which is what we want
