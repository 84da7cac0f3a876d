"""Time to save and verify an FSDP2 checkpoint of a few hundred MB (parameters + AdamW state).

    .venv/bin/torchrun --nproc_per_node 2 bench/bench_checkpoint_hash.py [--mb 300] [--repeats 3]

Run by torchrun (gloo on CPU). Prints, on process 0, the median seconds of
`save_sharded_checkpoint` (DCP write + manifest) and `latest_sharded_info` (manifest verification)
for whichever mftlab is imported; put an older checkout first on PYTHONPATH to time it the same way.
"""

import argparse
import os
import shutil
import statistics
import tempfile
import time

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard

import mftlab
from mftlab.training import sharded_checkpoint as sckpt


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, default=300, help="checkpoint size: parameters + 2 AdamW moments, fp32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to write (default: a temporary folder)")
    args = parser.parse_args()
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    width = 1024
    layers = max(1, round(args.mb * 2**20 / (3 * 4 * width * width)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torch.nn.Sequential(*[torch.nn.Linear(width, width, bias=False) for _ in range(layers)])
    for layer in model:
        fully_shard(layer)
    fully_shard(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    model(torch.ones(2, width)).square().mean().backward()
    optimizer.step()

    root = [args.dir or (tempfile.mkdtemp(prefix="ckpt-hash-") if rank == 0 else None)]
    dist.broadcast_object_list(root, src=0)
    saves, verifies, cpu = [], [], []  # cpu: (save, verify) CPU seconds of this process
    for step in range(1, args.repeats + 1):
        dist.barrier()
        start, cpu0 = time.perf_counter(), time.process_time()
        path = sckpt.save_sharded_checkpoint(root[0], step, model, optimizer, scheduler, info={}, keep=1)
        cpu1 = time.process_time()
        dist.barrier()
        saves.append(time.perf_counter() - start)
        start, cpu2 = time.perf_counter(), time.process_time()
        sckpt.latest_sharded_info(root[0])
        cpu.append((cpu1 - cpu0, time.process_time() - cpu2))
        dist.barrier()
        verifies.append(time.perf_counter() - start)
    mine = torch.tensor([statistics.median(c[0] for c in cpu), statistics.median(c[1] for c in cpu)])
    every = [torch.zeros(2) for _ in range(dist.get_world_size())]
    dist.all_gather(every, mine)
    if rank == 0:
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
        print(
            f"mftlab {os.path.dirname(mftlab.__file__)}: {dist.get_world_size()} processes, checkpoint "
            f"{size / 1e6:.0f} MB; save {statistics.median(saves):.2f} s, verify {statistics.median(verifies):.2f} s "
            f"(median of {args.repeats}; save {[round(s, 2) for s in saves]}, verify {[round(v, 2) for v in verifies]}); "
            f"CPU s per process (save, verify): {[tuple(round(float(x), 2) for x in e) for e in every]}"
        )
        if args.dir is None:
            shutil.rmtree(root[0])
    dist.barrier()  # no process closes the group while a peer's last collective is still in flight
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
