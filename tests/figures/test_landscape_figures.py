import json

import numpy as np
import pytest
import torch

from mftlab.analysis.landscape import LandscapeConfig, loss_landscape, prepare_data
from mftlab.errors import MftlabError
from mftlab.figures.landscape_figures import load_results, log_levels, render
from mftlab.figures.render import render_all
from mftlab.models.presets import _llama_config
from mftlab.training.data import Example


def _build(seed):
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(_llama_config(hidden=32, layers=1, heads=2, kv_heads=1)).eval()


@pytest.fixture(scope="module")
def data():
    examples = [Example([1, 10 + i, 11 + i, 12], [-100, 10 + i, 11 + i, 12], [1]) for i in range(4)]
    return prepare_data(examples, 0, 4)


@pytest.fixture(scope="module")
def plane_dir(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("plane")
    models = [_build(0), _build(1), _build(2)]
    loss_landscape(models, data, data, LandscapeConfig("models", (4, 3)), out, labels=["FFT", "continued FFT", "MFT"])
    return out


def test_plane_figures_png_pdf_and_offline_html(plane_dir):
    paths = render(plane_dir)
    names = sorted(p.rsplit("/", 1)[-1] for p in paths)
    assert names == ["landscape.html", "landscape.pdf", "landscape.png"]
    html = (plane_dir / "landscape.html").read_text()
    assert "continued FFT" in html and '<script src="http' not in html and len(html) > 1_000_000  # plotly.js inlined
    assert (plane_dir / "landscape.png").stat().st_size > 10_000


def test_plot_command_redraws_from_saved_results(plane_dir):
    (plane_dir / "landscape.png").unlink()
    written = render_all(plane_dir)
    assert str(plane_dir / "landscape.png") in written


def test_line_figure(tmp_path, data):
    loss_landscape([_build(0), _build(1)], data, data, LandscapeConfig("line", (5, 1)), tmp_path)
    assert sorted(p.rsplit("/", 1)[-1] for p in render(tmp_path)) == ["landscape_1d.pdf", "landscape_1d.png"]
    doc, arrays = load_results(tmp_path)
    assert arrays["train_loss"].shape == (1, 5) and doc["markers"][1]["x"] == 1.0


def test_shared_log_levels():
    levels = log_levels([np.array([[1.0, 2.0]]), np.array([[4.0, np.nan]])])
    assert levels[0] == 1.0 and levels[-1] == pytest.approx(4.0)
    assert np.allclose(np.diff(np.log(levels)), np.log(4.0) / (len(levels) - 1))


def test_missing_results_are_a_clear_error(tmp_path):
    (tmp_path / "landscape.json").write_text(json.dumps({"kind": "landscape"}))
    with pytest.raises(MftlabError, match="landscape.npz"):
        render(tmp_path)
