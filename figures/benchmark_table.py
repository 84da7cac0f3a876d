"""The report's benchmark table (the paper's Table 1 layout): one column per lm-eval task metric, methods as rows.

Reads the protocol's index (`benchmarks`: per seed, per domain, each method's metrics on that domain's
lm-eval tasks; recipes.benchmarks). A column is `domain: task metric` in percent; with several seeds a
cell is the mean ± std over seeds. The best method per column is bold (lm-eval's higher_is_better),
and one sentence per column gives MFT's difference from FFT.
"""

from __future__ import annotations

import statistics

NOTE = (
    "Scored by lm-evaluation-harness on each domain's own tasks (the protocol config's `tasks`), every "
    "method's model with its mask applied in memory; the best per column is bold."
)


def _columns(demo: dict) -> list[tuple[str, str, str]]:
    """(domain, task, metric key) of every column, in config order."""
    first = next(iter(demo["benchmarks"].values()))
    cols = []
    for domain, entry in first.items():
        fft = entry["methods"].get("fft") or next(iter(entry["methods"].values()))
        for task, values in fft.items():
            cols += [(domain, task, key) for key in values]
    return cols


def _values(demo: dict, method: str, col) -> list[float]:
    domain, task, key = col
    found = []
    for seed in demo["benchmarks"].values():
        value = seed.get(domain, {}).get("methods", {}).get(method, {}).get(task, {}).get(key)
        if value is not None:
            found.append(100.0 * value)
    return found


def _higher(demo: dict, col) -> bool:
    domain, task, key = col
    first = next(iter(demo["benchmarks"].values()))
    return bool(first[domain].get("higher_is_better", {}).get(task, {}).get(key.split(",")[0], True))


def _cell(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}"


def table(demo: dict) -> list[list[str]]:
    """Rows of the benchmark table (header first); the best cell per column in **bold**."""
    cols = _columns(demo)
    methods = demo["methods"]
    header = ["Method"] + [f"{domain}: {task} {key.split(',')[0]}" for domain, task, key in cols]
    means = {m: [statistics.fmean(v) if (v := _values(demo, m, c)) else None for c in cols] for m in methods}
    rows = [header]
    for m in methods:
        cells = []
        for k, col in enumerate(cols):
            present = [means[x][k] for x in methods if means[x][k] is not None]
            best = (max if _higher(demo, col) else min)(present) if present else None
            cell = _cell(_values(demo, m, col))
            cells.append(f"**{cell}**" if means[m][k] is not None and means[m][k] == best else cell)
        rows.append([demo["method_names"][m]] + cells)
    return rows


def mft_vs_fft(demo: dict) -> list[str]:
    """One sentence per column: MFT minus FFT in points."""
    lines = []
    for col in _columns(demo):
        mft, fft = _values(demo, "mft", col), _values(demo, "fft", col)
        if mft and fft:
            diff = statistics.fmean(mft) - statistics.fmean(fft)
            domain, task, key = col
            lines.append(f"{domain}, {task} {key.split(',')[0]}: MFT - FFT = {diff:+.1f} points")
    return lines
