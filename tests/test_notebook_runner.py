"""The runner's parameter handling: per-notebook keys as YAML writes them, file errors that name file and
line, unknown parameters, and the summary written however the run ends."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from s2c2seg import notebooks, cli_notebooks

WRITE_RECORD = ("import json, pathlib\n"
                "pathlib.Path(out_dir, 'record.json').write_text(json.dumps({'backend': 'sim', 'label': 'SIMULATED',"
                " 'values': {'value': value}}))\n")


def _toy(path: Path, body: str, params: str = "value = 1\n") -> Path:
    path.write_text('# %% tags=["parameters"]\n' + params + 'out_dir = ""\n\n# %%\n' + body)
    return path


def test_per_notebook_keys_int_string_and_full_name(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("n_images: 3\n05: {dataset: ade20k, top_n: 25}\n'02': {n_images: 1}\n"
                 "06_hparam_robustness: {seed: 4}\n")
    params = notebooks.load_params(p)
    assert 5 in params  # YAML reads 05 as the integer 5
    assert notebooks.params_for("05_confusion", params) == {"n_images": 3, "dataset": "ade20k", "top_n": 25}
    assert notebooks.params_for("02_css_score_subsets", params) == {"n_images": 1}
    assert notebooks.params_for("06_hparam_robustness", params) == {"n_images": 3, "seed": 4}
    assert notebooks.params_for("01_scoring_terms", params) == {"n_images": 3}
    assert notebooks.notebook_key("confusion") == "05_confusion" and notebooks.notebook_key("tau") is None
    with pytest.raises(notebooks.ParameterError, match="names no notebook"):
        notebooks.notebook_key(9)


def test_docs_yaml_example_passes_the_check():
    """The per-notebook example of docs/notebooks.md, checked against the real notebooks' parameter cells."""
    import re

    import yaml

    text = (Path(__file__).resolve().parents[1] / "docs" / "notebooks.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    params = yaml.safe_load(re.sub(r"^ +", "", block, flags=re.M))
    assert 5 in params
    declared = notebooks.check_params(notebooks.resolve_notebooks(), params)
    assert "top_n" in declared["05_confusion"]
    assert notebooks.params_for("05_confusion", params, declared["05_confusion"])["dataset"] == "ade20k"


def test_unknown_parameter_is_an_error_listing_known_ones(tmp_path):
    src = _toy(tmp_path / "toy.py", WRITE_RECORD)
    with pytest.raises(notebooks.ParameterError, match=r"p\.yaml: unknown parameter 'n_imags'.*known: out_dir, value"):
        notebooks.run_collection([str(src)], params={"n_imags": 2}, out=tmp_path / "runs", echo=None,
                                 params_source="p.yaml")
    assert not (tmp_path / "runs").exists()  # nothing ran, no empty run folder
    with pytest.raises(notebooks.ParameterError, match="unknown parameter 'nope' for notebook 05_confusion"):
        notebooks.check_params(notebooks.resolve_notebooks(["05"]), {"05": {"nope": 1}})
    with pytest.raises(notebooks.ParameterError, match=r"g\.yaml: unknown parameter 'x'"):
        notebooks.check_params([src], {}, {"x": [1]}, grid_where="g.yaml")
    _, results = notebooks.run_collection([str(src)], params={"n_imags": 2, "value": 7}, out=tmp_path / "runs",
                                          echo=None, allow_unknown=True)
    assert results[0].ok and results[0].record["values"]["value"] == 7


def test_cli_unknown_parameter_exit_2(tmp_path, capsys):
    src = _toy(tmp_path / "toy.py", WRITE_RECORD)
    (tmp_path / "p.yaml").write_text("value: 3\nn_imags: 2\n")
    rc = cli_notebooks.main(["notebooks", "run", str(src), "-f", str(tmp_path / "p.yaml"),
                             "--out", str(tmp_path / "r")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "p.yaml:2: unknown parameter 'n_imags'" in err and "known: out_dir, value" in err
    (tmp_path / "q.yaml").write_text("value: 3\n05:\n  top_n: 3\n  nope: 1\n")
    assert notebooks.key_lines(tmp_path / "q.yaml") == {("value",): 1, (5,): 2, (5, "top_n"): 3, (5, "nope"): 4}
    rc = cli_notebooks.main(["notebooks", "run", str(src), "-f", str(tmp_path / "p.yaml"), "--out", str(tmp_path / "r"),
                         "--allow-unknown"])
    assert rc == 0


def test_malformed_params_file_names_file_and_line(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("backend: sim\nn_images: 2\ndatasets: [voc21, ade20k\n05: {top_n: 3}\n")
    with pytest.raises(notebooks.ParameterError, match=r"params\.yaml:\d+: not valid YAML"):
        notebooks.load_params(p)
    p.write_text("a: 1\n  b: 2\n")
    with pytest.raises(notebooks.ParameterError, match=r"params\.yaml:2: not valid YAML"):
        notebooks.load_params(p)
    p.write_text("- 1\n- 2\n")
    with pytest.raises(notebooks.ParameterError, match=r"params\.yaml:1: must hold a mapping"):
        notebooks.load_params(p)
    with pytest.raises(notebooks.ParameterError, match=r"g\.yaml: grid entry 'tau' must be a non-empty list"):
        notebooks.grid_points({"tau": 0.3}, "g.yaml")


def test_summary_written_when_every_notebook_fails_with_int_keys(tmp_path):
    a = _toy(tmp_path / "a.py", "raise RuntimeError('boom a')\n")
    b = _toy(tmp_path / "b.py", "raise RuntimeError('boom b')\n")
    run_dir, results = notebooks.run_collection([str(a), str(b)], params={"value": 2, 5: {"top_n": 3}},
                                                out=tmp_path / "runs", echo=None, allow_unknown=True)
    assert [r.ok for r in results] == [False, False]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["all_passed"] is False and summary["params"]["5"] == {"top_n": 3}
    assert [n["ok"] for n in summary["notebooks"]] == [False, False]
    assert "0/2 notebooks passed" in (run_dir / "summary.md").read_text()


def test_summary_written_when_the_run_is_interrupted(tmp_path, monkeypatch):
    src = _toy(tmp_path / "a.py", WRITE_RECORD)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(notebooks, "execute_notebook", interrupted)
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        notebooks.run_collection([str(src)], run_dir=run_dir, echo=None)
    assert json.loads((run_dir / "summary.json").read_text())["all_passed"] is False
    assert (run_dir / "summary.md").is_file()
