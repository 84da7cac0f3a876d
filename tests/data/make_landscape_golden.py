"""Writes tests/data/landscape_golden.json: landscape values of the code before issue 10 part E.

The values were produced by mftlab at commit 4de7a78 (fp32 copies of theta0, u and v); the test
(tests/analysis/test_landscape_golden.py) checks that the memory-lean planes give the same numbers.
Run from the repository root with the old code first on the path, e.g.
    PYTHONPATH=<checkout of 4de7a78> .venv/bin/python tests/data/make_landscape_golden.py
"""

import copy
import json
import os
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "landscape_golden.json")
CASES = ("random", "random-ortho-1d", "models", "line")


def build(seed=0, dtype=torch.float32):
    from transformers import AutoModelForCausalLM

    from mftlab.models.presets import _llama_config

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(_llama_config(hidden=32, layers=2, heads=2, kv_heads=1))
    return model.to(dtype).eval()


def shifted(model, scale, seed):
    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_((torch.randn(p.shape, generator=g) * scale).to(p.dtype))
    return other


def data():
    from mftlab.analysis.landscape import prepare_data
    from mftlab.models.tokenizer import build_char_tokenizer
    from mftlab.training.data import load_examples

    tokenizer = build_char_tokenizer()
    out = []
    with tempfile.TemporaryDirectory() as folder:
        for name, offset in (("train", 0), ("test", 7)):
            path = os.path.join(folder, f"{name}.jsonl")
            with open(path, "w") as f:
                f.write(
                    "".join(
                        json.dumps({"prompt": f"{i}+{offset}=", "completion": str(i + offset)}) + "\n" for i in range(6)
                    )
                )
            examples, _ = load_examples(path, tokenizer, 64)
            out.append(prepare_data(examples, tokenizer.pad_token_id, batch_size=4))
    return out


def run(case: str, dtype: torch.dtype, out_dir: str) -> dict:
    """One demo-sized landscape; returns its arrays and markers as lists."""
    from mftlab.analysis.directions import DirectionSpec
    from mftlab.analysis.landscape import LandscapeConfig, loss_landscape

    train, test = data()
    a = build(0, dtype)
    if case.startswith("random"):
        ortho = case == "random-ortho-1d"
        spec = DirectionSpec(seed=3, orthogonalize=ortho, include_1d=ortho)
        config = LandscapeConfig("random", (3, 3), ((-0.5, 0.5), (-0.5, 0.5)), spec, cache_directions=False)
        models = [a, lambda: shifted(a, 0.02, 1)]
    elif case == "models":
        config = LandscapeConfig("models", (3, 3))
        models = [a, lambda: shifted(a, 0.02, 1), lambda: shifted(a, 0.03, 2)]
    else:
        config = LandscapeConfig("line", (5, 1))
        models = [a, lambda: shifted(a, 0.02, 1)]
    r = loss_landscape(models, train, test, config, out_dir)
    import numpy as np

    norm = np.load(os.path.join(out_dir, "landscape.npz"))["perturbation_norm"]
    return {
        "xs": r.xs.tolist(),
        "ys": r.ys.tolist(),
        "train_loss": r.train_loss.tolist(),
        "test_loss": r.test_loss.tolist(),
        "perturbation_norm": norm.tolist(),
        "markers": [{k: m[k] for k in ("x", "y", "train_loss", "test_loss", "perturbation_norm")} for m in r.markers],
    }


def main():
    golden = {}
    for dtype in (torch.float32, torch.bfloat16):
        for case in CASES:
            with tempfile.TemporaryDirectory() as out:
                golden[f"{case}/{str(dtype).replace('torch.', '')}"] = run(case, dtype, out)
    with open(GOLDEN, "w") as f:
        json.dump(golden, f, indent=0)


if __name__ == "__main__":
    main()
