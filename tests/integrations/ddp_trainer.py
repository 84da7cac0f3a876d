"""torchrun --nproc_per_node 2 ddp_trainer.py DATA OUT: Trainer + MaskCallback under DDP on CPU (gloo).

Each process writes OUT/rank<r>.json with a digest of its keep-masks, so the test can check that
both processes hold the same masks after training.
"""

import hashlib
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from hf_setup import DEFAULTS, make_trainer  # noqa: E402

import mftlab  # noqa: E402
from mftlab.integrations import MaskCallback  # noqa: E402

data, out = sys.argv[1], sys.argv[2]
loaded = mftlab.load_model("micro-llama")
handle = mftlab.mask_model(loaded.model, **DEFAULTS, base_name="micro-llama")
trainer = make_trainer(loaded.model, loaded.tokenizer, data, out, MaskCallback(handle), batch_size=2)
trainer.train()
keep = handle.keep()
digest = hashlib.sha256(b"".join(keep[n].cpu().numpy().tobytes() for n in sorted(keep))).hexdigest()
world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
with open(os.path.join(out, f"rank{trainer.args.process_index}.json"), "w") as f:
    json.dump(
        {"digest": digest, "steps": handle.steps, "world": world, "kept": {n: int(k.sum()) for n, k in keep.items()}}, f
    )
if torch.distributed.is_initialized():
    # Close gloo before the interpreter exits: a process group torn down at exit can abort a rank
    # ("terminate called without an active exception") after all its work is done.
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
