import json
import os

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from mftlab.errors import MaskFormatError, MaskMismatchError
from mftlab.mask.fingerprint import tensor_fingerprint
from mftlab.mask.maskfile import Mask, file_bits_per_param, load_mask, save_mask


def _random_mask(shapes, ratio=0.1, seed=0, weights=None):
    g = torch.Generator().manual_seed(seed)
    keep = {f"t{i}.weight": torch.rand(s, generator=g) >= ratio for i, s in enumerate(shapes)}
    return Mask.from_keep(keep, weights, "base", {"name": "random", "mask_ratio": ratio}), keep


@pytest.mark.parametrize("codec", ["packbits", "zstd"])
def test_save_load_bit_exact_odd_shapes(tmp_path, codec):
    mask, keep = _random_mask([(7, 13), (13,), (1, 37), (64, 8)])
    path = tmp_path / "m.safetensors"
    save_mask(mask, path, codec=codec)
    loaded = load_mask(path)
    assert loaded.codec == codec
    for name, k in keep.items():
        assert torch.equal(loaded.keep(name), k)
        assert loaded.shapes[name] == tuple(k.shape)
    assert loaded.method["name"] == "random"


def test_file_is_plain_safetensors_with_documented_metadata(tmp_path):
    from safetensors import safe_open

    mask, _ = _random_mask([(7, 13)])
    save_mask(mask, tmp_path / "m.safetensors")
    with safe_open(str(tmp_path / "m.safetensors"), framework="numpy") as f:
        meta = f.metadata()
        assert f.get_tensor("t0.weight").shape == (7, 2)
    assert meta["format"] == "mftlab.mask" and meta["format_version"] == "1" and meta["bit_order"] == "little"
    info = json.loads(meta["tensors"])["t0.weight"]
    assert info["shape"] == [7, 13] and info["kept"] == mask.kept("t0.weight")


def test_bits_per_parameter_budget(tmp_path):
    # 1M+ targeted weights: packbits at most 1.01 bits, zstd at most 0.55 bits for i.i.d. 10% masked.
    mask, keep = _random_mask([(1024, 1024), (512, 1024)], ratio=0.1)
    for codec, budget in (("packbits", 1.01), ("zstd", 0.55)):
        path = tmp_path / f"{codec}.safetensors"
        save_mask(mask, path, codec=codec)
        assert file_bits_per_param(path, mask) <= budget
        assert all(torch.equal(load_mask(path).keep(n), k) for n, k in keep.items())


def test_fingerprint_same_for_fp32_and_bf16_and_differs_for_other_weights():
    w = torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
    w_bf16 = w.to(torch.bfloat16)
    assert tensor_fingerprint(w_bf16) == tensor_fingerprint(w_bf16.float())
    assert tensor_fingerprint(w) != tensor_fingerprint(w + 0.1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_check_fits_binds_to_base_weights(dtype):
    weights = {"t0.weight": torch.randn(7, 13, generator=torch.Generator().manual_seed(0)).to(dtype)}
    mask, _ = _random_mask([(7, 13)], weights=weights)
    assert mask.check_fits(weights) == []
    assert mask.check_fits({"t0.weight": weights["t0.weight"].float()}) == []  # dtype-independent
    other = {"t0.weight": weights["t0.weight"] * 2}
    with pytest.raises(MaskMismatchError, match="--force"):
        mask.check_fits(other)
    assert mask.check_fits(other, force=True) == ["t0.weight"]
    with pytest.raises(MaskMismatchError, match="shape"):
        mask.check_fits({"t0.weight": torch.zeros(13, 7)}, force=True)


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    import safetensors.numpy

    mask, _ = _random_mask([(7, 13)])

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(safetensors.numpy, "save_file", boom)
    with pytest.raises(RuntimeError):
        save_mask(mask, tmp_path / "m.safetensors")
    assert os.listdir(tmp_path) == []


def _write_raw(path, tensors, meta):
    save_file(tensors, str(path), metadata=meta)


def _good_meta(shape=(7, 13), kept=None, **override):
    meta = {
        "format": "mftlab.mask",
        "format_version": "1",
        "bit_order": "little",
        "codec": "packbits",
        "mftlab_version": "0",
        "base_model": "{}",
        "method": "{}",
        "tensors": json.dumps({"w": {"shape": list(shape), "kept": kept, "fingerprint": None}}),
    }
    meta.update(override)
    return meta


@pytest.mark.parametrize(
    "case, match",
    [
        ("not_safetensors", "not a readable safetensors"),
        ("truncated", "not a readable safetensors|truncated"),
        ("foreign", "not an mftlab mask"),
        ("version", "version '2'"),
        ("codec", "unknown codec"),
        ("bad_json", "not valid JSON"),
        ("padding", "padding bits"),
        ("kept", "kept="),
        ("kept_bool", "kept="),
        ("shape", "packs to"),
    ],
)
def test_invalid_files_are_refused_with_named_reason(tmp_path, case, match):
    path = tmp_path / "bad.safetensors"
    packed = np.packbits(np.ones((7, 13), dtype=bool), axis=-1, bitorder="little")
    if case == "not_safetensors":
        path.write_text("hello")
    elif case == "truncated":
        mask, _ = _random_mask([(7, 13)])
        save_mask(mask, path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) - 5])
    elif case == "foreign":
        _write_raw(path, {"w": packed}, {"format": "pt"})
    elif case == "version":
        _write_raw(path, {"w": packed}, _good_meta(kept=91, format_version="2"))
    elif case == "codec":
        _write_raw(path, {"w": packed}, _good_meta(kept=91, codec="lz4"))
    elif case == "bad_json":
        _write_raw(path, {"w": packed}, _good_meta(kept=91, tensors="{not json"))
    elif case == "padding":
        bad = packed.copy()
        bad[0, 1] |= 0x80
        _write_raw(path, {"w": bad}, _good_meta(kept=92))
    elif case == "kept":
        _write_raw(path, {"w": packed}, _good_meta(kept=90))
    elif case == "kept_bool":
        ones = np.packbits(np.eye(1, 13, dtype=bool), axis=-1, bitorder="little")
        _write_raw(path, {"w": ones}, _good_meta(shape=(1, 13), kept=True))
    elif case == "shape":
        _write_raw(path, {"w": packed}, _good_meta(shape=(7, 40), kept=91))
    with pytest.raises(MaskFormatError, match=match):
        load_mask(path)
