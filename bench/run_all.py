"""`make bench`: rerun every benchmark, one after another, and rewrite BENCHMARKS.md.

Each `bench/bench_*.py` runs in its own subprocess (never two at once) and rewrites its own section;
then the demo is timed (`mftlab demo --out <tmp>`), then `bench/gpu_check.sh` (its CPU fallback on a
machine without CUDA). Last, a `## Summary` section at the top collects one row per headline figure:
figure, the baseline measured in the same run, the ratio, the goal, the machine and the command.
Figures come from the scripts' own sections (parsed) and from bench/gpu_results.json.

    .venv/bin/python bench/run_all.py                 # everything (several minutes on 2 cores)
    .venv/bin/python bench/run_all.py --only summary  # rebuild the summary from the current sections
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from report import BENCHMARKS, HEADER, ROOT, machine, write_section  # noqa: E402

PY = sys.executable
ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
# Arguments that reproduce the command each section states (scripts not listed run with their defaults).
ARGS = {"bench_landscape.py": ["--grid", "7", "--tokens", "1024", "--batch-size", "16", "--threads", "1"]}
DEMO_TITLE = "Demo wall time"


def _command(script: str) -> str:
    return " ".join([".venv/bin/python", f"bench/{script}", *ARGS.get(script, [])])


def run_scripts(log) -> dict[str, float]:
    seconds = {}
    for path in sorted(glob.glob(os.path.join(HERE, "bench_*.py"))):
        script = os.path.basename(path)
        log(f"== {_command(script)}")
        started = time.perf_counter()
        proc = subprocess.run([PY, path, *ARGS.get(script, [])], cwd=ROOT, env=ENV)
        seconds[script] = time.perf_counter() - started
        log(f"   {script}: exit {proc.returncode} after {seconds[script]:.0f} s")
    return seconds


def run_demo(log) -> None:
    import importlib.util

    if importlib.util.find_spec("mftlab.cli.cmd_demo") is None:
        write_section(DEMO_TITLE, "Pending: `mftlab demo` does not exist yet.")
        return
    folder = tempfile.mkdtemp(prefix="mftlab-demo-")
    cmd = [os.path.join(os.path.dirname(PY), "mftlab"), "demo", "--out", folder]
    log(f"== mftlab demo --out {folder}")
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - started
    shutil.rmtree(folder, ignore_errors=True)
    status = "completed" if proc.returncode == 0 else f"FAILED (exit {proc.returncode}: {proc.stderr.strip()[-200:]})"
    write_section(
        DEMO_TITLE,
        f"Command: `mftlab demo --out <fresh folder>` (timed by `{_command('run_all.py')}`)  \n"
        f"Machine: {machine()}\n\n"
        f"Wall time of the full demo from a fresh folder: **{wall:.0f} s** ({status}). "
        "Goal: 3-5 minutes on 2 CPU cores, as its help text promises.",
    )
    with open(os.path.join(HERE, "demo_time.json"), "w") as f:
        json.dump({"seconds": wall, "exit": proc.returncode, "machine": machine()}, f)


def run_gpu_check(log) -> None:
    log("== bash bench/gpu_check.sh")
    subprocess.run(["bash", os.path.join(HERE, "gpu_check.sh")], cwd=ROOT, env=ENV)


# -- summary ------------------------------------------------------------------------------------
def sections(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in re.finditer(r"^## (.+?)\n(.*?)(?=^## |\Z)", text, re.S | re.M)}


def _search(pattern: str, text: str | None):
    m = re.search(pattern, text or "", re.S)
    return m.groups() if m else None


def summary_rows(text: str) -> list[list[str]]:
    s = sections(text)
    rows = []

    def row(figure, value, baseline, ratio, goal, command):
        rows.append([figure, value, baseline, ratio, goal, f"`{command}`"])

    def pending(figure, section, command):
        row(figure, f"see '{section}'" if section in s else "pending", "", "", "", command)

    mf = s.get("Mask file size and speed")
    bits = _search(r"\| 0\.1 \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", mf)
    if bits:
        row(
            "mask bits / weight, zstd, 10% masked i.i.d.",
            f"{bits[2]}",
            f"H(0.1) = {bits[0]}",
            f"{bits[3]}x",
            "close to 1x",
            _command("bench_maskfile.py"),
        )
    else:
        pending("mask bits / weight vs H(p)", "Mask file size and speed", _command("bench_maskfile.py"))
    speed = {c: _search(rf"\| {c} \| ([\d.]+) \| ([\d.]+) \| (\d+) \| (\d+) \|", mf) for c in ("packbits", "zstd")}
    if speed["packbits"] and speed["zstd"]:
        p, z = speed["packbits"], speed["zstd"]
        row(
            "mask load (validated), M weights/s, packbits",
            p[3],
            f"zstd {z[3]}",
            f"{int(p[3]) / max(int(z[3]), 1):.1f}x",
            "",
            _command("bench_maskfile.py"),
        )
        row(
            "mask save, M weights/s, packbits",
            p[2],
            f"zstd {z[2]}",
            f"{int(p[2]) / max(int(z[2]), 1):.0f}x",
            "",
            _command("bench_maskfile.py"),
        )
    else:
        pending("mask save / load speed", "Mask file size and speed", _command("bench_maskfile.py"))

    tr = s.get("Training step time (MFT vs FFT, estimator vs full sort)")
    step = _search(r"MFT step / FFT step = \*\*([\d.]+)x?\*\*.*?\(goal ([^)]*)\)", tr)
    row(
        "MFT step / FFT step (CPU)",
        *(("", "FFT step", f"{step[0]}x", step[1]) if step else ("pending", "", "", "")),
        _command("bench_train.py"),
    )
    ref = _search(r"reference step / MFT step = \*\*([\d.]+)x?\*\*.*?\(goal ([^)]*)\)", tr)
    row(
        "full-sort reference step / MFT estimator step",
        *(("", "MFT step", f"{ref[0]}x", ref[1]) if ref else ("pending", "", "", "")),
        _command("bench_train.py"),
    )

    cm = s.get("compare-masks (packed vs unpacked)")
    fast = _search(r"Packed is \*\*([\d.]+)x faster\*\* \(goal ([^)]*)\).*?\*\*([\d.]+)x\*\*", cm)
    times = _search(r"\| packed bytes[^|]*\| ([\d.]+) \|.*?\| baseline: unpack[^|]*\| ([\d.]+) \|", cm)
    if fast:
        row(
            "compare-masks packed, time",
            f"{times[0]} s" if times else "",
            f"unpacked {times[1]} s" if times else "unpacked",
            f"{fast[0]}x faster",
            fast[1],
            _command("bench_compare_masks.py"),
        )
        row(
            "compare-masks packed, peak RSS",
            "",
            "unpacked",
            f"{fast[2]}x",
            "<= 0.25x",
            _command("bench_compare_masks.py"),
        )
    else:
        pending(
            "compare-masks packed vs unpacked", "compare-masks (packed vs unpacked)", _command("bench_compare_masks.py")
        )

    ls = s.get("Loss landscape")
    # The row of the default at the benchmark's size (directions cached below 134M perturbed weights).
    point = _search(
        r"\| mftlab `--cache-directions` \(default[^|]*\| ([\d.]+) \| [\d.]* \| ([\d.]+) \| ([\d.]+) \|", ls
    )
    goal = _search(r"Goal: (at most [\d.]+)", ls)
    row(
        "landscape point / eval pass (CPU)",
        *(
            (f"{point[0]} s", f"eval {point[1]} s", f"{point[2]}x", goal[0] if goal else "")
            if point
            else ("pending", "", "", "")
        ),
        _command("bench_landscape.py"),
    )
    vs = _search(r"mftlab / loss-landscapes = [\d.]+ \(directions regenerated\), ([\d.]+) \(cached\)", ls)
    ll = _search(r"\| loss-landscapes ([\d.]+)[^|]*\| ([\d.]+) \|", ls)
    row(
        "landscape point vs `loss-landscapes` package",
        *(
            (f"{point[0]} s" if point else "", f"loss-landscapes {ll[1] if ll else '?'} s", f"{vs[0]}x", "")
            if vs
            else ("pending", "", "", "")
        ),
        _command("bench_landscape.py"),
    )

    pr = s.get("Pruning criteria (Wanda, SNIP) calibration")
    ratios = _search(r"Wanda / eval = \*\*([\d.]+)x\*\*.*?SNIP / eval = \*\*([\d.]+)x\*\*.*?\*\*([\d.]+)x\*\* with", pr)
    per_m = _search(
        r"\| plain eval pass[^|]*\| ([\d.]+) \| ([\d.]+) \|.*?\| Wanda[^|]*\| ([\d.]+) \| ([\d.]+) \|"
        r".*?\| SNIP \(`snip[^|]*\| ([\d.]+) \| ([\d.]+) \|",
        pr,
    )
    if ratios and per_m:
        row(
            "Wanda calibration / eval pass (CPU), s per M targeted weights",
            per_m[3],
            f"eval {per_m[1]}",
            f"{ratios[0]}x",
            "<= 1.2x",
            _command("bench_pruning.py"),
        )
        row(
            "SNIP calibration / eval pass (CPU), s per M targeted weights",
            per_m[5],
            f"eval {per_m[1]}",
            f"{ratios[1]}x ({ratios[2]}x upper-half targets)",
            "<= 2.5x",
            _command("bench_pruning.py"),
        )
    else:
        pending(
            "Wanda / SNIP calibration vs eval pass",
            "Pruning criteria (Wanda, SNIP) calibration",
            _command("bench_pruning.py"),
        )

    lm = s.get("Landscape memory")
    for plane, goal in (("random", "<= 1.2"), ("models", "<= 3.2")):
        after = _search(rf"\| after[^|]*\| {plane} \| [\d.]+ \| [\d.]+ \| ([\d.]+) \|", lm)
        before = _search(rf"\| before[^|]*\| {plane} \| [\d.]+ \| [\d.]+ \| ([\d.]+) \|", lm)
        row(
            f"landscape peak memory on top of eval, {plane} plane (x model bytes)",
            after[0] if after else "pending",
            f"before: {before[0]}" if before else "",
            "",
            goal,
            _command("bench_landscape_memory.py"),
        )
    ratios = [float(r) for r in re.findall(r"\| ([\d.]+) \| (?:yes|NO) \|", s.get("Scale rehearsal (CPU)") or "")]
    row(
        "`mftlab plan` vs measured peak, 7B-shaped CPU rehearsal",
        f"{len(ratios)} cases" if ratios else "pending",
        "measured",
        f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "",
        "each within 20%",
        _command("bench_scale.py"),
    )

    rehearsal = s.get("Protocol rehearsal (2 CPU processes)")
    walls = _search(
        r"\| 1 process \(no runtime section\) \| ([\d.]+) s .*?\| 2 processes [^|]*\| ([\d.]+) s \(([\d.]+)x\)",
        rehearsal,
    )
    diff = _search(r"exact match (identical|DIFFERENT) .*?loss ([\d.e+-]+) ", rehearsal)
    if walls and diff:
        row(
            "`mftlab protocol`, 2 CPU processes vs 1: tables (exact match; largest loss difference)",
            f"exact match {diff[0]}; {diff[1]} relative",
            "1 process",
            "",
            "identical; <= 1e-6",
            _command("bench_protocol_rehearsal.py"),
        )
    else:
        pending(
            "`mftlab protocol` on 2 CPU processes vs 1",
            "Protocol rehearsal (2 CPU processes)",
            _command("bench_protocol_rehearsal.py"),
        )
    demo = os.path.join(HERE, "demo_time.json")
    if os.path.exists(demo):
        d = json.load(open(demo))
        ok = "" if d["exit"] == 0 else " (failed)"
        row("demo wall time", f"{d['seconds']:.0f} s{ok}", "", "", "3-5 min on 2 cores", "mftlab demo --out DIR")
    else:
        row("demo wall time", "pending", "", "", "3-5 min on 2 cores", "mftlab demo --out DIR")

    gpu = os.path.join(HERE, "gpu_results.json")
    if os.path.exists(gpu):
        g = json.load(open(gpu))
        if g["mode"] == "gpu":
            row(
                f"MFT step / FFT step ({g['device']}, bf16, {g['model']['params'] / 1e6:.0f}M)",
                f"{g['mft']['step_s']:.3f} s",
                f"FFT {g['fft']['step_s']:.3f} s",
                f"{g['mft_over_fft_step']:.2f}x",
                "",
                "bash bench/gpu_check.sh",
            )
            row(
                f"landscape point / eval pass ({g['device']})",
                f"{g['landscape']['point_wall_s']:.3f} s",
                f"eval {g['landscape']['eval_pass_s']:.3f} s",
                f"{g['point_over_eval']:.2f}x",
                "",
                "bash bench/gpu_check.sh",
            )
            row(
                f"masks CPU = GPU ({g['device']})",
                "identical" if g["masks_cpu_gpu"]["equal"] else "DIFFERENT",
                "",
                "",
                "identical",
                "bash bench/gpu_check.sh",
            )
        else:
            row("GPU check (H100 / H200)", "pending: no GPU was available", "", "", "", "bash bench/gpu_check.sh")
    return rows


def write_summary(seconds: dict | None = None) -> None:
    text = open(BENCHMARKS).read() if os.path.exists(BENCHMARKS) else HEADER
    rows = summary_rows(text)
    table = ["| figure | value | baseline (same run) | ratio | goal | command |", "|---|---|---|---|---|---|"]
    table += ["| " + " | ".join(r) + " |" for r in rows]
    body = [
        f"Regenerated by `make bench` (`.venv/bin/python bench/run_all.py`). Machine: {machine()}.",
        "Each row is taken from the section below that produced it (same run, same machine); a baseline is "
        "always measured in that same run.",
        "",
        *table,
    ]
    if seconds:
        body += [
            "",
            "Run time of `make bench`: "
            + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
            + f"; total {sum(seconds.values()) / 60:.1f} min.",
        ]
    section = "## Summary\n\n" + "\n".join(body).strip() + "\n\n"
    # The summary goes first: right after the header, before every other section.
    text = re.sub(r"^## Summary\n.*?(?=^## |\Z)", "", text, flags=re.S | re.M)
    first = re.search(r"^## ", text, re.M)
    text = text[: first.start()] + section + text[first.start() :] if first else text.rstrip() + "\n\n" + section
    tmp = BENCHMARKS + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, BENCHMARKS)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        choices=["scripts", "demo", "gpu", "summary"],
        action="append",
        help="Run only these parts (repeatable); default: all of them.",
    )
    args = parser.parse_args(argv)
    parts = args.only or ["scripts", "demo", "gpu", "summary"]

    def log(message):
        print(message, flush=True)

    seconds = {}
    if "scripts" in parts:
        seconds.update(run_scripts(log))
    for part, func in (("demo", run_demo), ("gpu", run_gpu_check)):
        if part in parts:
            started = time.perf_counter()
            func(log)
            seconds[part] = time.perf_counter() - started
    if "summary" in parts:
        write_summary(seconds if len(parts) == 4 else None)
    log(f"BENCHMARKS.md rewritten ({sum(seconds.values()) / 60:.1f} min)")


if __name__ == "__main__":
    main()
