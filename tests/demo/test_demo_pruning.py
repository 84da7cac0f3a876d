"""The demo's pruning baselines (issue 12): Wanda and SNIP rows, the 'MFT mask vs pruning criteria'
figure per domain, and the sentence that answers "is MFT just pruning?" from the saved numbers."""

import json
import re

from mftlab.mask.maskfile import load_mask


def test_wanda_and_snip_rows_and_masks(quick_demo):
    out, _ = quick_demo
    demo = json.loads((out / "demo.json").read_text())
    assert {"wanda", "snip"} <= set(demo["methods"])
    report = (out / "report.md").read_text()
    for name in ("Wanda mask", "SNIP mask"):
        rows = [line for line in report.splitlines() if line.startswith(f"| {name} |")]
        benchmark = int("benchmarks" in demo)  # the lm-eval table, when lm-eval is installed
        assert len(rows) == 2 + len(demo["domains"]) + benchmark, name  # Table 1, loss, one Table 5 per domain
    for domain in demo["domains"]:
        variants = sorted((out / "seed-0" / domain).glob("mft-*/best/mask.safetensors"))  # the MFT grid
        assert variants, domain
        mft = load_mask(variants[0])
        for kind in ("wanda", "snip"):
            mask = load_mask(out / "seed-0" / domain / "baselines" / f"{kind}.safetensors")
            assert mask.method["name"] == kind and set(mask.packed) == set(mft.packed)
            calibration = mask.method["calibration"]
            assert 0 < calibration["tokens"] <= 4096 and calibration["fingerprint"].startswith("sha256:")
            assert abs(mask.mask_ratio - mft.mask_ratio) < 0.01


def test_is_mft_just_pruning_sentence_matches_the_numbers(quick_demo):
    out, _ = quick_demo
    demo = json.loads((out / "demo.json").read_text())
    report = (out / "report.md").read_text()
    assert "## Is MFT just pruning?" in report
    images = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", report)
    for domain in demo["domains"]:
        folder = out / demo["analysis"]["criteria"][domain]
        result = json.loads((folder / "reference_overlap.json").read_text())
        overall = {r["mask"]: r for r in result["rows"] if r["level"] == "overall"}
        assert set(overall) == {"Wanda", "SNIP", "magnitude", "random"}
        assert all(r["spearman"] is not None for m, r in overall.items() if m != "random")
        line = next(x for x in report.splitlines() if x.startswith(f"- {domain}: "))
        match = re.search(
            r"overlaps Wanda's ([\d.]+)x chance \(layer 2: ([\d.]+)x, layer 3: ([\d.]+)x\), SNIP's ([\d.]+)x", line
        )
        assert match, line
        layers = {r["group"]: r["lift"] for r in result["rows"] if r["level"] == "layer" and r["mask"] == "Wanda"}
        expected = [overall["Wanda"]["lift"], layers["2"], layers["3"], overall["SNIP"]["lift"]]
        assert [float(x) for x in match.groups()] == [round(v, 2) for v in expected]
        assert re.search(r"so MFT (is not just pruning|largely masks what \w+ prunes|leans towards)", line), line
        png = folder / "criteria_overlap.png"
        assert png.stat().st_size > 5000 and str(png.relative_to(out)) in images
