"""The protocol's MFT recipe is chosen on validation; random-mask draws are summarised as means."""

import pytest

from mftlab.errors import ConfigError, MftlabError
from mftlab.recipes.choose import best_on_validation
from mftlab.recipes.demo import DemoConfig
from mftlab.recipes.variants import choose_variant, combine_draws, draw_seeds, variant_name


def _scored(val, test_loss, em):
    return {"validation_loss": val, "test": {"math": {"loss": test_loss, "exact_match": em, "token_accuracy": 0.5}}}


def test_the_validation_winner_is_chosen_when_test_disagrees():
    scored = {
        "random-lr0.001": _scored(0.50, 0.10, 0.9),
        "magnitude-lr0.001": _scored(0.40, 0.90, 0.1),
        "magnitude-lr0.01": _scored(float("nan"), 0.01, 1.0),
    }
    assert choose_variant(scored) == "magnitude-lr0.001"
    assert best_on_validation([{"validation_loss": 0.3}, {"validation_loss": 0.3}]) == 0  # ties: first
    with pytest.raises(MftlabError, match="no candidate has a finite 'validation_loss'"):
        best_on_validation([{"validation_loss": None}])


def test_random_draws_are_averaged_and_kept():
    results = [_scored(0.5, 1.0, 0.2), _scored(0.7, 2.0, 0.4)]
    combined = combine_draws(results, [3, 4])
    assert combined["validation_loss"] == pytest.approx(0.6)
    assert combined["test"]["math"]["loss"] == pytest.approx(1.5)
    assert [d["mask_seed"] for d in combined["draws"]] == [3, 4]
    assert set(draw_seeds(0, 3)).isdisjoint(draw_seeds(1, 3))


def test_demo_grid_and_its_validation():
    config = DemoConfig(out="x")
    assert [variant_name(i, lr) for i, lr in config.mft_variants] == [
        "random-lr0.001",
        "random-lr0.01",
        "magnitude-lr0.001",
        "magnitude-lr0.01",
    ]
    with pytest.raises(ConfigError, match="--mft-inits"):
        DemoConfig(out="x", mft_inits=("gaussian",))
    with pytest.raises(ConfigError, match="--mft-score-lrs"):
        DemoConfig(out="x", mft_score_lrs=(0.0,))
    with pytest.raises(ConfigError, match="--random-seeds 0"):
        DemoConfig(out="x", random_seeds=0)
