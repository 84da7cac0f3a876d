"""Generators of broken (and a few still-valid) mask and data files, all seeded.

Each generator yields `(case_id, path, valid)`: `valid` is True where the edit leaves a file that
must still load correctly (then the test compares the bits with the original), False where it must
be refused with a one-line error and exit code 1. `None` means "either is fine, but never a
traceback" (e.g. a flipped byte inside a JSON string value that may or may not matter).
"""

from __future__ import annotations

import json
import os
import random
import struct

import numpy as np

from mftlab.mask.maskfile import Mask, save_mask

# Odd shapes so that every row has padding bits, plus a 1-D tensor.
SHAPES = {
    "model.layers.0.mlp.up_proj.weight": (5, 13),
    "model.layers.0.input_layernorm.weight": (7,),
    "model.layers.1.self_attn.q_proj.weight": (4, 16),
}


def make_mask(seed: int = 0) -> Mask:
    rng = np.random.default_rng(seed)
    keep = {name: rng.random(shape) > 0.3 for name, shape in SHAPES.items()}
    mask = Mask.from_keep(keep, None, "synthetic", {"name": "random", "mask_ratio": 0.3, "seed": seed})
    mask.fingerprints = {n: f"bf16:{i:016x}" for i, n in enumerate(SHAPES)}
    return mask


# -- safetensors surgery ------------------------------------------------------------------------
def split(data: bytes) -> tuple[dict, bytes]:
    """(header dict, data bytes) of a safetensors file."""
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def join(header: dict, body: bytes) -> bytes:
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + body


def edit_metadata(data: bytes, key: str, value) -> bytes:
    """Set (value is a str) or delete (value is None) one `__metadata__` entry."""
    header, body = split(data)
    meta = dict(header.get("__metadata__", {}))
    if value is None:
        meta.pop(key, None)
    else:
        meta[key] = value
    header["__metadata__"] = meta
    return join(header, body)


def edit_tensors_meta(data: bytes, change) -> bytes:
    """Apply `change(tensors_dict)` to the JSON of the `tensors` metadata entry."""
    header, body = split(data)
    tensors = json.loads(header["__metadata__"]["tensors"])
    change(tensors)
    header["__metadata__"]["tensors"] = json.dumps(tensors)
    return join(header, body)


def _write(folder: str, name: str, data: bytes) -> str:
    path = os.path.join(folder, name + ".safetensors")
    with open(path, "wb") as f:
        f.write(data)
    return path


# -- mask cases ---------------------------------------------------------------------------------
def _metadata_edits(first: str, one_d: str) -> list[tuple[str, object, bool]]:
    """(case, edit, valid): `edit` is (key, value) for __metadata__ or a callable on `tensors`."""

    def shape(name, value):
        return lambda t: t[name].__setitem__("shape", value)

    def kept(name, value):
        return lambda t: t[name].__setitem__("kept", value)

    def drop(name, key):
        return lambda t: t[name].pop(key)

    cases = [
        # format / version / bit order / codec
        ("format-missing", ("format", None), False),
        ("format-other", ("format", "pytorch"), False),
        ("format-empty", ("format", ""), False),
        ("version-2", ("format_version", "2"), False),
        ("version-0", ("format_version", "0"), False),
        ("version-missing", ("format_version", None), False),
        ("version-1.0", ("format_version", "1.0"), False),
        ("version-junk", ("format_version", "\x00\x01"), False),
        ("bitorder-big", ("bit_order", "big"), False),
        ("bitorder-missing", ("bit_order", None), False),
        ("codec-gzip", ("codec", "gzip"), False),
        ("codec-zstd-on-packbits", ("codec", "zstd"), False),
        ("codec-empty", ("codec", ""), False),
        ("codec-missing", ("codec", None), True),
        ("mftlab-version-missing", ("mftlab_version", None), True),
        ("mftlab-version-junk", ("mftlab_version", "not a version"), True),
        # JSON fields
        ("tensors-missing", ("tensors", None), False),
        ("tensors-not-json", ("tensors", "{shape: [5"), False),
        ("tensors-plain-text", ("tensors", "hello world"), False),
        ("tensors-list", ("tensors", "[1, 2]"), False),
        ("tensors-empty", ("tensors", "{}"), False),
        ("tensors-null", ("tensors", "null"), False),
        ("tensors-number", ("tensors", "3"), False),
        ("tensors-nan", ("tensors", "NaN"), False),
        ("base-missing", ("base_model", None), False),
        ("base-not-json", ("base_model", "{'a': 1}"), False),
        ("base-list", ("base_model", "[]"), False),
        ("base-string", ("base_model", '"x"'), False),
        ("method-missing", ("method", None), False),
        ("method-not-json", ("method", "mft"), False),
        ("method-null", ("method", "null"), False),
        ("method-number", ("method", "1e999"), False),
        ("base-name-number", ("base_model", '{"name_or_path": 5}'), True),
        ("method-odd-values", ("method", '{"name": [1], "mask_ratio": "x", "seed": null}'), True),
        # per-tensor metadata
        ("shape-swapped", shape(first, [13, 5]), False),
        ("shape-plus-one", shape(first, [5, 14]), None),
        ("shape-rows-plus-one", shape(first, [6, 13]), False),
        ("shape-minus-cols", shape(first, [5, 8]), False),
        ("shape-negative", shape(first, [5, -13]), False),
        ("shape-float", shape(first, [5.0, 13]), False),
        ("shape-string", shape(first, "5x13"), False),
        ("shape-strings", shape(first, ["5", "13"]), False),
        ("shape-bool", shape(first, [True, 13]), False),
        ("shape-null", shape(first, None), False),
        ("shape-empty", shape(first, []), False),
        ("shape-3d", shape(first, [1, 5, 13]), False),
        ("shape-huge", shape(first, [2**40, 2**40]), False),
        ("shape-nested", shape(first, [[5], [13]]), False),
        ("shape-1d-wrong", shape(one_d, [9]), False),
        ("shape-1d-as-2d", shape(one_d, [1, 7]), False),
        ("shape-missing", drop(first, "shape"), False),
        ("kept-plus-one", kept(first, None), False),
        ("kept-minus-one", kept(first, None), False),
        ("kept-string", kept(first, None), False),
        ("kept-float", kept(first, None), False),
        ("kept-missing", drop(first, "kept"), False),
        ("kept-null", kept(first, None), False),
        ("kept-negative", kept(first, -1), False),
        ("kept-huge", kept(first, 10**30), False),
        ("fingerprint-number", lambda t: t[first].__setitem__("fingerprint", 12), False),
        ("fingerprint-missing", drop(first, "fingerprint"), True),
        ("tensor-info-list", lambda t: t.__setitem__(first, [5, 13]), False),
        ("tensor-info-null", lambda t: t.__setitem__(first, None), False),
        ("tensor-extra-in-meta", lambda t: t.__setitem__("ghost.weight", {"shape": [3], "kept": 1}), False),
        ("tensor-missing-in-meta", lambda t: t.pop(first), False),
    ]
    return cases


def _kept_value(case: str, true_kept: int):
    return {
        "kept-plus-one": true_kept + 1,
        "kept-minus-one": true_kept - 1,
        "kept-string": str(true_kept),
        "kept-float": float(true_kept) + 0.5,
        "kept-null": None,
    }[case]


def mask_cases(folder: str, seed: int = 0, flips: int = 150, truncations: int = 60, data_flips: int = 40):
    """Yield (case, path, valid) for hundreds of broken variants of two small mask files."""
    rng = random.Random(seed)
    mask = make_mask(seed)
    first, one_d = next(iter(SHAPES)), "model.layers.0.input_layernorm.weight"
    originals = {}
    for codec in ("packbits", "zstd"):
        path = os.path.join(folder, f"good-{codec}.safetensors")
        save_mask(mask, path, codec=codec)
        originals[codec] = open(path, "rb").read()
        yield f"good-{codec}", path, True
    good = originals["packbits"]
    header, body = split(good)
    header_end = 8 + struct.unpack("<Q", good[:8])[0]

    for case, edit, valid in _metadata_edits(first, one_d):
        if callable(edit):
            if case.startswith("kept-") and case not in ("kept-missing", "kept-negative", "kept-huge"):
                true_kept = mask.kept(first)
                value = _kept_value(case, true_kept)
                data = edit_tensors_meta(good, lambda t, v=value: t[first].__setitem__("kept", v))
            else:
                data = edit_tensors_meta(good, edit)
        else:
            data = edit_metadata(good, *edit)
        yield f"meta-{case}", _write(folder, f"meta-{case}", data), valid

    # Raw safetensors header edits: dtype, stored shape, offsets, extra tensors.
    def raw(case, change, valid=False):
        h = json.loads(json.dumps(header))
        change(h)
        return f"raw-{case}", _write(folder, f"raw-{case}", join(h, body)), valid

    yield raw("dtype-f32", lambda h: h[first].__setitem__("dtype", "F32"))
    yield raw("dtype-i8", lambda h: h[first].__setitem__("dtype", "I8"))
    yield raw("dtype-bool", lambda h: h[first].__setitem__("dtype", "BOOL"))
    yield raw("dtype-junk", lambda h: h[first].__setitem__("dtype", "Q7"))
    yield raw("stored-shape-flat", lambda h: h[first].__setitem__("shape", [int(np.prod(h[first]["shape"]))]))
    yield raw("stored-shape-wrong-size", lambda h: h[first].__setitem__("shape", [3, 3]))
    yield raw("offsets-past-end", lambda h: h[first].__setitem__("data_offsets", [0, len(body) + 100]))
    yield raw("offsets-reversed", lambda h: h[first].__setitem__("data_offsets", h[first]["data_offsets"][::-1]))
    yield raw("offsets-overlap", lambda h: h[one_d].__setitem__("data_offsets", h[first]["data_offsets"]))
    yield raw("metadata-not-strings", lambda h: h["__metadata__"].__setitem__("format_version", 1))
    yield raw("metadata-list", lambda h: h.__setitem__("__metadata__", ["format", "mftlab.mask"]))
    yield raw("no-metadata", lambda h: h.pop("__metadata__"))
    yield raw("no-tensors", lambda h: [h.pop(k) for k in list(h) if k != "__metadata__"])
    # Header-length prefix and header bytes.
    n = header_end - 8
    for case, prefix in (
        ("len-zero", 0),
        ("len-huge", 2**62),
        ("len-plus-8", n + 8),
        ("len-minus-8", n - 8),
        ("len-odd", n + 1),
    ):
        yield f"len-{case}", _write(folder, f"len-{case}", struct.pack("<Q", prefix) + good[8:]), False
    for case, data in (
        ("empty", b""),
        ("zeros", bytes(len(good))),
        ("text", b"this is not a mask\n" * 20),
        ("json", json.dumps({"format": "mftlab.mask"}).encode()),
        ("pickle", b"\x80\x04\x95" + bytes(40)),
        ("bom", b"\xef\xbb\xbf" + good),
    ):
        yield f"whole-{case}", _write(folder, f"whole-{case}", data), False

    # Random byte flips inside the header (length prefix + JSON): anything but a traceback.
    for i in range(flips):
        data = bytearray(good)
        for _ in range(rng.choice((1, 1, 1, 2, 4))):
            pos = rng.randrange(header_end)
            data[pos] = rng.randrange(256) if rng.random() < 0.5 else data[pos] ^ (1 << rng.randrange(8))
        yield f"hflip-{i}", _write(folder, f"hflip-{i}", bytes(data)), None

    # Truncations anywhere in both codecs' files.
    for i in range(truncations):
        codec = "packbits" if i % 2 == 0 else "zstd"
        src = originals[codec]
        cut = rng.randrange(len(src))
        yield f"trunc-{codec}-{cut}", _write(folder, f"trunc-{codec}-{i}", src[:cut]), False

    # Byte flips in the packed data: kept counts or padding no longer match -> refused.
    for i in range(data_flips):
        codec = "packbits" if i % 2 == 0 else "zstd"
        src = bytearray(originals[codec])
        end = 8 + struct.unpack("<Q", bytes(src[:8]))[0]
        pos = rng.randrange(end, len(src))
        src[pos] ^= 1 << rng.randrange(8)
        # A zstd flip may land in a checksum-free literal and still decode; any decode is then refused
        # by the popcount, so both codecs must refuse.
        yield f"dflip-{codec}-{i}", _write(folder, f"dflip-{codec}-{i}", bytes(src)), False

    # Padding bits set with `kept` updated to match: only the padding check can catch it.
    for name in (first, one_d):
        packed = {n: p.copy() for n, p in mask.packed.items()}
        last = mask.shapes[name][-1]
        pad_bit = np.uint8(1 << (last % 8))
        packed[name][..., -1] |= pad_bit
        from safetensors.numpy import save_file

        h, _ = split(good)
        meta = dict(h["__metadata__"])
        tensors = json.loads(meta["tensors"])
        tensors[name]["kept"] = int(np.unpackbits(packed[name]).sum())
        meta["tensors"] = json.dumps(tensors)
        path = os.path.join(folder, f"padding-{name}.safetensors")
        save_file(packed, path, metadata=meta)
        yield f"padding-{name}", path, False

    # zstd streams: garbage, a stream of the wrong size, a decompression bomb.
    import zstandard

    zh, zbody = split(originals["zstd"])
    for case, payload in (
        ("garbage", bytes(rng.randrange(256) for _ in range(16))),
        ("short", zstandard.ZstdCompressor().compress(b"\x01\x02")),
        ("long", zstandard.ZstdCompressor().compress(bytes(4096))),
        ("bomb", zstandard.ZstdCompressor().compress(bytes(64 << 20))),
        ("bomb-undeclared", zstandard.ZstdCompressor(write_content_size=False).compress(bytes(64 << 20))),
        ("declares-1TiB", _zstd_raw_frame(2**40, b"\x01" * 10)),
        ("declares-right-size-short", _zstd_raw_frame(10, b"\x01" * 3)),
        ("empty", b""),
    ):
        tensors = {}
        for name in SHAPES:
            start, stop = zh[name]["data_offsets"]
            tensors[name] = np.frombuffer(zbody[start:stop], dtype=np.uint8)
        tensors[first] = np.frombuffer(payload, dtype=np.uint8)
        from safetensors.numpy import save_file

        path = os.path.join(folder, f"zstd-{case}.safetensors")
        save_file(tensors, path, metadata=zh["__metadata__"])
        yield f"zstd-{case}", path, False


def _zstd_raw_frame(declared: int, payload: bytes) -> bytes:
    """A hand-made zstd frame: single segment, 8-byte declared content size, one raw block."""
    header = struct.pack("<I", 0xFD2FB528) + bytes([0xE0]) + struct.pack("<Q", declared)
    return header + ((len(payload) << 3) | 1).to_bytes(3, "little") + payload


# -- data cases ---------------------------------------------------------------------------------
GOOD_ROW = {"prompt": "2+2=", "completion": "4"}


def data_cases(folder: str, seed: int = 0, random_lines: int = 30):
    """Yield (case, path, valid) for broken and borderline data files (valid: loads and runs)."""
    rng = random.Random(seed)

    def jsonl(name, rows, valid):
        path = os.path.join(folder, f"{name}.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(row if isinstance(row, str) else json.dumps(row))
                f.write("\n")
        return name, path, valid

    def raw(name, ext, data: bytes, valid):
        path = os.path.join(folder, f"{name}{ext}")
        with open(path, "wb") as f:
            f.write(data)
        return name, path, valid

    good = [GOOD_ROW, {"text": "hello world"}]
    yield jsonl("good", good, True)
    yield jsonl("blank-lines", ["", json.dumps(GOOD_ROW), "   ", json.dumps(GOOD_ROW)], True)
    yield jsonl("broken-line", [GOOD_ROW, '{"prompt": "1+1=", "completion": ', GOOD_ROW], False)
    yield jsonl("broken-last-line", [GOOD_ROW, '{"prompt": "1+1="'], False)
    yield jsonl("trailing-comma", ['{"prompt": "a", "completion": "b",}'], False)
    yield jsonl("single-quotes", ["{'prompt': 'a', 'completion': 'b'}"], False)
    yield jsonl("missing-completion", [{"prompt": "a"}], False)
    yield jsonl("missing-prompt", [{"completion": "a"}], False)
    yield jsonl("no-known-fields", [{"question": "a", "answer": "b"}], False)
    yield jsonl("empty-object", [{}], False)
    yield jsonl("empty-completion", [{"prompt": "a", "completion": ""}], False)
    yield jsonl("blank-completion", [{"prompt": "a", "completion": "  \n\t"}], False)
    yield jsonl("empty-text", [{"text": ""}], False)
    yield jsonl("completion-number", [{"prompt": "a", "completion": 4}], False)
    yield jsonl("completion-null", [{"prompt": "a", "completion": None}], False)
    yield jsonl("completion-list", [{"prompt": "a", "completion": ["4"]}], False)
    yield jsonl("prompt-dict", [{"prompt": {"x": 1}, "completion": "4"}], False)
    yield jsonl("text-number", [{"text": 5}], False)
    yield jsonl("row-list", [[1, 2, 3]], False)
    yield jsonl("row-string", ['"just a string"'], False)
    yield jsonl("row-null", ["null"], False)
    yield jsonl("row-number", ["42"], False)
    yield jsonl("messages-empty", [{"messages": []}], False)
    yield jsonl("messages-string", [{"messages": "hi"}], False)
    yield jsonl("messages-no-role", [{"messages": [{"content": "hi"}]}], False)
    yield jsonl("messages-last-user", [{"messages": [{"role": "user", "content": "hi"}]}], False)
    yield jsonl(
        "messages-empty-answer",
        [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]}],
        False,
    )
    yield jsonl(
        "messages-content-list",
        [{"messages": [{"role": "user", "content": ["hi"]}, {"role": "assistant", "content": "x"}]}],
        False,
    )
    yield jsonl("answer-number", [{"prompt": "a", "completion": "b", "answer": 3}], True)
    yield jsonl("unicode", [{"prompt": "ünïcödé ☃ 中文 🙂", "completion": "é"}], True)
    yield jsonl("control-chars", [{"prompt": "\x00\x01\x1b[31m", "completion": "\x7f"}], True)
    yield jsonl("over-long-completion", [{"prompt": "a", "completion": "x" * 20000}], True)
    yield jsonl("over-long-text", [{"text": "y" * 50000}], True)
    yield jsonl("over-long-prompt-only", [{"prompt": "p" * 5000, "completion": "a"}], False)
    yield jsonl("over-long-prompt-some", [{"prompt": "p" * 5000, "completion": "a"}, GOOD_ROW], True)
    yield jsonl("deep-nesting", ["[" * 5000 + "]" * 5000], False)
    yield jsonl("huge-number", ['{"prompt": "a", "completion": "b", "x": 1e999999}'], True)
    yield raw("empty-file", ".jsonl", b"", False)
    yield raw("whitespace-only", ".jsonl", b"\n\n   \n", False)
    yield raw("invalid-utf8", ".jsonl", b'{"prompt": "a\xff\xfe", "completion": "b"}\n', False)
    yield raw("latin1", ".jsonl", '{"prompt": "caf\u00e9", "completion": "b"}\n'.encode("latin-1"), False)
    yield raw("utf8-bom", ".jsonl", b"\xef\xbb\xbf" + json.dumps(GOOD_ROW).encode() + b"\n", True)
    yield raw("nul-bytes", ".jsonl", b"\x00" * 64, False)
    yield raw("binary", ".jsonl", bytes(rng.randrange(256) for _ in range(512)), False)
    yield raw("crlf", ".jsonl", (json.dumps(GOOD_ROW) + "\r\n").encode() * 3, True)
    yield raw("no-final-newline", ".jsonl", json.dumps(GOOD_ROW).encode(), True)
    yield raw("json-array", ".json", json.dumps([GOOD_ROW, GOOD_ROW]).encode(), True)
    yield raw("json-broken", ".json", b'[{"prompt": "a", "completion"', False)
    yield raw("json-scalar", ".json", b"17", False)
    yield raw("json-empty", ".json", b"", False)
    yield raw("csv-good", ".csv", b"prompt,completion\n2+2=,4\n", True)
    yield raw("csv-missing-column", ".csv", b"prompt\n2+2=\n", False)
    yield raw("csv-empty-answer", ".csv", b"prompt,completion\n2+2=,\n", False)
    yield raw("csv-ragged", ".csv", b'prompt,completion\n1,2,3,4\n"unclosed\n', False)
    yield raw("csv-empty", ".csv", b"", False)
    yield raw("parquet-garbage", ".parquet", b"PAR1" + bytes(100), False)
    yield raw("unknown-ext", ".txt", b"hello", False)
    os.makedirs(os.path.join(folder, "not-a-dataset"), exist_ok=True)
    yield "not-a-dataset-folder", os.path.join(folder, "not-a-dataset"), False
    yield "missing-file", os.path.join(folder, "nope.jsonl"), False

    # Random corruption of a good file: one line damaged by flipped or cut characters.
    base = [json.dumps({"prompt": f"{i}+{i}=", "completion": str(2 * i)}) for i in range(6)]
    for i in range(random_lines):
        lines = list(base)
        j = rng.randrange(len(lines))
        line = lines[j]
        how = rng.choice(("cut", "flip", "drop-char", "insert"))
        pos = rng.randrange(len(line))
        if how == "cut":
            line = line[:pos]
        elif how == "flip":
            line = line[:pos] + chr(rng.randrange(32, 127)) + line[pos + 1 :]
        elif how == "drop-char":
            line = line[:pos] + line[pos + 1 :]
        else:
            line = line[:pos] + rng.choice('{}[]",:\\') + line[pos:]
        lines[j] = line
        yield jsonl(f"random-{i}-{how}", lines, None)
