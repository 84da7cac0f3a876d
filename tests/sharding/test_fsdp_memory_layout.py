"""What FSDP2 holds, as `mftlab.training.sharding.shard_model` sets it up, behind the planner's fsdp terms.

1 process, gloo.
"""

import torch
import torch.distributed as dist

from mftlab.models.presets import build_preset
from mftlab.plan.planner import PlanConfig, make_plan
from mftlab.training import sharding


def _unsharded(module) -> bool:
    """Gathered, or its all-gather output held (a prefetched unit is unsharded when it is used)."""
    group = module._get_fsdp_state()._fsdp_param_group
    return group.is_unsharded or group._all_gather_result is not None


def test_backward_prefetches_the_next_layer_and_the_root_is_regathered_for_backward():
    """The 'gathered layers (fsdp)' (2 layers) and 'gathered root unit (fsdp)' terms, on CPU/gloo."""
    model, _ = build_preset("tiny-llama")
    started = sharding.ensure_process_group(torch.device("cpu"))
    try:
        sharding.shard_model(model, torch.device("cpu"), pure_bf16=True)
        layers = sharding.decoder_layers(model)
        seen = {}

        def forward_hook(i):
            def hook(module, args):
                seen[f"forward {i}"] = [_unsharded(x) for x in layers] + [_unsharded(model)]

            return hook

        def backward_hook(i):
            def hook(module, grad_output):
                seen[f"backward {i}"] = [_unsharded(x) for x in layers] + [_unsharded(model)]

            return hook

        for i, layer in enumerate(layers):
            layer.register_forward_pre_hook(forward_hook(i))
            layer.mlp.register_full_backward_pre_hook(backward_hook(i))  # inside the layer's backward
        ids = torch.randint(0, model.config.vocab_size, (1, 8))
        logits = model(input_ids=ids).logits
        root_after_forward = _unsharded(model)
        logits.float().square().mean().backward()
        last = len(layers) - 1
        # Forward: the root stays gathered through the forward; one layer at a time on a CPU (no streams).
        for i in range(len(layers)):
            assert seen[f"forward {i}"][-1] and seen[f"forward {i}"][i] and sum(seen[f"forward {i}"][:-1]) == 1
        # The trainer passes reshard_after_forward=True to the root too: resharded after the forward ...
        assert not root_after_forward
        # ... and gathered again for the whole backward, with the layer in backward and the next one prefetched.
        assert seen[f"backward {last}"][-1] and seen[f"backward {last}"][last] and seen[f"backward {last}"][last - 1]
        assert sum(seen[f"backward {last}"][:-1]) == 2
        assert not any(_unsharded(x) for x in layers) and not _unsharded(model)  # all resharded after backward
    finally:
        if started:
            dist.destroy_process_group()


def test_plan_shows_the_host_load_of_rank_0_and_the_others_uncounted():
    result = make_plan(
        PlanConfig("llama2-7b", method="fft", dtype="bfloat16", sharding="fsdp", gpus=8, batch_size=8, seq_len=512)
    )
    load = next(t for t in result.memory if t.name == "host RAM at load, rank 0 (fsdp)")
    others = next(t for t in result.memory if t.name == "host RAM at load, ranks > 0 (fsdp)")
    shape_params = next(t for t in result.memory if t.name == "weights").value * 8 / 4  # fp32 shards over 8
    assert load.value == shape_params * 2 and not load.counted  # rank 0 alone reads the checkpoint
    assert others.value == 32000 * 4096 * 2 and not others.counted  # the largest tensor in flight
    assert result.memory_per_gpu == sum(t.value for t in result.memory if t.counted)
    assert "prefetched" in next(t for t in result.memory if t.name == "gathered layers (fsdp)").formula
