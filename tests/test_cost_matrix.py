"""The cost matrix's quick mode (tiny random models, one 48 x 64 image) and the regression guard of issue 22: every
encode computes exactly the source groups its run reads, counted in model calls (never time)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the benchmarks' quick modes: the slow tier (`make test-slow`, run by .ci/run)

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
BASELINES = ("maskclip", "sclip", "clearclip", "naclip", "proxyclip", "corrclip")
WINDOWS = 2
"""Hand-computed: the quick protocol (short side 48, crop 48, stride 32) on a 48 x 64 image gives 1 x 2 windows."""
NEEDED = {"alone": set(), "paper": {"paper"}, "released": {"window"}, "released++": {"window"}}
"""What each run reads (README): the paper reading the whole-image sources, the released presets the windows'."""


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:  # benchmarks/ on the path for this import only
        mp.syspath_prepend(str(BENCH))
        import cost_matrix

        out_dir = tmp_path_factory.mktemp("cost_matrix")
        out = cost_matrix.main(["--quick", "--out-dir", str(out_dir)])
    return out, json.loads((out_dir / "cost_matrix.json").read_text())


def test_quick_mode_covers_the_matrix_and_writes_a_valid_result(quick, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import bench_common

    out, saved = quick
    bench_common.validate(saved, "cost_matrix.json")
    assert saved["mode"] == "quick" and saved["label"] == "RANDOM WEIGHTS (tiny test models)"
    assert saved["command"] == "benchmarks/cost_matrix.py --quick"
    cells = {"alone", *(f"{m} / {s}" for m in ("paper", "released", "released++") for s in ("needed", "all"))}
    for protocol in ("voc21", "ade20k"):
        for baseline in BASELINES:
            names = {k.split(": ")[0] for k in saved["figures"] if k.startswith(f"{protocol} / {baseline} / ")}
            assert names == {f"{protocol} / {baseline} / {c}" for c in cells}
            assert saved["figures"][f"{protocol} / {baseline} / alone: ratio"]["value"] == 1.0
    # the default preset at the VOC21 protocol is held to 2.5x on every baseline (issue 22)
    assert [(t["figure"], t["threshold"]) for t in saved["targets"]] == [
        (f"voc21 / {b} / released / needed: ratio", 2.5) for b in BASELINES]
    assert all("RANDOM WEIGHTS (tiny test models)" in title for title in saved["data"]["tables"])


@pytest.mark.parametrize("protocol", ["voc21", "ade20k"])
@pytest.mark.parametrize("baseline", BASELINES)
def test_each_encode_runs_exactly_the_models_its_run_needs(quick, baseline, protocol):
    matrix = quick[0]["matrix"][baseline][protocol]["cells"]
    assert len(matrix) == 7
    for (method, sources), cell in matrix.items():
        groups = NEEDED[method] if sources in ("", "needed") else {"paper", "window"}
        calls = cell["counts"]
        assert set(cell["groups"]) == groups, (method, sources)
        assert cell["windows"] == WINDOWS
        assert calls["baseline"] == 1  # both windows in one baseline batch (crop_batch 8)
        assert calls["baseline+cls"] == (1 if groups else 0)  # the CLS embedding only for an S2C2Seg source
        vision = ("paper" in groups) + WINDOWS * ("window" in groups)  # whole image once, each window once
        assert calls["clipseg vision"] == vision, (method, sources, calls)
        assert calls["clipseg decoder chunks"] == vision  # <= 256 queries: one decoder batch per vision pass
        assert calls["clip whole image"] == 0  # global_view="crops": no extra CLIP forward
        stages = cell["stages"]
        assert (stages["paper"] > 0) == ("paper" in groups) and (stages["window"] > 0) == ("window" in groups)
