import pytest
import torch

from mftlab.errors import ConfigError
from mftlab.mft.selection import keep_global, keep_rows, keep_tensor, keep_threshold, num_masked, select_keep


def test_k_rounding_is_round_half_up_and_never_whole_group():
    assert num_masked(91, 0.1) == 9  # 9.1
    assert num_masked(95, 0.1) == 10  # 9.5 rounds up
    assert num_masked(3, 0.9) == 2  # 2.7 -> 3, clamped to n - 1
    assert num_masked(1, 0.5) == 0


@pytest.mark.parametrize("ratio", [0.02, 0.1, 0.37])
def test_exact_k_per_tensor_rows_and_global(ratio):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(7, 13, generator=g), torch.randn(29, generator=g)
    assert int((~keep_tensor(a, ratio)).sum()) == num_masked(91, ratio)
    rows = keep_rows(a, ratio)
    assert ((~rows).sum(dim=1) == num_masked(13, ratio)).all()
    cols = keep_rows(a, ratio, out_axis=1)  # Conv1D: output units are columns
    assert ((~cols).sum(dim=0) == num_masked(7, ratio)).all()
    glob = keep_global({"a": a, "b": b}, ratio)
    assert sum(int((~m).sum()) for m in glob.values()) == num_masked(120, ratio)


def test_masks_the_lowest_values():
    values = torch.tensor([5.0, 1.0, 4.0, 2.0, 3.0, 0.0, 9.0, 8.0, 7.0, 6.0])
    assert (~keep_tensor(values, 0.3)).nonzero().flatten().tolist() == [1, 3, 5]


def test_ties_broken_by_lower_index_everywhere():
    zeros = torch.zeros(4, 10)
    assert (~keep_tensor(zeros, 0.1)).flatten().nonzero().flatten().tolist() == [0, 1, 2, 3]
    assert (~keep_rows(zeros, 0.2)).nonzero().tolist() == [[r, c] for r in range(4) for c in (0, 1)]
    glob = keep_global({"x": torch.zeros(6), "y": torch.zeros(6)}, 0.5)
    assert (~glob["x"]).all() and glob["y"].all()


def test_global_matches_a_full_sort_reference():
    g = torch.Generator().manual_seed(3)
    values = {
        "a": torch.randn(50, 7, generator=g),
        "b": torch.randn(333, generator=g),
        "c": -torch.rand(9, generator=g),
    }
    glob = keep_global(values, 0.25)
    flat = torch.cat([v.flatten() for v in values.values()])
    order = torch.sort(flat, stable=True).indices[: num_masked(flat.numel(), 0.25)]
    expected = torch.ones_like(flat, dtype=torch.bool)
    expected[order] = False
    assert torch.equal(torch.cat([m.flatten() for m in glob.values()]), expected)


def test_threshold_with_floor():
    values = torch.linspace(-1, 1, 100)
    assert int(keep_threshold(values, 0.0).sum()) == 50
    floor = keep_threshold(values, 5.0, min_keep_ratio=0.05)
    assert int(floor.sum()) == 5 and floor[-5:].all()


def test_bad_ratio_and_granularity():
    with pytest.raises(ConfigError, match="outside"):
        select_keep({"a": torch.randn(4)}, 1.0)
    with pytest.raises(ConfigError, match="granularity"):
        select_keep({"a": torch.randn(4)}, 0.5, "diagonal")


def test_a_new_granularity_is_one_function_and_one_table_entry(monkeypatch):
    from mftlab.mft import selection
    from mftlab.mft.masking import SelectionConfig

    def keep_per_column(values, mask_ratio, out_axes=None):
        return {n: keep_rows(v, mask_ratio, out_axis=1) for n, v in values.items()}

    monkeypatch.setitem(selection.GRANULARITY_RULES, "column", keep_per_column)
    a = torch.randn(6, 10, generator=torch.Generator().manual_seed(1))
    keep = select_keep({"a": a}, 0.5, "column")["a"]
    assert (~keep).sum(dim=0).tolist() == [num_masked(6, 0.5)] * 10
    assert set(selection.GRANULARITY_RULES) >= {"tensor", "row", "global", "column"}
    with pytest.raises(ConfigError, match="choose one of tensor, row, global"):
        select_keep({"a": a}, 0.5, "diagonal")
    assert SelectionConfig.__dataclass_fields__["granularity"].metadata  # choices live with the field
