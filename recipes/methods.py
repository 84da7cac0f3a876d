"""The protocol's methods: their ids, the labels tables and figures show, and their roles.

Everything a figure or the report needs to know about a method is written into the results
(`method_names`, `method_short`, `curve_names`, `curve_from`, `reference_lines`, `roles`) by
`describe_methods`, so figures read labels from the results and never from constants of their own.
"""

from __future__ import annotations

METHODS = ("backbone", "fft", "continued_fft", "mft", "random", "magnitude", "wanda", "snip", "lora")
REQUIRED = ("fft", "mft")  # every other method starts from FFT's best checkpoint or is compared with MFT

NAMES = {
    "backbone": "Backbone (lower bound)",
    "fft": "FFT best (upper bound)",
    "continued_fft": "Continued FFT",
    "mft": "MFT",
    "random": "Random mask",
    "magnitude": "Magnitude (L1) mask",
    "lora": "LoRA",
    "wanda": "Wanda mask",
    "snip": "SNIP mask",
}
SHORT = {
    "backbone": "backbone",
    "fft": "FFT",
    "continued_fft": "continued FFT",
    "mft": "MFT",
    "random": "random",
    "magnitude": "magnitude",
    "wanda": "Wanda",
    "snip": "SNIP",
    "lora": "LoRA",
}
CURVES = {
    "fft": "FFT (from the backbone)",
    "continued_fft": "Continued FFT (from FFT best)",
    "mft": "MFT, chosen on validation (from FFT best)",
    "lora": "LoRA (from the backbone)",
}
FROM_UPPER_BOUND = ("continued_fft", "mft")  # runs that start at FFT's best checkpoint
REFERENCE_LINES = ("backbone", "random", "magnitude")  # drawn as horizontal lines beside the curves
ROLES = {"method": "mft", "upper_bound": "fft", "lower_bound": "backbone", "drawn": "random"}


def describe_methods(methods: list[str]) -> dict:
    """The labels and roles of `methods` (ids in table order), as written into the protocol's results."""
    return {
        "method_names": {m: NAMES[m] for m in methods},
        "method_short": {m: SHORT[m] for m in methods},
        "curve_names": {m: CURVES[m] for m in CURVES if m in methods},
        "curve_from": [m for m in FROM_UPPER_BOUND if m in methods],
        "reference_lines": [m for m in REFERENCE_LINES if m in methods],
        "roles": {role: m for role, m in ROLES.items() if m in methods},
    }
