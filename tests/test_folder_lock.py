"""Folder locks: one owner per folder, across processes; freed by the OS when the owner dies."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from mftlab.files.folder_lock import (
    LOCK_NAME,
    FolderInUseError,
    hold_folder,
    hold_output,
    is_leftover,
    remove_leftovers,
)

HOLD = """
import sys
from mftlab.files.folder_lock import hold_folder
with hold_folder(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def holder(tmp_path):
    """Another process holding tmp_path/'run' until its stdin closes."""
    folder = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    yield folder, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_a_second_owner_is_refused_with_the_owner_named(holder):
    folder, proc = holder
    owner = json.loads((folder / LOCK_NAME).read_text())
    assert owner["pid"] == proc.pid and owner["host"] == socket.gethostname()
    with pytest.raises(FolderInUseError) as err:
        with hold_folder(folder):
            pass
    message = str(err.value)
    assert message.startswith(
        f"'{folder}' is in use by another mftlab run (pid {proc.pid} on {socket.gethostname()}, started "
    )
    assert message.endswith("); wait for it to finish or choose another --out")
    assert "\n" not in message


def test_kill_9_frees_the_folder_at_once(holder):
    folder, proc = holder
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (folder / LOCK_NAME).exists()  # the file stays behind; the lock does not
    with hold_folder(folder):
        assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_release_removes_the_lock_file_and_a_folder_left_empty(tmp_path):
    kept, fresh = tmp_path / "kept", tmp_path / "fresh"
    kept.mkdir()
    for folder in (kept, fresh):
        with hold_folder(folder):
            assert (folder / LOCK_NAME).exists()
    assert kept.is_dir() and os.listdir(kept) == []
    assert not fresh.exists()  # created for a command that wrote nothing: removed again
    with hold_folder(fresh):
        (fresh / "result.json").write_text("{}")
    assert os.listdir(fresh) == ["result.json"]


def test_nested_holds_in_one_process(tmp_path):
    with hold_folder(tmp_path / "a"):
        with hold_folder(tmp_path / "a"):  # a sweep's runs, the demo's steps
            pass
        assert (tmp_path / "a" / LOCK_NAME).exists()  # still held by the outer block
    assert not (tmp_path / "a").exists()


def test_leftovers_of_interrupted_writes_are_removed_under_the_lock(tmp_path):
    import tempfile

    folder = tmp_path / "run"
    (folder / "checkpoints").mkdir(parents=True)
    _, torn_file = tempfile.mkstemp(prefix=".metrics.jsonl.", suffix=".tmp", dir=folder)
    torn_dir = tempfile.mkdtemp(prefix=".step-000004.", suffix=".tmp", dir=folder / "checkpoints")
    (folder / ".keep.tmp").write_text("not ours")  # no random part: another tool's file
    (folder / "config.json").write_text("{}")
    assert is_leftover(os.path.basename(torn_file)) and is_leftover(os.path.basename(torn_dir))
    with hold_folder(folder):
        pass
    assert not os.path.exists(torn_file) and not os.path.exists(torn_dir)
    assert sorted(os.listdir(folder)) == [".keep.tmp", "checkpoints", "config.json"]
    # "top": only the folder itself (outputs written into folders a user names)
    _, deep = tempfile.mkstemp(prefix=".x.", suffix=".tmp", dir=folder / "checkpoints")
    assert remove_leftovers(str(folder), recursive=False) == []
    assert os.path.exists(deep)


def test_hold_output_locks_beside_a_target_that_must_not_exist(tmp_path):
    target = tmp_path / "merged"
    with hold_output(target):
        assert not target.exists() and (tmp_path / f".merged{LOCK_NAME}").exists()
    assert not (tmp_path / f".merged{LOCK_NAME}").exists()
