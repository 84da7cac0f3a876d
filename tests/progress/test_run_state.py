"""The run's ETA and progress.json, and progress lines, on hand-made step records (no training)."""

import json

import pytest

from mftlab.progress.lines import ProgressLine, clock
from mftlab.progress.run_state import PlannedStep, RunState


def _plan():
    return [
        PlannedStep("fft", "train", 100.0),
        PlannedStep("baselines", "mask", None),
        PlannedStep("mft", "train", 50.0),
        PlannedStep("eval", "score", 10.0),
    ]


def test_eta_starts_from_the_plan_and_learns_each_kinds_speed(tmp_path):
    state = RunState(str(tmp_path), "protocol", total=4, plan=_plan())
    assert state.begin(1, "FFT") == pytest.approx(160.0)  # the plan's own times before anything ran
    state.measured("train", "fft", 200.0)  # training runs at half the planned speed
    assert state.begin(2, "masks") == pytest.approx(50 * 2 + 10 * 2)  # scoring has not run: any kind's ratio
    state.measured("train", "mft", 100.0)
    assert state.begin(3, "scoring") == pytest.approx(10 * 2)
    state.measured("score", "eval", 5.0)
    state.finish()
    saved = json.loads((tmp_path / "progress.json").read_text())
    assert saved["state"] == "done" and saved["eta_seconds"] == 0.0 and saved["current"] is None
    assert [f["message"] for f in saved["finished"]] == ["FFT", "masks", "scoring"]


def test_without_a_plan_the_eta_is_the_mean_time_per_step(tmp_path):
    state = RunState(str(tmp_path), "demo", total=5)
    assert state.begin(1, "a") is None
    state.started -= 30  # as if the first step took 30 s
    state.headers[0]["started"] -= 30
    assert state.begin(2, "b") == pytest.approx(30 * 4, rel=0.05)


def test_a_failed_run_records_where_it_stopped(tmp_path):
    state = RunState(str(tmp_path), "protocol", total=3)
    state.begin(1, "first")
    state.begin(2, "second")
    state.running("seed-0/math/fft")
    state.fail("step 'second' failed (exit 1)")
    saved = json.loads((tmp_path / "progress.json").read_text())
    assert saved["state"] == "failed" and saved["failed_step"] == "second" and saved["folder"] == "seed-0/math/fft"
    assert [f["message"] for f in saved["finished"]] == ["first"] and saved["error"].startswith("step 'second'")


def test_plain_lines_are_throttled_and_carry_an_eta(monkeypatch, capsys):
    monkeypatch.setenv("MFTLAB_PROGRESS_SECONDS", "3600")
    line = ProgressLine("fft", 10, "step")
    for step in range(1, 10):
        line.update(step, loss=1.0)
    line.update(10, force=True, eval_loss=0.5)  # an evaluation: always shown
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("\n") == 1  # stderr only; one forced line within the interval
    assert out.err.startswith("fft: step 10/10 (100%), eval_loss 0.5, 0:00 elapsed, ETA 0:00")
    monkeypatch.setenv("MFTLAB_PROGRESS_SECONDS", "0")
    every = ProgressLine("score", 4, "example")
    for done in range(1, 5):
        every.update(done)
    assert capsys.readouterr().err.count("ETA") == 4
    assert (clock(3725), clock(65), clock(None)) == ("1:02:05", "1:05", "?")
