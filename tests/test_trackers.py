"""`mftlab train --report-to`: the metrics rows reach TensorBoard (offline); bad or missing trackers are one line."""

import importlib.util
import json
import os

import pytest
from click.testing import CliRunner

from mftlab.cli.main import main
from mftlab.errors import ConfigError
from mftlab.training.trackers import parse_report_to


def _data(path, n=8):
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"prompt": f"{i}+1=", "completion": str(i + 1)}) + "\n")
    return str(path)


def _train(tmp_path, *extra):
    return CliRunner().invoke(
        main,
        [
            "train",
            "micro-llama",
            "--data",
            _data(tmp_path / "d.jsonl"),
            "--out",
            str(tmp_path / "run"),
            "--max-steps",
            "4",
            "--batch-size",
            "2",
            "--log-every",
            "2",
            "--max-seq-len",
            "16",
            *extra,
        ],
    )


def test_parse_report_to():
    assert parse_report_to(None) == () and parse_report_to("none") == ()
    assert parse_report_to("tensorboard, mlflow,tensorboard") == ("tensorboard", "mlflow")
    with pytest.raises(ConfigError, match=r"^report_to='comet' names unknown tracker 'comet'"):
        parse_report_to("comet")


def test_tensorboard_gets_the_metrics_rows(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = _train(tmp_path, "--report-to", "tensorboard")
    assert result.exit_code == 0, result.output
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    events = EventAccumulator(str(tmp_path / "run" / "logs"))
    events.Reload()
    for key in ("loss", "mask_ratio", "flips"):
        series = events.Scalars(key)
        assert [e.step for e in series] == [r["step"] for r in rows] == [2, 4]
        assert [e.value for e in series] == pytest.approx([r[key] for r in rows], rel=1e-6)


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_missing_or_unknown_tracker_is_one_line(tmp_path):
    result = _train(tmp_path, "--report-to", "wandb")
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: --report-to wandb needs the wandb package; install it with `pip install 'mftlab[wandb]'`"
    )
    assert not os.path.exists(tmp_path / "run" / "metrics.jsonl")
    result = _train(tmp_path, "--report-to", "tensorboard,comet")
    assert (
        result.exit_code == 1
        and "Error: --report-to 'tensorboard,comet' names unknown tracker 'comet'" in result.output
    )
