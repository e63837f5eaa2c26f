"""docs/benchmarks.md is generated from benchmarks/results/*.json (benchmarks/report.py): the committed doc equals
the report's output, every committed result is well formed, and the report reads the verdicts from the data."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(autouse=True)
def _bench_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))


def test_committed_doc_equals_the_report_of_the_committed_results():
    import report

    text = report.render(report.load_results())
    assert report.DOC.read_text() == text, "docs/benchmarks.md drifted: run `python benchmarks/report.py`"
    assert report.main(["--check"]) == 0


def test_check_fails_on_a_drifted_doc(tmp_path, capsys):
    import report

    doc = tmp_path / "benchmarks.md"
    doc.write_text(report.DOC.read_text().replace("**pass**", "**FAIL**", 1))
    assert report.main(["--check", "--out", str(doc)]) == 1
    assert "differs" in capsys.readouterr().err


def test_every_committed_result_is_valid_and_converted_ones_name_their_source():
    import bench_common
    import report

    results = report.load_results()
    assert {r["benchmark"] for r in results} >= {"css_scaling", "released_overhead", "sweep_cost_released"}
    for r in results:
        assert r["mode"] == "full" and ("RANDOM" in r["label"] or "SIMULATED" in r["label"]), r["benchmark"]
        if "source" in r:  # converted from the old run log: nothing invented
            assert r["source"].startswith("docs/benchmarks.md at ") and r["recorded_in"]["commit"]
            assert r["revision"]["dirty"] is None and r["machine"]["cpu"] is None
    assert bench_common.validate(copy.deepcopy(results[0])) == results[0]


def _result(value):
    """A hand-made result: one figure 3.0 x against a target <= 2.0 x (hand-judged: fail)."""
    return {"schema": 1, "benchmark": "toy", "script": "benchmarks/toy.py", "title": "Toy", "label": "RANDOM WEIGHTS",
            "mode": "full", "command": "benchmarks/toy.py --images 2", "revision": {"commit": "a" * 40, "dirty": True},
            "machine": {"cpu": "Some CPU", "cores": 2, "ram_gb": 8.0, "torch": "2.0", "torch_threads": 1,
                        "device": "cpu", "python": "3.11"},
            "load": {"before": [0.5, 0.4, 0.3], "after": [1.5, 0.6, 0.4]}, "date": "2026-01-01 00:00 UTC",
            "figures": {"ratio": {"value": value, "unit": "x"}},
            "targets": [{"figure": "ratio", "op": "<=", "threshold": 2.0, "issue": 22, "pass": value <= 2.0}]}


def test_the_targets_table_row_reads_every_field_from_the_result(tmp_path):
    import report

    (tmp_path / "toy.json").write_text(json.dumps(_result(3.0)))
    text = report.render(report.load_results(tmp_path))
    row = next(line for line in text.splitlines() if line.startswith("| [toy]"))
    assert row == ("| [toy](#toy) | ratio ≤ 2.0 x (issue 22) | 3.0 x | **FAIL** | `aaaaaaa` (dirty tree) | Some CPU, "
                   "2 cores, 8.0 GiB, torch 2.0, cpu, 1 threads | 0.5 → 1.5 | 2026-01-01 00:00 UTC | "
                   "`benchmarks/toy.py --images 2` |")
    assert "HF_HUB_OFFLINE=1 PYTHONPATH=. .venv/bin/python benchmarks/toy.py --images 2" in text


@pytest.mark.parametrize("change, message", [
    (lambda r: r["targets"][0].update({"pass": True}), "says pass=True"),
    (lambda r: r["figures"].update({"bad": {"value": "1.0"}}), "figure 'bad'"),
    (lambda r: r.pop("load"), "'load' missing"),
    (lambda r: r["targets"][0].update({"figure": "nope"}), "a known figure"),
])
def test_validate_refuses_a_malformed_result(change, message):
    import bench_common

    r = _result(3.0)
    change(r)
    with pytest.raises(ValueError, match=message):
        bench_common.validate(r, "toy.json")


def test_run_records_the_command_without_the_output_folder(tmp_path):
    import bench_common

    run = bench_common.Run("toy", ["--images", "2", "--out-dir", str(tmp_path), "--quick"], tmp_path, quick=True)
    out = run.finish("Toy", "RANDOM WEIGHTS", {"ratio": bench_common.figure(1.5, "x")},
                     [bench_common.target("ratio", "<=", 2.0, issue=22)])
    saved = json.loads((tmp_path / "toy.json").read_text())
    assert saved == out and saved["command"] == "benchmarks/toy.py --images 2 --quick"
    assert saved["targets"][0]["pass"] is True and saved["mode"] == "quick"
    assert len(saved["load"]["before"]) == 3 and saved["machine"]["cores"] >= 1
    assert len(saved["revision"]["commit"]) == 40
    bench_common.validate(saved)
