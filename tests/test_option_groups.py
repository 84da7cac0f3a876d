"""Configs made of option groups (TrainConfig.selection) and the one check of choices and ranges."""

import dataclasses
import pathlib
import re

import pytest

from mftlab.errors import ConfigError
from mftlab.mft.masking import SelectionConfig
from mftlab.options_meta import KEY, check_options, option_names
from mftlab.plan.planner import PlanConfig
from mftlab.training.config import TrainConfig

ROOT = pathlib.Path(__file__).resolve().parents[1]
REQUIRED = {"model": "tiny-llama", "data": "train.jsonl", "out": "run"}

# config.json's keys, in order, before the selection group existed (users' files and scripts read them)
CONFIG_JSON_KEYS_START = ["model", "data", "out", "method", "dtype", "device", "gguf_file", "trust_remote_code"]
SELECTION_KEYS = ["mask_ratio", "selection", "granularity", "threshold", "min_keep_ratio", "rank_by"]


def test_flat_keywords_and_the_group_object_build_the_same_config():
    flat = TrainConfig(**REQUIRED, mask_ratio=0.2, selection="threshold", rank_by="abs")
    grouped = TrainConfig(**REQUIRED, selection=SelectionConfig(mask_ratio=0.2, selection="threshold", rank_by="abs"))
    assert flat == grouped
    assert flat.selection == SelectionConfig(mask_ratio=0.2, selection="threshold", rank_by="abs")
    assert flat.mask_ratio == 0.2 and flat.selection_config() is flat.selection  # flat reads for scripts
    # flat keywords change a group given whole
    changed = TrainConfig(**REQUIRED, selection=SelectionConfig(granularity="row"), mask_ratio=0.3)
    assert (changed.selection.granularity, changed.selection.mask_ratio) == ("row", 0.3)


def test_files_stay_flat_and_round_trip():
    config = TrainConfig(**REQUIRED, mask_ratio=0.05, granularity="global", lr=1e-4)
    values = config.to_dict()
    keys = list(values)
    assert keys[: len(CONFIG_JSON_KEYS_START)] == CONFIG_JSON_KEYS_START
    start = keys.index("exclude") + 1
    assert keys[start : start + len(SELECTION_KEYS)] == SELECTION_KEYS and keys[-1] == "mftlab_version"
    assert not any(isinstance(v, dict) for v in values.values())
    assert TrainConfig.from_dict(values) == config
    assert keys == option_names(TrainConfig)


def test_copies_keep_the_other_options_of_the_group():
    config = TrainConfig(**REQUIRED, mask_ratio=0.05, granularity="row")
    assert dataclasses.replace(config, lr=1e-3).selection == config.selection
    switched = config.replace(selection="threshold")
    assert (switched.selection.selection, switched.selection.mask_ratio, switched.selection.granularity) == (
        "threshold",
        0.05,
        "row",
    )


def test_unknown_keys_and_missing_ones_are_named():
    with pytest.raises(TypeError, match="unexpected keyword argument 'mask_rate'"):
        TrainConfig(**REQUIRED, mask_rate=0.1)
    with pytest.raises(ConfigError, match="unknown config key 'mask_rate'"):
        TrainConfig.from_dict({**REQUIRED, "mask_rate": 0.1})
    with pytest.raises(ConfigError, match="incomplete config .*'out'"):
        TrainConfig.from_dict({"model": "m", "data": "d"})


def _choice_fields(cls):
    return [f for f in dataclasses.fields(cls) if KEY in f.metadata and f.metadata[KEY].choices]


@pytest.mark.parametrize(
    "cls, required, flag_words",
    [(TrainConfig, REQUIRED, False), (SelectionConfig, {}, False), (PlanConfig, {"model": "tiny-llama"}, True)],
    ids=lambda x: getattr(x, "__name__", ""),
)
def test_every_declared_choice_is_checked_with_one_message(cls, required, flag_words):
    fields = _choice_fields(cls)
    assert fields, cls
    for f in fields:
        with pytest.raises(ConfigError) as caught:
            cls(**required, **{f.name: "no-such-value"})
        allowed = ", ".join(f.metadata[KEY].choices)
        flag = (f.metadata[KEY].flag or "--" + f.name.replace("_", "-")).partition("/")[0]
        cli = f"{flag} 'no-such-value' is unknown; choose one of {allowed}"
        assert caught.value.cli_message() == cli
        # from Python the argument's name, unless the config speaks in flags throughout (PlanConfig)
        assert str(caught.value) == (
            cli if flag_words else f"{f.name}='no-such-value' is unknown; choose one of {allowed}"
        )


def test_ranges_declared_in_metadata_are_checked():
    for name, value, problem in [
        ("batch_size", 0, "must be a whole number of at least 1"),
        ("max_steps", 0, "must be a whole number of at least 1"),
        ("save_every", -1, "must be a whole number of at least 0 (0 = never)"),
        ("warmup_ratio", 1.0, "is outside [0, 1); use e.g. 0.03"),
        ("lr", 0.0, "must be positive (e.g. 2e-5)"),
        ("min_keep_ratio", 0.0, "is outside (0, 1]; use e.g. 0.01"),
    ]:
        with pytest.raises(ConfigError, match="^" + re.escape(f"{name}={value} {problem}")):
            TrainConfig(**REQUIRED, **{name: value})
    check_options(TrainConfig(**REQUIRED, max_steps=None))  # an optional count may be absent


def test_the_unknown_value_message_is_written_once():
    copies = [
        str(p.relative_to(ROOT))
        for room in ("mftlab", "analysis", "figures", "cli", "recipes")
        for p in (ROOT / room).rglob("*.py")
        if "is unknown; choose one of" in p.read_text(encoding="utf-8")
    ]
    assert copies == ["mftlab/options_meta.py"]
