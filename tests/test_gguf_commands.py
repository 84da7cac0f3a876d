"""Every model-loading command on a tiny GGUF file, and folders whose config.json still says GGUF."""

import json
import os
import shutil

import pytest
import torch
from click.testing import CliRunner

from mftlab.cli.main import main
from mftlab.mask.maskfile import load_mask
from mftlab.models.presets import build_preset

gguf = pytest.importorskip("gguf")
from test_gguf import write_llama_gguf  # noqa: E402  (tests/ is on sys.path under pytest)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("gguf")
    model, tokenizer = build_preset("micro-llama")
    folder = root / "gg"
    folder.mkdir()
    write_llama_gguf(model, folder / "tiny.gguf")
    tokenizer.save_pretrained(folder)  # the tiny GGUF carries no tokenizer; real ones do
    for name, n in (("train.jsonl", 8), ("test.jsonl", 4)):
        with open(root / name, "w") as f:
            for i in range(n):
                f.write(json.dumps({"prompt": f"{i}+2=", "completion": str(i + 2)}) + "\n")
    return root, model


def _run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_every_model_loading_command_reads_gguf(setup, tmp_path):
    root, reference = setup
    model, gg = root / "gg", ["--gguf-file", "tiny.gguf"]
    data, test = root / "train.jsonl", root / "test.jsonl"
    mask = tmp_path / "l1.safetensors"
    _run("baseline", model, *gg, "--kind", "magnitude", "--out", mask)
    assert "fingerprints vs" in _run("inspect", mask, "--model", model, *gg)
    _run(
        "train",
        model,
        *gg,
        "--data",
        data,
        "--out",
        tmp_path / "run",
        "--max-steps",
        "2",
        "--batch-size",
        "2",
        "--max-seq-len",
        "16",
    )
    trained = tmp_path / "run" / "mask.safetensors"
    assert load_mask(trained).check_fits(dict(reference.named_parameters())) == []
    assert "loss" in _run("eval", model, *gg, "--mask", trained, "--data", test, "--no-generate")
    _run("stats", trained, "--model", model, *gg, "--out", tmp_path / "stats", "--no-figures")
    torch.save({n: load_mask(mask)[n].float() for n in load_mask(mask)}, tmp_path / "legacy.pt")
    _run("convert", tmp_path / "legacy.pt", "--model", model, *gg, "--out", tmp_path / "c.safetensors")
    _run(
        "landscape",
        "--model",
        model,
        *gg,
        "--data",
        data,
        "--eval-data",
        test,
        "--grid",
        "3",
        "--max-tokens",
        "16",
        "--max-seq-len",
        "16",
        "--out",
        tmp_path / "ls",
        "--no-figures",
    )
    _run(
        "sweep",
        "ratio",
        model,
        *gg,
        "--data",
        data,
        "--eval-data",
        test,
        "--ratios",
        "0.1",
        "--max-steps",
        "1",
        "--batch-size",
        "2",
        "--max-seq-len",
        "16",
        "--out",
        tmp_path / "sweep",
        "--no-figures",
    )

    # apply writes the GGUF model out as an ordinary safetensors folder that plain transformers loads.
    _run("apply", model, mask, *gg, "--out", tmp_path / "merged")
    from transformers import AutoModelForCausalLM

    config = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert "quantization_config" not in config
    assert any(f.endswith(".safetensors") for f in os.listdir(tmp_path / "merged"))
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    weights, keep = dict(merged.named_parameters()), load_mask(mask)
    for name, p in reference.named_parameters():
        expected = p * keep[name] if name in keep else p
        assert torch.equal(weights[name], expected), name

    # Without a mask, apply converts: the GGUF model as an ordinary folder, weights unchanged.
    assert "ordinary safetensors model folder" in _run("apply", model, *gg, "--out", tmp_path / "converted")
    converted = AutoModelForCausalLM.from_pretrained(tmp_path / "converted")
    assert not os.path.exists(tmp_path / "converted" / "mftlab_mask.json")
    assert all(torch.equal(p, dict(reference.named_parameters())[n]) for n, p in converted.named_parameters())


def test_folder_whose_config_still_says_gguf(setup, tmp_path):
    root, reference = setup
    _run(
        "apply",
        root / "gg",
        "--gguf-file",
        "tiny.gguf",
        "--out",
        tmp_path / "plain",
        str(_magnitude_mask(root, tmp_path)),
    )
    marked = tmp_path / "marked"
    shutil.copytree(tmp_path / "plain", marked)
    config = json.loads((marked / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "gguf"}  # as older transformers saved GGUF models
    (marked / "config.json").write_text(json.dumps(config))
    # Full fine-tuning saves the model with save_pretrained, which refused such models with a traceback.
    _run(
        "train",
        marked,
        "--method",
        "fft",
        "--data",
        root / "train.jsonl",
        "--out",
        tmp_path / "fft",
        "--max-steps",
        "1",
        "--batch-size",
        "2",
        "--max-seq-len",
        "16",
    )
    assert "quantization_config" not in json.loads((tmp_path / "fft" / "model" / "config.json").read_text())
    mask = tmp_path / "m.safetensors"
    _run("baseline", marked, "--kind", "random", "--out", mask)
    _run("apply", marked, mask, "--out", tmp_path / "again")  # shard by shard: config.json copied
    assert "quantization_config" not in json.loads((tmp_path / "again" / "config.json").read_text())


def _magnitude_mask(root, tmp_path):
    path = tmp_path / "mag.safetensors"
    _run("baseline", root / "gg", "--gguf-file", "tiny.gguf", "--kind", "magnitude", "--layers", "0", "--out", path)
    return path
