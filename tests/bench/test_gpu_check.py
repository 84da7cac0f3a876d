"""bench/gpu_check.py falls back cleanly to the CPU: results marked "cpu fallback", GPU rows pending;
every row of its table says whether its figure was measured or is a plan."""

import json
import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))

PENDING = "pending: no GPU was available"


def _tiny():
    """The 7B stage's size dict at a tiny shape (8 layers so that `mft_layers` 4-7 exist)."""
    import gpu_check_7b

    return dict(
        gpu_check_7b.SEVEN_B,
        hidden=64,
        inter=176,
        layers=8,
        heads=4,
        kv=4,
        vocab=300,
        batch=2,
        seq=32,
        steps=1,
        warmup=0,
        eval_tokens=64,
        landscape_batch=2,
        cmd_examples=4,
        cmd_batch=2,
        answer=8,
        fsdp_layers=2,
        fsdp_batch=4,
        grad_accum=4,
        fsdp_steps=2,
    )


def test_cpu_fallback_in_process(monkeypatch, tmp_path):
    import gpu_check

    monkeypatch.setattr(
        gpu_check, "CPU_SIZE", dict(gpu_check.CPU_SIZE, layers=1, steps=1, warmup=0, grid=1, seq=32, eval_tokens=32)
    )
    result = gpu_check.main(["--cpu", "--no-write", "--out", str(tmp_path / "r.json")])
    assert result["mode"] == "cpu fallback" and result["device"] == "cpu"
    assert result["masks_cpu_gpu"]["equal"] and result["masks_cpu_gpu"]["comparisons"] == 24
    assert result["mft_over_fft_step"] > 0 and result["point_over_eval"] > 0
    assert "plan" not in result  # the plan comparison needs a GPU's measured peak
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["mode"] == "cpu fallback"
    text = gpu_check.section(result)
    assert "GPU rows pending: no GPU was available" in text and "MFT step / FFT step" in text
    assert "| check | measured or plan | figure | baseline | ratio |" in text
    assert result["stage_7b"] == {"pending": PENDING}
    assert f"| 7B: MFT layers 4-7 step, peak memory vs plan | measured | {PENDING}" in text
    # every row, the new 7B command rows included, is marked; without a GPU those are pending like the others
    rows = saved["rows"]
    assert rows == result["rows"] and all(r["source"] in ("measured", "plan") for r in rows)
    pending = {r["check"] for r in rows if r["figure"] == PENDING}
    for check in (
        "7B shapes: FSDP FFT, 1 process, `--grad-accum 4`, 8 of 32 layers",
        "7B: `mftlab eval --device cuda` / plain eval pass",
        "7B: `mftlab baseline --kind wanda --device cuda` / plain eval pass",
        "7B: `mftlab baseline --kind snip --device cuda` / plain eval pass",
        "7B: `mftlab landscape --plane models --grid 2x2`, point / eval passes",
    ):
        assert check in pending and f"| {check} | measured | {PENDING} |" in text


def test_7b_stage_code_runs_on_a_tiny_shape_on_cpu():
    """The 7B stage's code end to end on a tiny shape (CPU): MFT with and without checkpointing,
    a models-plane point, the FSDP smoke, then the command rows on the saved folder with
    `--device cpu` (started in this process): FSDP FFT at --grad-accum 4, eval, wanda, snip and a
    2x2 models-plane landscape through model::wanda and model::snip; plans are computed, CUDA peaks are n/a."""
    import gpu_check
    import gpu_check_7b
    from gpu_check_7b_commands import in_process

    tiny = _tiny()
    r = gpu_check_7b.run_7b(tiny, "cpu", launch=in_process)
    assert r["mft"]["scores"] == r["mft_checkpointing"]["scores"] == 4 * (4 * 64 * 64 + 3 * 64 * 176)
    assert r["mft_checkpointing"]["plan"]["memory_bytes"] < r["mft"]["plan"]["memory_bytes"]
    assert r["models_plane"]["points"] == 5 and r["models_plane"]["point_over_eval"] > 0
    assert r["models_plane"]["plan"]["memory_bytes"] > 4 * r["model"]["params"] * 2  # 4 bf16 copies at least
    assert r["fsdp_smoke"]["status"] in ("ok", gpu_check_7b.PENDING_FSDP)

    c = r["commands"]
    assert c["device"] == "cpu" and c["tokens"] == 4 * 32
    assert c["label_tokens"] == 4 * (8 + 1)  # the answer and the end token
    fft = c["fft_fsdp"]
    assert fft["status"] == "ok", fft["status"]
    assert fft["steps"] == 2 and fft["step_s"] > 0 and fft["peak_mem_gib"] > 0
    assert len(fft["peak_mem_gib_by_rank"]) == 1 and fft["peak_reserved_gib"] is None  # reserved: CUDA only
    assert fft["plan"]["memory_bytes"] < fft["plan_all_layers"]["memory_bytes"] and not fft["too_big"]
    assert c["load"]["status"] == "ok"
    for key in ("eval", "wanda", "snip"):
        assert c[key]["status"] == "ok", c[key]["status"]
        assert c[key]["wall_s"] > 0 and c[key]["eval_pass_s"] > 0 and "net_over_eval" in c[key]
    # the command computes what the plain pass here computes: same folder, same tokens, same function
    assert c["eval"]["loss"] == pytest.approx(c["eval"]["loss_here"], rel=1e-4)
    ls = c["landscape"]
    assert ls["status"] == "ok", ls["status"]
    assert ls["points"] == 4 + 3 and ls["point_over_eval"] > 0 and ls["plan"]["memory_bytes"] > 0

    lines = gpu_check_7b.rows(r)
    assert all(line["check"].startswith(("7B: ", "7B shapes: ")) for line in lines)
    # as on a GPU: measured peaks (bytes, and the commands' GiB with the allocator's reserved figure)
    for key in ("mft", "mft_checkpointing", "models_plane"):
        r[key]["peak_bytes"] = r[key]["eval_peak_bytes"] = 2**30
    for key in ("fft_fsdp", "eval", "wanda", "snip", "landscape"):
        c[key]["peak_reserved_gib"] = 1.5
    cuda_text = "\n".join(gpu_check.markdown_table(gpu_check_7b.rows(r)))
    assert "(reserved 1.5)" in cuda_text and "1.0 GiB" in cuda_text and "plan / measured" in cuda_text
    assert {line["source"] for line in lines} == {"measured", "plan"}
    text = "\n".join(gpu_check.markdown_table(lines))
    assert "| 7B: `mftlab eval --device cpu` / plain eval pass | measured |" in text
    assert "| 7B shapes: FSDP FFT, 1 process, `--grad-accum 4`, 2 of 8 layers: `mftlab plan` | plan |" in text
    assert "pending" not in text and "FAILED" not in text


def test_gpu_mode_section_marks_plan_rows():
    """On a GPU the first part adds `mftlab plan` rows beside its measured peaks: marked "plan"."""
    import gpu_check

    step = {"step_s": 0.5, "peak_bytes": 8 * 2**30}
    r = {
        "mode": "gpu",
        "device": "NVIDIA H100 80GB HBM3",
        "machine": "m",
        "revision": "r",
        "seconds": 600.0,
        "model": dict(params=3e8, hidden=1024, layers=24, inter=2816, vocab=32000, dtype="bfloat16", batch=8, seq=512),
        "mft": step,
        "fft": dict(step, peak_bytes=10 * 2**30),
        "mft_over_fft_step": 1.0,
        "landscape": {"point_wall_s": 0.2, "eval_pass_s": 0.1},
        "point_over_eval": 2.0,
        "masks_cpu_gpu": {"device": "cuda", "equal": True, "comparisons": 24},
        "plan": {
            "mask": {"memory_bytes": 9 * 2**30, "step_s": 0.4},
            "fft": {"memory_bytes": 11 * 2**30, "step_s": None},
        },
        "plan_rel_error": {"mft": {"memory": 0.125, "step": -0.2}, "fft": {"memory": 0.1, "step": None}},
        "stage_7b": {"pending": "FAILED: RuntimeError: CUDA out of memory"},
    }
    rows = gpu_check.table_rows(r)
    plans = [x for x in rows if x["source"] == "plan" and x["check"].startswith("`mftlab plan`")]
    assert [x["check"] for x in plans] == [
        "`mftlab plan` mft memory (GiB)",
        "`mftlab plan` mft step",
        "`mftlab plan` fft memory (GiB)",
    ]
    text = gpu_check.section(r)
    assert "GPU: **NVIDIA H100 80GB HBM3**" in text and "| `mftlab plan` mft step | plan | 0.400 s estimated |" in text
    assert "| 7B: `mftlab eval --device cuda` / plain eval pass | measured | FAILED: RuntimeError" in text


def test_protocol_stage_rows_put_each_step_s_peak_beside_its_plan():
    import gpu_check_protocol as protocol

    pending = protocol.rows(None)
    assert [x["figure"] for x in pending] == ["pending: no GPU was available"] * 2
    r = {
        "dry_run": {"exit": 0, "seconds": 6.5, "steps": 14, "misfits": 0},
        "run": {
            "seconds": 90.0,
            "steps": [
                {"step": "math (seed 0): full fine-tuning", "peak_mem_gib": 12.0, "plan_gib": 10.0},
                {"step": "loss landscape (landscape-math)", "peak_mem_gib": 5.0, "plan_gib": None},
            ],
        },
    }
    rows = protocol.rows(r)
    assert rows[0]["source"] == "plan" and rows[0]["figure"] == "exit 0, 14 steps, every step fits"
    assert rows[1] == {
        "check": "protocol step: math (seed 0): full fine-tuning (GiB)",
        "source": "measured",
        "figure": "12.00 measured",
        "baseline": "10.00 plan",
        "ratio": "1.20x plan",
    }
    assert rows[2]["baseline"] == "no plan" and rows[2]["ratio"] == "n/a"
    failed = protocol.rows(dict(r, run={"pending": "timed out after 120 s"}))
    assert failed[-1]["figure"] == "timed out after 120 s"


def test_command_rows_render_failures_and_skips():
    """A failed stage, a failed row and a spent budget each show in their own rows; the others stand."""
    import gpu_check_7b_commands as commands

    rows = commands.rows({"pending": "FAILED: OSError: disk full"})
    assert len(rows) == len(commands.PENDING_ROWS) and all(r["figure"] == "FAILED: OSError: disk full" for r in rows)
    skipped = commands.run_command(commands.in_process, ["--version"], deadline=time.perf_counter() + 1)
    assert skipped.status.startswith("skipped:") and not skipped.ok
    assert commands._guarded(lambda: 1 / 0)["status"] == "FAILED: ZeroDivisionError: division by zero"


def test_subprocess_past_its_timeout_is_killed_with_its_group():
    """The GPU check's launcher stops a command at the deadline (and every process it started)."""
    import gpu_check_7b_commands as commands

    started = time.perf_counter()
    # `plan` imports torch and transformers: seconds, so it is always running at 0.2 s (`--version` can
    # finish within 50 ms on a quiet machine, and did once in CI)
    done = commands.in_subprocess(["plan", "llama2-7b"], timeout=0.2)
    assert done.status == "timed out after 0 s" and time.perf_counter() - started < 10


@pytest.mark.slow
def test_command_rows_in_subprocesses_on_cpu(tmp_path):
    """The command rows as the GPU check starts them (a fresh process each, torchrun for FSDP) on the CPU."""
    import gpu_check_7b
    import gpu_check_7b_commands as commands

    tiny = _tiny()
    model = gpu_check_7b.build(tiny, "cpu")
    prepared = commands.prepare(model, tiny, "cpu", str(tmp_path))
    commands.save_fft_model(prepared, tiny, "cpu")
    c = commands.run_commands(prepared, tiny, "cpu", "h100", commands.in_subprocess, time.perf_counter() + 900)
    for key in ("fft_fsdp", "load", "eval", "wanda", "snip", "landscape"):
        assert c[key]["status"] == "ok", (key, c[key]["status"])
    assert c["eval"]["loss"] == pytest.approx(c["eval"]["loss_here"], rel=1e-4)


@pytest.mark.slow
def test_gpu_check_script_cpu_fallback(tmp_path):
    """The shell wrapper end to end (whatever the machine: on CUDA this is the real check)."""
    proc = subprocess.run(
        ["bash", os.path.join(ROOT, "bench", "gpu_check.sh"), "--no-write", "--out", str(tmp_path / "r.json")],
        capture_output=True,
        text=True,
        timeout=960,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["masks_cpu_gpu"]["equal"]
    assert all(r["source"] in ("measured", "plan") for r in result["rows"])
    assert result["seconds"] < (780 if result["mode"] == "gpu" else 60)
