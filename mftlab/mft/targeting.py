"""Which weights a mask covers: `--targets`, `--layers`, `--exclude` (PEFT-like semantics).

- targets: comma list of module names or suffixes (`q_proj` matches `...self_attn.q_proj`),
  `re:<regex>` (full match against the module path), or `all-linear` (every nn.Linear /
  transformers Conv1D except the output head).
- layers: ranges such as `4-7` or `0-3,20-23`, compared with the first numbered segment of the
  module path (`model.layers.4.mlp.up_proj` -> 4); modules without a number are then excluded.
- exclude: same syntax as targets; matching modules are removed.

Only weights are targeted, never biases. Zero matches is an error, never a silent no-op.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported lazily: mask analysis uses layer_index without it
    import torch
    from torch import nn

from mftlab.errors import TargetError

ALL_LINEAR = "all-linear"
_LAYER_RE = re.compile(r"\.(\d+)(?:\.|$)")


def _conv1d_type():
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - transformers always ships it
        return ()
    return Conv1D


def is_maskable(module: "nn.Module") -> bool:
    """nn.Linear and transformers' Conv1D (GPT-2 family; weight stored as [in, out])."""
    from torch import nn

    conv1d = _conv1d_type()
    return isinstance(module, nn.Linear) or (bool(conv1d) and isinstance(module, conv1d))


def output_axis(kind: str) -> int:
    """Axis of a `kind` weight that indexes output units.

    Rows of a Linear ([out, in]), columns of a Conv1D ([in, out]).
    """
    return 0 if kind == "linear" else 1


def output_axes(model: "nn.Module") -> dict[str, int]:
    """Parameter name -> output axis (`output_axis`) of every parameter of `model` (1 only for Conv1D weights)."""
    conv1d = _conv1d_type()
    axes = {}
    for module_name, module in model.named_modules():
        is_conv1d = bool(conv1d) and isinstance(module, conv1d)
        for name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}" if module_name else name
            axes[full] = output_axis("conv1d") if is_conv1d and name == "weight" else 0
    return axes


def parse_layers(text: str | None) -> tuple[int, ...] | None:
    """'4-7' -> (4, 5, 6, 7); '0-3,20-23' -> both ranges; None or '' -> None (all layers)."""
    if text is None or str(text).strip() == "":
        return None
    layers: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise TargetError.for_option(
                "layers", f"'{text}':", f"'{part}' is not a layer number or range; write e.g. 4-7 or 0-3,20-23"
            )
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise TargetError.for_option(
                "layers", f"'{text}':", f"range '{part}' is empty; write the smaller number first, e.g. {hi}-{lo}"
            )
        layers.update(range(lo, hi + 1))
    return tuple(sorted(layers))


def _split(text: str | tuple | list | None) -> tuple[str, ...]:
    if text is None:
        return ()
    if isinstance(text, (tuple, list)):
        return tuple(t.strip() for t in text if t.strip())
    return tuple(t.strip() for t in str(text).split(",") if t.strip())


@dataclass(frozen=True)
class TargetSpec:
    """What to mask. Build from CLI strings with `TargetSpec.parse`."""

    targets: tuple[str, ...] = (ALL_LINEAR,)
    layers: tuple[int, ...] | None = None
    exclude: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.targets:
            raise TargetError("--targets is empty; give module names such as q_proj,v_proj, or all-linear")
        for pattern in self.targets + self.exclude:
            if pattern.startswith("re:"):
                try:
                    re.compile(pattern[3:])
                except re.error as exc:
                    raise TargetError(
                        f"'{pattern}' is not a valid regular expression ({exc}); fix the pattern"
                    ) from None

    @classmethod
    def parse(
        cls, targets: str | None = ALL_LINEAR, layers: str | None = None, exclude: str | None = None
    ) -> "TargetSpec":
        return cls(_split(targets or ALL_LINEAR), parse_layers(layers), _split(exclude))

    def to_dict(self) -> dict:
        return {
            "targets": list(self.targets),
            "layers": list(self.layers) if self.layers else None,
            "exclude": list(self.exclude),
        }


@dataclass(frozen=True)
class Target:
    """One targeted weight."""

    module_name: str  # e.g. model.layers.4.self_attn.q_proj
    param_name: str  # e.g. model.layers.4.self_attn.q_proj.weight
    shape: tuple[int, ...]
    kind: str  # "linear" ([out, in]) or "conv1d" ([in, out])

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def layer(self) -> int | None:
        return layer_index(self.module_name)

    @property
    def out_axis(self) -> int:
        """Axis of the weight that indexes output units (rows of Linear, columns of Conv1D)."""
        return output_axis(self.kind)


def layer_index(module_name: str) -> int | None:
    """First numbered segment of a module path, or None."""
    m = _LAYER_RE.search("." + module_name)
    return int(m.group(1)) if m else None


def _matches(pattern: str, name: str) -> bool:
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], name) is not None
    return name == pattern or name.endswith("." + pattern)


def _output_head_names(model: "nn.Module") -> set[str]:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return {name for name, module in model.named_modules() if head is not None and module is head}


def maskable_modules(model: "nn.Module") -> list[tuple[str, "nn.Module"]]:
    """Every Linear / Conv1D in module order."""
    return [(name, m) for name, m in model.named_modules() if name and is_maskable(m)]


def _describe(names: list[str]) -> str:
    suffixes = sorted({n.rsplit(".", 1)[-1] for n in names})
    layers = sorted({i for i in (layer_index(n) for n in names) if i is not None})
    span = f"; layers {layers[0]}-{layers[-1]}" if layers else ""
    return ", ".join(suffixes) + span


def resolve_targets(model: "nn.Module", spec: TargetSpec) -> list[Target]:
    """Targeted weights of `model` in module order. Raises TargetError when nothing matches."""
    candidates = maskable_modules(model)
    if not candidates:
        raise TargetError("this model has no nn.Linear or Conv1D modules to mask")
    all_names = [n for n, _ in candidates]
    heads = _output_head_names(model)
    conv1d = _conv1d_type()

    for pattern in spec.targets:
        if pattern != ALL_LINEAR and not any(_matches(pattern, n) for n in all_names):
            raise TargetError(f"target '{pattern}' matches no linear module; this model has: {_describe(all_names)}")

    chosen = []
    for name, module in candidates:
        if ALL_LINEAR in spec.targets:
            selected = name not in heads or any(_matches(p, name) for p in spec.targets if p != ALL_LINEAR)
        else:
            selected = any(_matches(p, name) for p in spec.targets)
        if not selected or any(_matches(p, name) for p in spec.exclude):
            continue
        if spec.layers is not None and layer_index(name) not in spec.layers:
            continue
        kind = "conv1d" if conv1d and isinstance(module, conv1d) else "linear"
        chosen.append(Target(name, f"{name}.weight", tuple(module.weight.shape), kind))

    if not chosen:
        layers = f" in layers {_format_layers(spec.layers)}" if spec.layers is not None else ""
        raise TargetError.for_option(
            "targets",
            f"{','.join(spec.targets)}{layers} (exclude: {','.join(spec.exclude) or 'none'})",
            f"matches nothing; this model has: {_describe(all_names)}",
        )
    return chosen


def _format_layers(layers: tuple[int, ...] | None) -> str:
    return ",".join(str(i) for i in layers) if layers else "all"


def target_weights(model: "nn.Module", targets: list[Target]) -> "dict[str, torch.Tensor]":
    """param_name -> the model's weight tensor (no copy)."""
    params = dict(model.named_parameters(remove_duplicate=False))
    return {t.param_name: params[t.param_name] for t in targets}
