"""The protocol's config file: validated, unknown keys refused by name, missing files named, README example parses."""

import re
from pathlib import Path

import pytest
import yaml

from mftlab.errors import ConfigError
from mftlab.recipes.protocol_config import config_from_dict, config_to_dict, load_protocol_config

README = Path(__file__).resolve().parents[2] / "README.md"


def _files(tmp_path, domains=("math", "code")):
    for d in domains:
        (tmp_path / "data" / d).mkdir(parents=True, exist_ok=True)
        for split in ("train", "validation", "test"):
            (tmp_path / "data" / d / f"{split}.jsonl").write_text('{"prompt": "1+1=", "completion": "2"}\n')
    return {d: {s: f"data/{d}/{s}.jsonl" for s in ("train", "validation", "test")} for d in domains}


def _values(tmp_path, **extra):
    return {"backbone": "tiny-llama", "domains": _files(tmp_path), "layers": "2-3", **extra}


def test_a_minimal_config_resolves_paths_and_round_trips(tmp_path):
    config = config_from_dict(_values(tmp_path, mft_score_lrs=["1e-3"]), str(tmp_path))
    assert config.domains["math"].train == str(tmp_path / "data" / "math" / "train.jsonl")
    assert config.mft_score_lrs == (1e-3,) and config.training.fft_epochs == 12.0
    path = tmp_path / "protocol.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(config, relative_to=str(tmp_path))))
    assert load_protocol_config(str(path)) == config


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"mask_ratios": 0.1}, "unknown key 'mask_ratios' in the protocol config; known keys: backbone"),
        ({"training": {"fft_epoch": 3}}, "unknown key 'training.fft_epoch'"),
        ({"landscape": {"grid": [1, 5]}}, r"landscape.grid=\[1, 5\] must be two sizes"),
        ({"methods": ["fft", "lora"]}, "methods must include 'mft'"),
        ({"methods": ["fft", "mft", "dora"]}, "methods: 'dora' is unknown"),
        ({"mask_ratio": 1.5}, "mask_ratio"),
        ({"seeds": 0}, r"seeds=0 is outside 1..20"),
        ({"mft_inits": ["gaussian"]}, r"mft_inits=\['gaussian'\] must name"),
        ({"pretrain": {"data": "nope.jsonl"}}, "pretrain.data file '.*nope.jsonl' does not exist; fix the path"),
        ({"evaluation": {"include_path": "no-tasks"}}, "evaluation.include_path '.*no-tasks' is not a folder"),
        ({"evaluation": {"batch_sizes": 8}}, "unknown key 'evaluation.batch_sizes'"),
    ],
)
def test_bad_values_are_named_with_the_fix(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(_values(tmp_path, **extra), str(tmp_path))


def test_missing_keys_and_files_are_named(tmp_path):
    values = _values(tmp_path)
    del values["layers"]
    with pytest.raises(ConfigError, match="key 'layers' is missing"):
        config_from_dict(values, str(tmp_path))
    values = _values(tmp_path)
    values["domains"]["code"]["test"] = "data/code/tests.jsonl"
    with pytest.raises(ConfigError, match="domains.code.test file '.*tests.jsonl' does not exist"):
        config_from_dict(values, str(tmp_path))
    with pytest.raises(ConfigError, match="domains.math.validation is missing"):
        config_from_dict(
            _values(tmp_path, domains={"math": {"train": "data/math/train.jsonl", "test": "data/math/test.jsonl"}}),
            str(tmp_path),
        )


def test_the_readme_example_config_parses(tmp_path):
    text = README.read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(# protocol\.yaml.*?)```", text, re.S)
    assert block, "README has no protocol.yaml example"
    values = yaml.safe_load(block.group(1))
    (tmp_path / values["backbone"]).mkdir()
    for files in values["domains"].values():
        for path in (files[split] for split in ("train", "validation", "test")):
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / path).write_text("")
    config = config_from_dict(values, str(tmp_path))
    assert list(config.domains) == list(values["domains"])
    assert config.domains["math"].tasks == ("gsm8k",) and config.evaluation.batch_size == 16
