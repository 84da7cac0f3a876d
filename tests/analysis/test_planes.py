import copy

import pytest
import torch

from mftlab.analysis.directions import DirectionSpec
from mftlab.analysis.planes import ModelLine, ModelPlane, RandomPlane, linspace, margin_ranges
from mftlab.errors import ConfigError
from mftlab.models.presets import _llama_config


def _build(hidden=32, seed=0):
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(_llama_config(hidden=hidden, layers=2, heads=2, kv_heads=1)).eval()


def _shifted(model, scale, seed):
    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return other


@pytest.fixture(scope="module")
def three():
    a = _build()
    return a, _shifted(a, 0.01, 1), _shifted(a, 0.02, 2)


def _point(plane, x, y):
    out = {}
    for name in plane.names:
        theta0, u, v = plane.basis(name)
        out[name] = theta0 + x * u + (y * v if v is not None else 0)
    return out


def test_model_plane_vertices_are_the_models(three):
    a, b, c = three
    plane = ModelPlane(a, b, c)
    assert plane.model_coords[0] == (0.0, 0.0) and plane.model_coords[1][1] == 0.0
    for model, (x, y) in zip(three, plane.model_coords):
        params = dict(model.named_parameters())
        for name, value in _point(plane, x, y).items():
            torch.testing.assert_close(value, params[name].float(), rtol=0, atol=1e-6)


def test_model_plane_axes_are_orthonormal(three):
    plane = ModelPlane(*three)
    u = {n: plane.basis(n)[1] for n in plane.names}
    v = {n: plane.basis(n)[2] for n in plane.names}
    dot = lambda p, q: sum(float((p[n] * q[n]).sum()) for n in plane.names)  # noqa: E731
    assert dot(u, u) == pytest.approx(1.0, abs=1e-5)
    assert dot(v, v) == pytest.approx(1.0, abs=1e-5)
    assert abs(dot(u, v)) < 1e-5


def test_model_plane_loads_lazily_and_checks_architecture(three):
    a, b, _ = three
    calls = []
    plane = ModelPlane(a, lambda: calls.append("b") or b, lambda: calls.append("c") or three[2])
    assert calls == ["b", "c"] and plane.names
    with pytest.raises(ConfigError, match="different architecture"):
        ModelPlane(a, b, _build(hidden=64))


def test_collinear_or_identical_models_are_refused(three):
    a, b, _ = three
    with pytest.raises(ConfigError, match="identical"):
        ModelPlane(a, copy.deepcopy(a), b)
    mid = copy.deepcopy(a)
    with torch.no_grad():
        for p, q in zip(mid.parameters(), b.parameters()):
            p.copy_(2 * q - p)  # on the line through a and b
    with pytest.raises(ConfigError, match="one line"):
        ModelPlane(a, b, mid)


def test_line_has_models_at_zero_and_one(three):
    a, b, _ = three
    line = ModelLine(a, b)
    assert line.model_coords == [(0.0, 0.0), (1.0, 0.0)]
    params = dict(b.named_parameters())
    for name, value in _point(line, 1.0, 0.0).items():
        torch.testing.assert_close(value, params[name], rtol=0, atol=1e-6)


def test_projection_recovers_coordinates_and_off_plane_distance(three):
    a = three[0]
    plane = RandomPlane(a, DirectionSpec(seed=5))
    on_plane = copy.deepcopy(a)
    params = dict(on_plane.named_parameters())
    with torch.no_grad():
        for name, value in _point(plane, 0.3, -0.2).items():
            params[name].copy_(value)
    p = plane.project(on_plane, a)
    assert p["x"] == pytest.approx(0.3, abs=1e-4) and p["y"] == pytest.approx(-0.2, abs=1e-4)
    assert p["off_plane_relative"] < 1e-2
    off = plane.project(three[1], a)  # differs everywhere, also in the norm gains the plane leaves alone
    assert off["off_plane_relative"] > 0.9


def test_axis_helpers():
    assert linspace(-1, 1, 5) == (-1.0, -0.5, 0.0, 0.5, 1.0)
    assert linspace(2, 3, 1) == (2.0,)
    xr, yr = margin_ranges([(0, 0), (1, 0), (0.5, 2)], 0.2)
    assert xr == pytest.approx((-0.2, 1.2)) and yr == pytest.approx((-0.4, 2.4))
