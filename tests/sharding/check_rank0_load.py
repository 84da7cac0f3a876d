"""Run by torchrun (2 processes, gloo) with a model folder: rank 0 alone reads it, rank 1 builds the model
on the meta device; after sharding and the broadcast every tensor (tied ones, buffers, MFT scores) equals
the folder's, bit for bit and in its own dtype, on both processes."""

import sys

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from mftlab.models.loading import load_model
from mftlab.training import sharding
from mftlab.training.config import TrainConfig
from mftlab.training.model_setup import prepare_model


def main(folder: str, method: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    config = TrainConfig(model=folder, data="unused.jsonl", out="unused", method=method, dtype="bfloat16", layers="1")
    model, tokenizer, layers = prepare_model(config, None, rank0_loads=True)
    assert all(p.is_meta for p in model.parameters()) == (rank > 0)
    assert tokenizer is not None
    model = sharding.shard_loaded(model, torch.device("cpu"), False, None, rank0_loads=True)
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    reference, _, _ = prepare_model(config, load_model(folder, "bfloat16"))  # the same set-up, read by this process
    expected = reference.state_dict()
    assert set(full) == set(expected), set(full) ^ set(expected)
    for name, tensor in expected.items():
        got = full[name]
        if tensor.is_floating_point() and tensor.dtype != got.dtype:  # trainable bf16 -> fp32 master
            assert got.dtype == torch.float32 and name.endswith(("mask_scores", "weight", "bias")), name
            got = got.to(tensor.dtype)
        assert torch.equal(got, tensor), name
    buffers = dict(reference.named_buffers())
    for name, buf in model.named_buffers():
        if not name.endswith(".keep"):
            assert buf.dtype == buffers[name].dtype and torch.equal(buf, buffers[name]), name
    print(f"rank {rank}: {len(expected)} tensors and {len(buffers)} buffers identical")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
