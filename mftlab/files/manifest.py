"""Manifests: the size and sha256 of every file in a folder, so a damaged copy is noticed before use.

    write_manifest(folder)          # last, once every other file of the folder is complete
    verify_manifest(folder)         # None when every file matches, else why not (one short phrase)

Generic on purpose: training checkpoints (`mftlab.training.checkpoint`), sharded checkpoints written with
`torch.distributed.checkpoint` and any other folder use the same functions. Hidden files (leftovers of
interrupted writes) are not part of a manifest unless a writer hashes one itself and hands it in.

Hashing can be split over processes: each hashes its share (`hash_files`) and one writes the manifest
from their entries (`write_manifest(folder, hashed)`); on reading, each checks its share
(`find_problem(folder, share)`) and the smallest `Problem` of all is what one process checking
everything would have reported.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Callable, Collection, NamedTuple

from mftlab.files.atomic import write_text_atomic

MANIFEST = "manifest.json"
FORMAT = "mftlab.manifest"  # written into every manifest: never changes
_CHUNK = 1 << 20


Share = Callable[[dict], Collection[str]]  # {name: entry} of a manifest -> the names one process hashes


class Problem(NamedTuple):
    """Why a folder does not match its manifest; problems sort in the order the checks run."""

    check: int  # 0 the manifest itself, 1 a file's presence or size, 2 its sha256, 3 a file not listed
    file: str
    reason: str


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_files(folder: str) -> list[str]:
    """Relative paths (with `/`) of every non-hidden file under `folder` except the manifest, sorted."""
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            rel = os.path.relpath(os.path.join(parent, name), folder).replace(os.sep, "/")
            if not name.startswith(".") and rel != MANIFEST:
                found.append(rel)
    return sorted(found)


def hash_files(folder: str, names: Collection[str]) -> dict[str, dict]:
    """{relative path: {"size": bytes, "sha256": hex}} of `names` (relative to `folder`, with `/`)."""
    entries = {}
    for rel in sorted(names):
        path = os.path.join(folder, *rel.split("/"))
        entries[rel] = {"size": os.path.getsize(path), "sha256": file_sha256(path)}
    return entries


def build_manifest(folder: str, hashed: dict[str, dict] | None = None) -> dict:
    """{"format", "version", "files": {relative path: {"size", "sha256"}}} of `folder` as it is now.

    `hashed`: entries other processes made of the files they wrote (`hash_files`), taken as they
    are; every other file is hashed here.
    """
    files = dict(hashed or {})
    files.update(hash_files(folder, [rel for rel in manifest_files(folder) if rel not in files]))
    return {"format": FORMAT, "version": 1, "files": dict(sorted(files.items()))}


def write_manifest(folder: str, hashed: dict[str, dict] | None = None) -> dict:
    """Write `folder/manifest.json` (atomically) describing every other file; call it last."""
    manifest = build_manifest(folder, hashed)
    write_text_atomic(os.path.join(folder, MANIFEST), json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def has_manifest(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, MANIFEST))


def _read(folder: str) -> dict | Problem:
    try:
        with open(os.path.join(folder, MANIFEST), encoding="utf-8") as f:
            manifest = json.load(f)
        files = manifest["files"]
        if manifest.get("format") != FORMAT or not isinstance(files, dict):
            return Problem(0, MANIFEST, f"{MANIFEST} is not an mftlab manifest")
    except FileNotFoundError:
        return Problem(0, MANIFEST, f"no {MANIFEST}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return Problem(0, MANIFEST, f"{MANIFEST} is unreadable")
    if not all(isinstance(entry, dict) for entry in files.values()):
        return Problem(0, MANIFEST, f"{MANIFEST} is unreadable")
    return files


def find_problem(folder: str, share: Share | None = None) -> Problem | None:
    """The first way `folder` differs from its manifest, or None.

    Sizes are compared before hashes, so a truncated file costs no hashing. `share` picks which of
    the manifest's files ({name: entry}) this process hashes (default: all); every other check is
    cheap and made in full, so the smallest problem over processes whose shares cover the manifest
    equals `find_problem(folder)`.
    """
    files = _read(folder)
    if isinstance(files, Problem):
        return files
    for rel, entry in sorted(files.items()):
        file = os.path.join(folder, *rel.split("/"))
        if not os.path.isfile(file):
            return Problem(1, rel, f"{rel} is missing")
        size = os.path.getsize(file)
        if size != entry.get("size"):
            return Problem(1, rel, f"{rel} has {size} bytes, the manifest says {entry.get('size')}")
    mine = sorted(files) if share is None else sorted(set(share(files)) & set(files))
    for rel in mine:
        try:
            digest = file_sha256(os.path.join(folder, *rel.split("/")))
        except OSError as exc:  # a verdict, not an exception: the other processes wait for this one's
            return Problem(2, rel, f"{rel} cannot be read ({exc.strerror or exc})")
        if digest != files[rel].get("sha256"):
            return Problem(2, rel, f"{rel} does not match its sha256")
    extra = sorted(set(manifest_files(folder)) - set(files))
    if extra:
        return Problem(3, extra[0], f"{extra[0]} is not in the manifest")
    return None


def verify_manifest(folder: str) -> str | None:
    """None when `folder` matches its manifest; otherwise a short reason naming the first bad file.

    A folder without a manifest is reported as such; callers that accept older folders check
    `has_manifest` first.
    """
    problem = find_problem(folder)
    return None if problem is None else problem.reason
