"""The 7B recipe's FSDP paths at sharded cost, rehearsed on two gloo processes with real models:
gradient accumulation reduce-scatters every micro-batch (same losses and weights as one big
micro-batch), rank 0 alone loads the checkpoint (tied embeddings too), peak memory per rank in
every metrics row, and the compute dtype comes from --precision (fp16 refused)."""

import json
import os
import subprocess

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from fsdp_fixtures import BIN, ENV, tiny_llama
from safetensors.torch import load_file

from mftlab.cli.main import main
from mftlab.errors import ConfigError
from mftlab.mask.maskfile import load_mask
from mftlab.training.sharding import fsdp_param_dtype


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from mftlab.models.tokenizer import build_char_tokenizer

    root = tmp_path_factory.mktemp("fsdp_scale")
    folders = {}
    for name, tied in (("llama", False), ("tied", True)):
        folders[name] = str(root / name)
        tiny_llama(tied).save_pretrained(folders[name])
        build_char_tokenizer().save_pretrained(folders[name])
    rng = np.random.default_rng(1)
    data = root / "train.jsonl"
    with open(data, "w") as f:
        for _ in range(16):
            a, b = (int(x) for x in rng.integers(0, 10, size=2))
            f.write(json.dumps({"prompt": f"{a}+{b}=", "completion": str(a + b)}) + "\n")
    return {**folders, "data": str(data)}


def torchrun(*args):
    cmd = [os.path.join(BIN, "torchrun"), "--nproc_per_node", "2", "-m", "mftlab.cli.main", *map(str, args)]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def rows(out) -> list[dict]:
    return [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]


def test_grad_accum_reduce_scatters_each_micro_batch(setup, tmp_path):
    """A: fp32 FFT, --grad-accum 4 (micro-batch 1) = --grad-accum 1 (micro-batch 4) on 2 FSDP processes:
    the same per-step losses (relative < 1e-5) and final weights; B: peak memory of both ranks per row."""
    common = ["--method", "fft", "--lr", "1e-3", "--batch-size", "8", "--max-seq-len", "32", "--max-steps", "6"]
    common += ["--log-every", "1", "--sharding", "fsdp", "--dtype", "float32"]
    for accum in (1, 4):
        torchrun("train", setup["llama"], "--data", setup["data"], "--out", tmp_path / f"a{accum}", *common,
                 "--grad-accum", accum)  # fmt: skip
    one, four = rows(tmp_path / "a1"), rows(tmp_path / "a4")
    assert [r["step"] for r in one] == [r["step"] for r in four] == list(range(1, 7))
    worst = max(abs(a["loss"] - b["loss"]) / abs(a["loss"]) for a, b in zip(one, four))
    assert worst < 1e-5, worst
    w1 = load_file(str(tmp_path / "a1" / "model" / "model.safetensors"))
    w4 = load_file(str(tmp_path / "a4" / "model" / "model.safetensors"))
    assert w1.keys() == w4.keys()
    assert all(torch.allclose(w1[n], w4[n], rtol=1e-5, atol=1e-6) for n in w1)
    for row in one + four:
        assert len(row["peak_mem_gib_by_rank"]) == 2
        assert row["peak_mem_gib"] == max(row["peak_mem_gib_by_rank"]) > 0


def test_rank0_loads_and_broadcasts_tied_weights(setup, tmp_path):
    """C: ranks > 0 build the tied-embedding model on the meta device and get the weights by broadcast;
    the mask equals one process's bit for bit (fp32)."""
    args = ["--score-lr", "0.05", "--batch-size", "4", "--max-seq-len", "32", "--max-steps", "8", "--log-every", "4"]
    two = torchrun("train", setup["tied"], "--data", setup["data"], "--out", tmp_path / "two", "--sharding", "fsdp",
                   *args)  # fmt: skip
    assert "2 process(es)" in two.stderr
    one = CliRunner().invoke(
        main, ["train", setup["tied"], "--data", setup["data"], "--out", str(tmp_path / "one"), *args]
    )
    assert one.exit_code == 0, one.output
    a, b = load_mask(str(tmp_path / "one" / "mask.safetensors")), load_mask(str(tmp_path / "two" / "mask.safetensors"))
    assert a.names == b.names and a.fingerprints == b.fingerprints
    assert all(np.array_equal(a.packed[n], b.packed[n]) for n in a.names)
    assert [r["flips"] for r in rows(tmp_path / "one")] == [r["flips"] for r in rows(tmp_path / "two")]


@pytest.mark.parametrize("method", ["mask", "fft"])
def test_rank0_load_gives_every_process_the_checkpoint_in_bf16(setup, method):
    """C, tensor by tensor: after the broadcast every process holds the folder's weights, tied embeddings,
    fp32 rotary buffers beside bf16 weights, MFT scores (and FFT's fp32 masters) bit for bit."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "check_rank0_load.py")
    cmd = [os.path.join(BIN, "torchrun"), "--nproc_per_node", "2", script, setup["tied"], method]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("identical") == 2


def test_fsdp_compute_dtype_follows_precision(tiny_llama):
    """G: --precision fp32 computes in fp32 over bf16 weights; auto without bf16 autocast follows the
    trainable weights (as DDP); a model that would compute in fp16 is refused, naming --dtype bfloat16."""
    model = tiny_llama.to(torch.bfloat16)
    for p in model.parameters():
        p.requires_grad_(False)
    assert fsdp_param_dtype("fp32", "no", model) == torch.float32
    assert fsdp_param_dtype("bf16", "bf16", model) == torch.bfloat16
    assert fsdp_param_dtype("auto", "no", model) is None  # frozen bf16 base, no 16-bit trainable
    model.model.embed_tokens.weight.requires_grad_(True)
    assert fsdp_param_dtype("auto", "no", model) == torch.bfloat16
    model.half()
    assert fsdp_param_dtype("fp32", "no", model) == torch.float32
    with pytest.raises(ConfigError, match="--dtype bfloat16"):
        fsdp_param_dtype("auto", "no", model)


def test_fp16_under_fsdp_is_one_line(setup, tmp_path):
    args = ["train", setup["llama"], "--data", setup["data"], "--out", str(tmp_path / "o"), "--sharding", "fsdp"]
    result = CliRunner().invoke(main, [*args, "--dtype", "float16", "--max-steps", "1", "--batch-size", "4"])
    assert result.exit_code == 1, result.output
    assert "--dtype bfloat16" in result.output and "Traceback" not in result.output
    assert not os.path.exists(tmp_path / "o" / "mask.safetensors")
