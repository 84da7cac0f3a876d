"""Hundreds of generated bad inputs: each is refused with one `Error: ...` line and exit 1, or, where it
is still a valid file, loads correctly. Never a traceback.

Most cases run in-process through click's CliRunner (cheap); a few go through a real subprocess to
prove that nothing but the one line reaches stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from badinputs import data_cases, make_mask, mask_cases
from click.testing import CliRunner

from mftlab.cli.main import main
from mftlab.mask.maskfile import Mask, load_mask, save_mask

pytestmark = pytest.mark.reliability


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def clean_outcome(result) -> str | None:
    """None when the run ended cleanly (exit 0, or exit 1 with exactly one `Error:` line), else why not."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return f"raised {type(result.exception).__name__}: {str(result.exception)[:200]}"
    if "Traceback" in result.output:
        return "traceback in output"
    if result.exit_code == 1:
        errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
        last = [line for line in result.output.splitlines() if line.strip()][-1:]
        if len(errors) != 1 or last != errors:
            return f"not a single final 'Error:' line: {result.output[-300:]!r}"
        return None
    if result.exit_code != 0:
        return f"exit code {result.exit_code}: {result.output[-300:]!r}"
    return None


def check(result, valid, case) -> list[str]:
    problem = clean_outcome(result)
    if problem is None and valid is True and result.exit_code != 0:
        problem = f"valid input refused: {result.output.strip()[-300:]}"
    if problem is None and valid is False and result.exit_code != 1:
        problem = "bad input accepted"
    return [f"{case}: {problem}"] if problem else []


# -- mask files ---------------------------------------------------------------------------------
def test_generated_bad_mask_files(tmp_path):
    reference = make_mask(0)
    failures, counts = [], {"refused": 0, "loaded": 0}
    for case, path, valid in mask_cases(str(tmp_path)):
        result = invoke("inspect", path)
        failures += check(result, valid, case)
        counts["refused" if result.exit_code == 1 else "loaded"] += 1
        if valid is True and result.exit_code == 0:  # still valid: must hold the original bits
            loaded = load_mask(path)
            for name, packed in reference.packed.items():
                if not np.array_equal(loaded.packed[name], packed):
                    failures.append(f"{case}: loads to different bits for {name}")
    assert not failures, "\n".join(failures)
    assert sum(counts.values()) >= 300, counts
    assert counts["refused"] >= 280, counts


def test_mask_for_another_model(tmp_path):
    gpt2_mask = tmp_path / "gpt2.safetensors"
    assert invoke("baseline", "tiny-gpt2", "--kind", "random", "--layers", "0", "--out", gpt2_mask).exit_code == 0
    for args in (
        ("inspect", gpt2_mask, "--model", "tiny-llama"),
        ("apply", "tiny-llama", gpt2_mask, "--out", tmp_path / "merged"),
    ):
        result = invoke(*args)
        assert result.exit_code == 1 and clean_outcome(result) is None, result.output
        assert "not a parameter of this model" in result.output
    assert not (tmp_path / "merged").exists()

    # Same architecture, other weights: refused by the fingerprints unless --force.
    from mftlab.models.presets import build_preset

    llama_mask = tmp_path / "llama.safetensors"
    assert invoke("baseline", "tiny-llama", "--kind", "magnitude", "--layers", "1", "--out", llama_mask).exit_code == 0
    model, tokenizer = build_preset("tiny-llama", seed=1)
    other = tmp_path / "other-llama"
    model.save_pretrained(other, safe_serialization=True)
    tokenizer.save_pretrained(other)
    result = invoke("apply", other, llama_mask, "--out", tmp_path / "merged2")
    assert result.exit_code == 1 and clean_outcome(result) is None and "differ from the base" in result.output
    assert not (tmp_path / "merged2").exists()
    assert invoke("apply", other, llama_mask, "--out", tmp_path / "merged3", "--force").exit_code == 0

    # Right names, shapes that fit another model: transposed and resized tensors.
    mask = load_mask(llama_mask)
    name = next(n for n in mask.names if mask.shapes[n][0] != mask.shapes[n][1])  # transposing must matter
    rows, cols = mask.shapes[name]
    for case, shape in (("transposed", (cols, rows)), ("wider", (rows, cols + 8))):
        keep = {n: mask.keep(n) for n in mask.names}
        keep[name] = torch.ones(shape, dtype=torch.bool)
        bad = tmp_path / f"{case}.safetensors"
        save_mask(Mask.from_keep(keep, None, "tiny-llama", {"name": "random"}), bad)
        result = invoke("inspect", bad, "--model", "tiny-llama")
        assert result.exit_code == 1 and clean_outcome(result) is None and "has shape" in result.output, result.output


def test_bad_legacy_masks(tmp_path):
    """`mftlab convert` reads .pt files with weights_only=True: objects, junk and non-binary values refused."""
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    cases = {
        "object.pt": lambda p: p.write_bytes(pickle.dumps({"w": Evil()})),
        "junk.pt": lambda p: p.write_bytes(b"\x80\x02junk" * 10),
        "empty.pt": lambda p: p.write_bytes(b""),
        "values.pt": lambda p: torch.save({"model.layers.0.mlp.up_proj": torch.full((352, 128), 0.5)}, p),
        "list.pt": lambda p: torch.save([torch.ones(3)], p),
        "transposed.pt": lambda p: torch.save({"model.layers.0.mlp.up_proj": torch.ones(128, 352)}, p),
        "unknown.pt": lambda p: torch.save({"model.nothing.here": torch.ones(3)}, p),
    }
    for name, make in cases.items():
        path = tmp_path / name
        make(path)
        data = path.read_bytes()
        if name == "values.pt":  # also a truncated copy of a real tensor file
            (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
        for target in [path] + ([tmp_path / "cut.pt"] if name == "values.pt" else []):
            result = invoke("convert", target, "--model", "tiny-llama", "--out", tmp_path / "out.safetensors")
            assert result.exit_code == 1 and clean_outcome(result) is None, (target, result.output)
    assert not (tmp_path / "out.safetensors").exists()


# -- data files ---------------------------------------------------------------------------------
def test_generated_bad_data_files(tmp_path):
    failures, n = [], 0
    for case, path, valid in data_cases(str(tmp_path)):
        n += 1
        result = invoke("eval", "tiny-llama", "--data", path, "--no-generate", "--batch-size", 8, "--max-seq-len", 64)
        failures += check(result, valid, case)
    assert not failures, "\n".join(failures)
    assert n >= 85


def test_bad_data_in_training_and_skip_bad(tmp_path):
    """train refuses a bad record naming file:line; --skip-bad trains on the rest."""
    data = tmp_path / "mixed.jsonl"
    data.write_bytes(
        b'{"prompt": "1+1=", "completion": "2"}\n{"prompt": "x\xff"}\n'
        b'{"prompt": "2+2=", "completion": ""}\n' + b"[" * 3000 + b"\n"
        b'{"prompt": "3+3=", "completion": "6"}\n'
    )
    common = ("train", "tiny-llama", "--data", data, "--max-steps", 1, "--batch-size", 2, "--max-seq-len", 32)
    result = invoke(*common, "--out", tmp_path / "a")
    assert result.exit_code == 1 and clean_outcome(result) is None and "mixed.jsonl:2" in result.output, result.output
    result = invoke(*common, "--out", tmp_path / "b", "--skip-bad")
    assert result.exit_code == 0, result.output
    assert load_mask(tmp_path / "b" / "mask.safetensors").total > 0


# -- through a real process: stderr holds one line and no traceback -------------------------------
def _run_cli(*args):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.run(
        [sys.executable, "-m", "mftlab.cli.main", *map(str, args)], capture_output=True, text=True, env=env, timeout=300
    )


def test_bad_inputs_in_real_processes(tmp_path):
    os.makedirs(tmp_path / "m")
    os.makedirs(tmp_path / "d")
    masks = {case: path for case, path, _ in mask_cases(str(tmp_path / "m"))}
    data = {case: path for case, path, _ in data_cases(str(tmp_path / "d"))}
    truncated = next(path for case, path in masks.items() if case.startswith("trunc-packbits"))
    runs = [
        ("inspect", masks["zstd-declares-1TiB"]),
        ("inspect", truncated),
        ("inspect", masks["hflip-0"]),
        ("apply", "tiny-llama", masks["meta-tensors-not-json"], "--out", tmp_path / "merged"),
        ("eval", "tiny-llama", "--data", data["invalid-utf8"], "--no-generate"),
        ("eval", "tiny-llama", "--data", data["deep-nesting"], "--no-generate"),
    ]
    for args in runs:
        proc = _run_cli(*args)
        assert proc.returncode == 1, (args, proc.stderr)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: "), (args, proc.stderr)
    assert not (tmp_path / "merged").exists()
