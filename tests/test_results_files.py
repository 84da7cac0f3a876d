"""The results contract (mftlab.files.results): names, header, kind-checked reading, one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from mftlab import __version__
from mftlab.errors import MftlabError
from mftlab.files.results import (
    RESULT_KINDS,
    header,
    read_arrays,
    read_json,
    read_result,
    result_files,
    result_path,
    write_result,
)

# Users' scripts and the demo report read these: the table may grow, never rename.
NAMES = {
    "stats": ("mftlab.stats", "stats.json", "stats.csv", None),
    "dynamics": ("mftlab.dynamics", "dynamics.json", "dynamics.csv", None),
    "overlap": ("mftlab.overlap", "overlap.json", "overlap.csv", None),
    "reference_overlap": ("mftlab.reference_overlap", "reference_overlap.json", "reference_overlap.csv", None),
    "landscape": ("landscape", "landscape.json", None, "landscape.npz"),
    "sweep": ("sweep", "sweep.json", "sweep.csv", None),
    "significance": ("mftlab.significance", "significance.json", "significance.csv", None),
    "demo": ("demo", "demo.json", None, None),
}


def one_line_error(call, *parts):
    with pytest.raises(MftlabError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and all(p in message for p in parts), message
    return message


def test_names_and_tags_never_change():
    assert {k: (f.tag, f.json, f.csv, f.arrays) for k, f in RESULT_KINDS.items()} == NAMES
    assert header("stats") == {"kind": "mftlab.stats", "mftlab_version": __version__}
    one_line_error(lambda: result_files("stat"), "unknown result kind 'stat'", "stats")


def test_write_adds_the_header_first_and_reads_back(tmp_path):
    paths = write_result(
        tmp_path / "new",
        "overlap",
        {"labels": ["a"], "x": None},
        rows=[{"level": "overall", "jaccard": 0.5}, {"level": "layer", "extra": 1}],
    )
    assert paths == [result_path(tmp_path / "new", "overlap"), result_path(tmp_path / "new", "overlap", "csv")]
    text = open(paths[0]).read()
    assert list(json.loads(text)) == ["kind", "mftlab_version", "labels", "x"]
    assert (tmp_path / "new" / "overlap.csv").read_text() == "level,jaccard,extra\noverall,0.5,\nlayer,,1\n"
    assert read_result(tmp_path / "new", "overlap")["labels"] == ["a"]
    assert read_result(paths[0], "overlap")["x"] is None  # the file itself works too
    # data that carries its own header (to_dict) is written unchanged
    again = write_result(tmp_path / "again", "overlap", json.loads(text))[0]
    assert open(again).read() == text
    one_line_error(lambda: write_result(tmp_path, "stats", {"kind": "mftlab.overlap"}), "as stats results")


def test_json_is_strict_and_nothing_half_written_stays(tmp_path):
    with pytest.raises(ValueError):
        write_result(tmp_path, "stats", {"mask_ratio": float("nan")})
    assert list(tmp_path.iterdir()) == []


def test_wrong_kind_is_one_line_naming_file_and_fix(tmp_path):
    write_result(tmp_path, "overlap", {"labels": []})
    (tmp_path / "overlap.json").rename(tmp_path / "stats.json")
    one_line_error(
        lambda: read_result(tmp_path, "stats"),
        str(tmp_path / "stats.json"),
        "holds 'mftlab.overlap' results, not 'mftlab.stats' results",
        "`mftlab stats`",
    )
    (tmp_path / "stats.json").write_text('{"labels": []}')
    one_line_error(lambda: read_result(tmp_path, "stats"), "holds no 'kind' header")
    (tmp_path / "stats.json").write_text("[1, 2]")
    one_line_error(lambda: read_result(tmp_path, "stats"), "holds a JSON list")


def test_corrupt_or_missing_file_is_one_line(tmp_path):
    (tmp_path / "sweep.json").write_text('{"kind": "sweep", "points": [')
    one_line_error(
        lambda: read_result(tmp_path, "sweep"), str(tmp_path / "sweep.json"), "is not valid JSON", "`mftlab sweep`"
    )
    (tmp_path / "sweep.json").write_bytes(b"\xff\xfe\x00garbage")
    one_line_error(lambda: read_result(tmp_path, "sweep"), "is not valid JSON")
    one_line_error(
        lambda: read_result(tmp_path, "demo"), str(tmp_path / "demo.json"), "does not exist", "`mftlab demo`"
    )
    one_line_error(lambda: read_json(tmp_path), "is a folder")


def test_arrays_companion_round_trip_and_damage(tmp_path):
    arrays = {"xs": np.linspace(0, 1, 3), "layout": np.array("rows are ys"), "loss": np.full((2, 3), np.nan)}
    paths = write_result(tmp_path, "landscape", {"markers": []}, arrays=arrays)
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["landscape.json", "landscape.npz"]
    back = read_arrays(tmp_path, "landscape")
    assert list(back) == ["xs", "layout", "loss"] and np.array_equal(back["xs"], arrays["xs"])
    assert np.isnan(back["loss"]).all() and str(back["layout"]) == "rows are ys"
    assert read_arrays(tmp_path / "landscape.json", "landscape").keys() == back.keys()  # sibling of the JSON
    (tmp_path / "landscape.npz").write_bytes(b"PK\x03\x04 not a zip")
    one_line_error(lambda: read_arrays(tmp_path, "landscape"), str(tmp_path / "landscape.npz"), "is damaged")
    (tmp_path / "landscape.npz").unlink()
    one_line_error(lambda: read_arrays(tmp_path, "landscape"), "landscape.npz", "is missing", "--resume")


def test_importing_the_contract_stays_light():
    code = "import sys, mftlab.files.results; print(sorted({'torch', 'numpy', 'matplotlib'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_demo_index_from_before_the_method_labels_is_refused_in_one_line(tmp_path):
    # demo.json written before the labels moved into the results: the figures would have no labels.
    write_result(tmp_path, "demo", {"domains": ["math"], "methods": ["fft", "mft"], "method_names": {"mft": "MFT"}})
    one_line_error(
        lambda: read_result(tmp_path, "demo"), "written by an older mftlab", "no 'method_short'", "`mftlab demo`"
    )
    from click.testing import CliRunner

    from mftlab.cli.main import main

    result = CliRunner().invoke(main, ["plot", str(tmp_path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith("Error: ") and "older mftlab" in result.output
