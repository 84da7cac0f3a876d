"""How masked tensors are grouped for reporting: by layer, by projection type, overall.

A projection is named after its module: `q_proj` -> `q` (Llama-style `*_proj` names lose the
suffix); other architectures keep the module's own name (`c_fc`). When one name occurs under
different parents (GPT-2's `attn.c_proj` and `mlp.c_proj`), the parent is kept in the name.
Counts are additive, so every level is an exact sum over its tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

from mftlab.mft.targeting import layer_index

# Display order of the usual decoder projections; anything else follows in order of appearance.
CANONICAL_ORDER = ("q", "k", "v", "o", "gate", "up", "down")
OVERALL = "all"


def module_path(param_name: str) -> str:
    """`model.layers.4.self_attn.q_proj.weight` -> `model.layers.4.self_attn.q_proj`."""
    return param_name.rsplit(".", 1)[0] if "." in param_name else param_name


def _short(segment: str) -> str:
    stem = segment[: -len("_proj")] if segment.endswith("_proj") else segment
    return stem if stem in CANONICAL_ORDER else segment


def projection_names(param_names: list[str]) -> dict[str, str]:
    """param name -> projection label, unique across parents (see module docstring)."""
    parts = {n: module_path(n).split(".") for n in param_names}
    parents: dict[str, set[str]] = {}
    for segs in parts.values():
        parent = segs[-2] if len(segs) > 1 and not segs[-2].isdigit() else ""
        parents.setdefault(segs[-1], set()).add(parent)
    labels = {}
    for name, segs in parts.items():
        leaf = segs[-1]
        if len(parents[leaf]) > 1 and len(segs) > 1:
            labels[name] = f"{segs[-2]}.{_short(leaf)}"
        else:
            labels[name] = _short(leaf)
    return labels


def projection_order(labels: list[str]) -> list[str]:
    """Unique labels with q, k, v, o, gate, up, down first, the rest in order of appearance."""
    seen = list(dict.fromkeys(labels))
    first = [p for p in CANONICAL_ORDER if p in seen]
    return first + [p for p in seen if p not in first]


@dataclass(frozen=True)
class TensorGroup:
    """Where one tensor is reported: its layer (None outside numbered blocks) and projection."""

    layer: int | None
    projection: str


def tensor_groups(param_names: list[str]) -> dict[str, TensorGroup]:
    """param name -> TensorGroup for every name."""
    labels = projection_names(param_names)
    return {n: TensorGroup(layer_index(module_path(n)), labels[n]) for n in param_names}


def group_keys(groups: dict[str, TensorGroup]) -> dict[str, list[tuple[str, str]]]:
    """param name -> [(level, key), ...]: its tensor, layer (when numbered), projection and overall."""
    keys = {}
    for name, g in groups.items():
        k = [("tensor", name)]
        if g.layer is not None:
            k.append(("layer", str(g.layer)))
        k.append(("projection", g.projection))
        k.append(("overall", OVERALL))
        keys[name] = k
    return keys


def sorted_layers(keys) -> list[str]:
    """Layer keys in numeric order ('2' before '10')."""
    return sorted(keys, key=int)
