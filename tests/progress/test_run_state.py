"""The run's ETA and progress.json, and progress lines, on hand-made step records (no training)."""

import json

import pytest

from mftlab.cli.progress_lines import Display, ProgressLine
from mftlab.progress.events import StepNote, StepProgress, clock
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


def test_the_display_draws_each_tasks_events_and_launched_lines_with_their_prefix(monkeypatch, capsys):
    monkeypatch.setenv("MFTLAB_PROGRESS_SECONDS", "0")
    display = Display(indent="  ")
    for done in (1, 2):
        display(StepProgress("fft", "step", done, 2, {"loss": 0.5}))
    display(StepNote("", "scoring fft: math test: example 3/3 (100%)"))
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("  fft: step 1/2 (50%), loss 0.5, ") and err[1].startswith("  fft: step 2/2 (100%)")
    assert err[2] == "  scoring fft: math test: example 3/3 (100%)" and "fft" not in display.lines  # closed
    monkeypatch.setenv("MFTLAB_PROGRESS", "plain")  # a launched step: every line carries the prefix
    Display()(StepProgress("fft", "step", 1, 2))
    assert capsys.readouterr().err.startswith("progress: fft: step 1/2 (50%)")
    monkeypatch.setenv("MFTLAB_PROGRESS", "off")
    Display()(StepProgress("fft", "step", 1, 2, force=True))
    assert capsys.readouterr().err == ""
