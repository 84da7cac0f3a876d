"""Run by torchrun (2 processes, gloo): sharded selection equals mftlab.mft.selection on the full tensors."""

import torch
import torch.distributed as dist

from mftlab.mft.selection import keep_threshold, select_keep
from mftlab.mft.sharded_selection import ShardedValues, gather_keep, row_counts, sharded_keep, sharded_threshold


def tensors(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    levels = torch.tensor([-0.02, -0.0, 0.0, 0.01, 0.02])
    heavy = levels[torch.randint(0, 5, (7, 9), generator=g)]  # heavy ties, with -0.0 and +0.0
    return {
        "a": torch.randn(6, 5, generator=g),
        "ties": heavy,
        "vec": levels[torch.randint(0, 5, (11,), generator=g)],
        "one_row": torch.randn(1, 16, generator=g),  # the last process holds no rows of it
        "b": torch.randn(5, 3, generator=g).round(decimals=1),
    }


def shard(full: dict[str, torch.Tensor], rank: int, world: int) -> dict[str, ShardedValues]:
    out = {}
    for n, t in full.items():
        rows = -(-t.shape[0] // world)  # FSDP2's chunking: ceil rows per process, the last may get fewer / none
        out[n] = ShardedValues(t[rank * rows : (rank + 1) * rows], tuple(t.shape))
    return out


def main():
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    checked = 0
    for seed in range(6):
        full = tensors(seed)
        values = shard(full, rank, world)
        rows = row_counts(values)
        for ratio in (0.1, 0.37, 0.5):
            for granularity in ("tensor", "global", "row"):
                got = gather_keep(sharded_keep(values, ratio, granularity), values, rows)
                want = select_keep(full, ratio, granularity)
                for n in full:
                    assert torch.equal(got[n], want[n]), (seed, ratio, granularity, n)
                    checked += 1
        for threshold in (-0.01, 0.015, 5.0):  # 5.0: every tensor falls back to its floor
            got = gather_keep(sharded_threshold(values, threshold, 0.3), values, rows)
            for n in full:
                assert torch.equal(got[n], keep_threshold(full[n], threshold, 0.3)), (seed, threshold, n)
                checked += 1
    print(f"rank {rank}: {checked} masks identical")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
