"""Manifests (size + sha256 of every file) and checkpoints verified before --resume uses them."""

import json
import os

import pytest
import torch

from mftlab.errors import ConfigError
from mftlab.files.manifest import MANIFEST, Problem, find_problem, hash_files, verify_manifest, write_manifest
from mftlab.training import checkpoint as ckpt


def _folder(tmp_path):
    folder = tmp_path / "f"
    (folder / "part").mkdir(parents=True)
    (folder / "a.bin").write_bytes(bytes(range(256)) * 4)
    (folder / "part" / "b.json").write_text('{"x": 1}')
    return folder


def test_an_intact_folder_verifies(tmp_path):
    folder = _folder(tmp_path)
    manifest = write_manifest(str(folder))
    assert sorted(manifest["files"]) == ["a.bin", "part/b.json"]
    assert manifest["files"]["a.bin"]["size"] == 1024
    assert verify_manifest(str(folder)) is None


@pytest.mark.parametrize(
    "damage, reason",
    [
        ("flip", "a.bin does not match its sha256"),
        ("truncate", "a.bin has 1000 bytes, the manifest says 1024"),
        ("delete", "part/b.json is missing"),
        ("extra", "c.bin is not in the manifest"),
    ],
)
def test_damage_is_named(tmp_path, damage, reason):
    folder = _folder(tmp_path)
    write_manifest(str(folder))
    path = folder / "a.bin"
    if damage == "flip":
        data = bytearray(path.read_bytes())
        data[517] ^= 0x01
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        os.truncate(path, 1000)
    elif damage == "delete":
        os.remove(folder / "part" / "b.json")
    else:
        (folder / "c.bin").write_bytes(b"x")
    assert verify_manifest(str(folder)) == reason


def test_missing_or_broken_manifest(tmp_path):
    folder = _folder(tmp_path)
    assert verify_manifest(str(folder)) == f"no {MANIFEST}"
    (folder / MANIFEST).write_text("{not json")
    assert verify_manifest(str(folder)) == f"{MANIFEST} is unreadable"


def test_entries_hashed_elsewhere_are_taken_and_the_rest_hashed(tmp_path):
    """How processes split the hashing: one writes the manifest from the others' entries."""
    folder = _folder(tmp_path)
    (folder / ".index").write_bytes(b"hidden")
    theirs = hash_files(str(folder), ["part/b.json", ".index"])
    alone = write_manifest(str(folder))
    manifest = write_manifest(str(folder), theirs)
    assert sorted(alone["files"]) == ["a.bin", "part/b.json"]
    assert sorted(manifest["files"]) == [".index", "a.bin", "part/b.json"]  # a hidden file only when handed in
    assert manifest["files"] == alone["files"] | {".index": theirs[".index"]}
    assert manifest["format"] == "mftlab.manifest" and verify_manifest(str(folder)) is None
    (folder / ".index").write_bytes(b"hidxen")
    assert verify_manifest(str(folder)) == ".index does not match its sha256"
    write_manifest(str(folder), {"a.bin": {"size": 1024, "sha256": "0" * 64}})  # taken as it is
    assert verify_manifest(str(folder)) == "a.bin does not match its sha256"


def test_shares_of_the_hashing_find_what_one_process_finds(tmp_path):
    folder = _folder(tmp_path)
    (folder / "c.bin").write_bytes(b"c" * 100)
    write_manifest(str(folder))
    shares = [lambda files: ["a.bin"], lambda files: ["c.bin", "part/b.json"]]
    assert [find_problem(str(folder), share) for share in shares] == [None, None]
    for name in ("c.bin", "part/b.json"):
        data = bytearray((folder / name).read_bytes())
        data[1] ^= 0x01
        (folder / name).write_bytes(bytes(data))
    (folder / "d.bin").write_bytes(b"x")  # not in the manifest: found by every share, after the hashes
    found = [find_problem(str(folder), share) for share in shares]
    assert found == [
        Problem(3, "d.bin", "d.bin is not in the manifest"),
        Problem(2, "c.bin", "c.bin does not match its sha256"),
    ]
    assert min(found).reason == verify_manifest(str(folder)) == "c.bin does not match its sha256"
    os.truncate(folder / "a.bin", 10)  # sizes are checked in full by every share, before any hashing
    assert {find_problem(str(folder), share) for share in shares} == {
        Problem(1, "a.bin", "a.bin has 10 bytes, the manifest says 1024")
    }


# -- checkpoints --------------------------------------------------------------------------------
def _save(out, step):
    trainable = {"w": torch.full((4, 4), float(step))}
    state = {"optimizer": {"step": step}, "scheduler": {}, "rng": ckpt.capture_rng()}
    return ckpt.save_checkpoint(str(out), step, trainable, state, {"best_eval_loss": None}, keep=3)


def test_checkpoints_carry_a_manifest_written_last(tmp_path):
    path = _save(tmp_path, 1)
    assert sorted(os.listdir(path)) == [MANIFEST, "state.pt", "trainable.safetensors", "trainer_state.json"]
    assert verify_manifest(path) is None


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_resume_skips_a_damaged_newest_checkpoint_with_one_warning(tmp_path, damage):
    for step in (1, 2, 3):
        newest = _save(tmp_path, step)
    target = os.path.join(newest, "trainable.safetensors" if damage == "flip" else "state.pt")
    if damage == "flip":
        data = bytearray(open(target, "rb").read())
        data[-3] ^= 0x40  # inside the tensor data: safetensors itself would not notice
        open(target, "wb").write(bytes(data))
    else:
        os.truncate(target, os.path.getsize(target) // 2)
    warnings = []
    resumed = ckpt.latest_checkpoint(str(tmp_path), warnings.append)
    assert resumed.step == 2 and float(resumed.trainable["w"][0, 0]) == 2.0
    assert len(warnings) == 1
    assert warnings[0].startswith("warning: skipped damaged checkpoint (step-000003: ")
    assert warnings[0].endswith("); resuming from step 2")


def _as_before_manifests(folder):
    """What a checkpoint written before manifests looks like: no manifest, and no mention of one."""
    os.remove(os.path.join(folder, MANIFEST))
    state_file = os.path.join(folder, "trainer_state.json")
    state = json.loads(open(state_file).read())
    del state["manifest"]
    open(state_file, "w").write(json.dumps(state))


def test_checkpoints_from_before_manifests_are_accepted(tmp_path):
    _as_before_manifests(_save(tmp_path, 1))
    warnings = []
    assert ckpt.latest_checkpoint(str(tmp_path), warnings.append).step == 1
    assert warnings == []


def test_a_checkpoint_that_lost_its_manifest_is_skipped(tmp_path):
    for step in (1, 2):
        newest = _save(tmp_path, step)
    os.remove(os.path.join(newest, MANIFEST))  # its trainer_state.json says it had one
    warnings = []
    assert ckpt.latest_checkpoint(str(tmp_path), warnings.append).step == 1
    assert warnings == [
        f"warning: skipped damaged checkpoint (step-000002: {MANIFEST} is missing); resuming from step 1"
    ]


def test_the_manifest_format_name_never_changes(tmp_path):
    # Written into every checkpoint's manifest: a new name would make every older checkpoint "damaged".
    assert write_manifest(str(_folder(tmp_path)))["format"] == "mftlab.manifest"


def test_every_checkpoint_damaged_is_a_clear_error(tmp_path):
    for step in (1, 2):
        path = _save(tmp_path, step)
        with open(os.path.join(path, "trainer_state.json"), "a") as f:
            f.write(" ")
    with pytest.raises(ConfigError, match=r"every checkpoint in .* is damaged \(step-000002: trainer_state.json has"):
        ckpt.latest_checkpoint(str(tmp_path))
    assert json.loads(open(os.path.join(path, "trainer_state.json")).read())["step"] == 2
