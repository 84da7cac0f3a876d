"""Manifests: the size and sha256 of every file in a folder, so a damaged copy is noticed before use.

    write_manifest(folder)          # last, once every other file of the folder is complete
    verify_manifest(folder)         # None when every file matches, else why not (one short phrase)

Generic on purpose: training checkpoints (`mftlab.training.checkpoint`), sharded checkpoints written with
`torch.distributed.checkpoint` (every process writes its part, then process 0 writes the manifest
once all parts are complete) and any other folder use the same two functions. Hidden files
(leftovers of interrupted writes) are not part of a manifest.
"""

from __future__ import annotations

import hashlib
import json
import os

from mftlab.files.atomic import write_text_atomic

MANIFEST = "manifest.json"
FORMAT = "mftlab.manifest"  # written into every manifest: never changes
_CHUNK = 1 << 20


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files(folder: str) -> list[str]:
    """Relative paths (with `/`) of every non-hidden file under `folder` except the manifest, sorted."""
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            rel = os.path.relpath(os.path.join(parent, name), folder).replace(os.sep, "/")
            if not name.startswith(".") and rel != MANIFEST:
                found.append(rel)
    return sorted(found)


def build_manifest(folder: str) -> dict:
    """{"format", "files": {relative path: {"size": bytes, "sha256": hex}}} of `folder` as it is now."""
    files = {}
    for rel in _files(folder):
        path = os.path.join(folder, rel)
        files[rel] = {"size": os.path.getsize(path), "sha256": file_sha256(path)}
    return {"format": FORMAT, "version": 1, "files": files}


def write_manifest(folder: str) -> dict:
    """Write `folder/manifest.json` (atomically) describing every other file; call it last."""
    manifest = build_manifest(folder)
    write_text_atomic(os.path.join(folder, MANIFEST), json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def has_manifest(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, MANIFEST))


def verify_manifest(folder: str) -> str | None:
    """None when `folder` matches its manifest; otherwise a short reason naming the first bad file.

    A folder without a manifest is reported as such; callers that accept older folders check
    `has_manifest` first. Sizes are compared before hashes, so a truncated file costs no hashing.
    """
    path = os.path.join(folder, MANIFEST)
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
        files = manifest["files"]
        if manifest.get("format") != FORMAT or not isinstance(files, dict):
            return f"{MANIFEST} is not an mftlab manifest"
    except FileNotFoundError:
        return f"no {MANIFEST}"
    except (OSError, ValueError, KeyError, TypeError):
        return f"{MANIFEST} is unreadable"
    for rel, entry in sorted(files.items()):
        file = os.path.join(folder, *rel.split("/"))
        if not os.path.isfile(file):
            return f"{rel} is missing"
        size = os.path.getsize(file)
        if size != entry.get("size"):
            return f"{rel} has {size} bytes, the manifest says {entry.get('size')}"
    for rel, entry in sorted(files.items()):
        if file_sha256(os.path.join(folder, *rel.split("/"))) != entry.get("sha256"):
            return f"{rel} does not match its sha256"
    extra = sorted(set(_files(folder)) - set(files))
    if extra:
        return f"{extra[0]} is not in the manifest"
    return None
