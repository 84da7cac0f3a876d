"""bench/bench_scale.py: its configs are valid, the plan of every case is computed, and the table
reports ratios against the 20% goal and checks the accumulation and load claims."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))


def test_every_case_has_a_plan_and_a_valid_train_config(tmp_path):
    import bench_scale

    from mftlab.training.config import TrainConfig

    for kind in bench_scale.CASES:
        assert bench_scale.estimate(kind) > 0.5 * 2**30  # 667M bf16 parameters (a rank-1 load: its half)
        if kind not in ("eval-16", "random", "models"):
            config = bench_scale.train_config(kind, str(tmp_path))
            assert isinstance(config, TrainConfig)
            # two steps: the peak is read at the second, once AdamW's states exist beside the backward
            assert config.max_steps == 2 and config.method == ("mask" if kind.startswith("mft") else "fft")
    rows = {
        "baseline": {"peak": 2**30},
        "mft": {"peak": 2**30 + 5 * 2**30, "plan": 5.5 * 2**30},
        "fft": {"peak": 2**30 + 4 * 2**30, "plan": 5.5 * 2**30},
        "fft-fsdp": {"pending": "pending: --sharding fsdp not available", "plan": 4 * 2**30},
        "random": {"error": "boom", "plan": 3 * 2**30},
        "models": {"peak": 7 * 2**30, "plan": 6 * 2**30},
    }
    table = bench_scale.table(rows)
    assert "| 5.50 | 5.00 | 0.91 | yes |" in table and "| 5.50 | 4.00 | 0.73 | NO |" in table
    assert "pending: --sharding fsdp not available" in table and "failed: boom" in table


def test_the_accumulation_and_load_claims_are_checked_beside_the_table():
    import bench_scale

    gib = 2**30
    rows = {
        "baseline": {"peak": gib},
        "fft-fsdp": {"peak": 5 * gib},
        "fft-fsdp-accum4": {"peak": 5.2 * gib},
        "mft-fsdp-load": {"peak": 3 * gib, "peak_rank1": 2 * gib},
    }
    text = bench_scale.checks(rows)
    assert "peak per process: 1.050 (goal <= 1.10: yes)" in text
    model = bench_scale._plan("mft-fsdp-load").model["params"] * 2
    assert f"{gib / model:.2f} x the model's bytes" in text and "(goal >= 0.30: yes)" in text
    rows["fft-fsdp-accum4"]["peak"] = 6 * gib
    assert "(goal <= 1.10: NO)" in bench_scale.checks(rows)
