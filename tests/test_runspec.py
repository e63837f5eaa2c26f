"""The run specification (issue 17): what a record says is what ran, through every entry point.

The encode side a ``released++`` run needs on Cityscapes / ADE20K is CLIPSeg with *template* text (the release's
``run_journal.sh``; ``data/operating_points.py``). Each entry point (``evaluate``, ``sweep``, the notebooks'
session, the CLI) either encodes that side or refuses a backend that encodes another, naming both values.
"""
import argparse

import pytest
import torch

from s2c2seg.cli import main
from s2c2seg.data import get_protocol, load_dataset, vocabulary
from s2c2seg.data.fixtures import write_fixture
from s2c2seg.encode_side import EncodeMismatchError, EncodeSpec
from s2c2seg.evaluate import evaluate
from s2c2seg.factories import backend_for, build_backend
from s2c2seg.predict import predict
from s2c2seg.presets import get_preset
from s2c2seg.records import RunRecord
from s2c2seg.runspec import RunSpec, resolve_run
from s2c2seg.sweep import sweep

from test_released import make_bundle  # tests/ is on the path, as for fakes

SMALL = dict(short_side=32, crop=32, stride=16)


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    root = write_fixture("cityscapes", tmp_path_factory.mktemp("city") / "cityscapes", n_images=1, seed=3,
                         size=(32, 64))
    proto = get_protocol("cityscapes", "proxyclip", **SMALL)
    return load_dataset("cityscapes", root), vocabulary("cityscapes", proto.name_variant), proto


@pytest.fixture(scope="module")
def plain():
    """A tiny random ProxyCLIP backend built with the Segmenter's defaults: CLIPSeg *plain* text."""
    return build_backend("random", baseline="proxyclip", size="tiny")


def test_the_journal_run_on_cityscapes_needs_template_text():
    spec = resolve_run("s2c2seg", "cityscapes", preset="released++")
    assert spec.reading == "released" and spec.encode == EncodeSpec(("window",), "template", "auto")
    assert resolve_run("s2c2seg", "voc21", preset="released++").encode.local_text == "plain"
    assert resolve_run("s2c2seg", "cityscapes", preset="paper").encode == EncodeSpec(("paper",), None, "fp32")
    assert resolve_run("baseline", "cityscapes").encode == EncodeSpec((), None, "fp32")


def test_evaluate_refuses_a_backend_encoding_other_text(city, plain):
    ds, vocab, proto = city
    with pytest.raises(EncodeMismatchError, match=r"'template' text, this backend encoded 'plain'.*local_text="):
        evaluate(ds, plain, vocab, proto, method="s2c2seg", preset="released++", progress=False)


def test_evaluate_with_the_run_backend_encodes_and_records_template(city, plain):
    ds, vocab, proto = city
    spec = resolve_run("s2c2seg", "cityscapes", proto, preset="released++")
    backend = backend_for(plain, spec.encode)
    assert backend is not plain and backend.clip is plain.clip  # the same models, another CLIPSeg text
    record = evaluate(ds, backend, vocab, proto, method="s2c2seg", preset="released++", progress=False)
    assert record.backend["local_text"] == "template"
    assert record.parameters["encode"]["local_text"] == "template"
    assert record.parameters["preset_values"]["encode"]["local_text"] == "template"
    assert record.parameters["reading"] == "released"
    # the text really changed what was encoded (else the record's claim could not be checked)
    sample = ds.sample(0)
    a = backend.encode(sample, vocab, proto).window_local
    b = backend_for(plain, resolve_run("s2c2seg", "voc21", proto, preset="released++").encode).encode(
        sample, vocab, proto).window_local
    assert not torch.equal(a, b)


def test_a_bundle_encoded_with_other_text_is_refused_by_predict(city, plain):
    ds, vocab, proto = city
    bundle = plain.encode(ds.sample(0), vocab, proto)
    assert bundle.meta["local_text"] == "plain"
    with pytest.raises(EncodeMismatchError, match="this bundle encoded 'plain'"):
        predict(bundle, proto, "s2c2seg", preset=get_preset("released++", "cityscapes"))
    predict(bundle, proto, "s2c2seg", preset=get_preset("released++", "voc21"))  # plain text: accepted


def test_sweep_refuses_a_backend_encoding_other_text(city, plain):
    ds, vocab, proto = city
    with pytest.raises(EncodeMismatchError, match="'template' text"):
        sweep(ds, plain, vocab, proto, {"preset": ["released++"]}, progress=False)


def test_the_notebook_session_encodes_each_run_with_its_text(tmp_path):
    from s2c2seg import experiments
    from s2c2seg.session import evaluate_points, open_session

    s = open_session("t", backend="random", size="tiny", dataset="cityscapes", baseline="proxyclip", n_images=1,
                     image_size=(32, 64), out_dir=str(tmp_path))
    s = type(s)(**{**s.__dict__, "protocol": s.protocol.replace(**SMALL)})
    points = experiments.group("released", "released++")
    results = evaluate_points(s, points)
    assert set(results) == {"released", "released++"}
    texts = {key[1].local_text: enc for key, enc in s._cache.items() if isinstance(key, tuple) and key[0] == "encoder"}
    own = s.encoder.backend.describe()["local_text"]
    encoded = {own: s.encoder, **texts}
    assert set(encoded) == {"plain", "template"}  # two passes: released plain, released++ template
    for text, enc in encoded.items():
        assert enc.bundles and all(b.meta["local_text"] == text for b in enc.bundles.values())


def _cli_args(*argv):
    from s2c2seg.cli_eval import add_common_arguments, add_method_arguments

    p = argparse.ArgumentParser()
    add_common_arguments(p)
    add_method_arguments(p)
    return p.parse_args(["cityscapes", "--backend", "random", "--size", "tiny", "--data-root", "unused",
                         "--out", "unused", *argv])


@pytest.mark.parametrize("argv,grid,text", [
    (("--preset", "released++"), None, "template"),
    (("--preset", "released"), None, "plain"),
    ((), {"preset": ["released++"]}, "template"),          # the sweep bug: no --preset, the point names it
    ((), {"preset": ["paper", "released++"]}, "template"),
])
def test_cli_backends_encode_the_run_text(monkeypatch, argv, grid, text):
    import s2c2seg.cli_eval as cli_eval
    import s2c2seg.cli_sweep as cli_sweep

    built = {}
    monkeypatch.setattr(cli_eval, "dataset_by_name", lambda *a, **kw: object())
    monkeypatch.setattr(cli_eval, "backend_by_name", lambda *a, config=None, **kw: built.setdefault("config", config))
    monkeypatch.setattr(cli_sweep, "dataset_info", lambda ds: argparse.Namespace(name="cityscapes"))
    if grid is None:
        cli_eval.eval_setup(_cli_args(*argv))
    else:
        cli_sweep.sweep_setup(_cli_args(*argv), grid)
    assert built["config"].local_text == text and built["config"].window_sources


def test_one_sweep_cannot_mix_two_clipseg_texts(monkeypatch):
    import s2c2seg.cli_eval as cli_eval
    import s2c2seg.cli_sweep as cli_sweep

    monkeypatch.setattr(cli_eval, "dataset_by_name", lambda *a, **kw: object())
    monkeypatch.setattr(cli_sweep, "dataset_info", lambda ds: argparse.Namespace(name="cityscapes"))
    with pytest.raises(EncodeMismatchError, match="two texts"):
        cli_sweep.sweep_setup(_cli_args(), {"preset": ["released", "released++"]})


# ------------------------------------------------------------------------------------- one default reading
def test_predict_without_a_preset_runs_the_default_released_reading():
    b = make_bundle(seed=2)
    proto = get_protocol("voc21", "proxyclip")
    default = predict(b, proto, "s2c2seg", dataset="voc21")
    released = predict(b, proto, "s2c2seg", preset=get_preset("released", "voc21"))
    paper = predict(b, proto, "s2c2seg", preset="paper")
    assert torch.equal(default.label_map, released.label_map)
    assert not torch.equal(default.label_map, paper.label_map)  # so the comparison can tell the readings apart
    assert resolve_run("s2c2seg", "voc21").preset.name == "released"


def test_evaluate_and_the_cli_record_the_default_reading(tmp_path):
    root = write_fixture("voc21", tmp_path / "VOC2012", n_images=1, seed=5, size=(32, 48))
    assert main(["eval", "voc21", "--data-root", str(root), "--backend", "random", "--size", "tiny",
                 "--no-progress", "--short-side", "32", "--crop", "32", "--stride", "32",
                 "--out", str(tmp_path / "cli")]) == 0
    cli = RunRecord.load(tmp_path / "cli")
    assert cli.parameters["reading"] == "released" and cli.parameters["preset"] == "released"
    proto = get_protocol("voc21", "sclip", short_side=32, crop=32, stride=32)
    api = evaluate(load_dataset("voc21", root), build_backend("random", size="tiny"), vocabulary("voc21", "sclip"),
                   proto, method="s2c2seg", progress=False)
    assert api.parameters["preset"] == "released" and api.confusion == cli.confusion


def test_a_preset_with_a_method_that_does_not_read_it_is_refused(tmp_path):
    b = make_bundle(seed=0)
    proto = get_protocol("voc21", "proxyclip")
    for method in ("baseline", "oracle"):
        with pytest.raises(ValueError, match=f"method '{method}' reads no preset"):
            predict(b, proto, method, preset="released", label=torch.zeros(25, 37, dtype=torch.long))
        with pytest.raises(ValueError, match="reads no preset"):
            resolve_run(method, "voc21", preset="paper")
        with pytest.raises(ValueError, match="reads no preset"):
            RunSpec(method, get_preset("paper", "voc21").css, get_preset("paper", "voc21").csg, proto,
                    preset=get_preset("released", "voc21"))
    with pytest.raises(ValueError, match="needs a preset"):
        RunSpec("s2c2seg", get_preset("paper", "voc21").css, get_preset("paper", "voc21").csg, proto)


def test_the_cli_refuses_a_preset_with_the_baseline(tmp_path, capsys):
    from s2c2seg.cli import console

    assert console(["eval", "sim:voc21", "--backend", "sim", "--method", "baseline", "--preset", "released",
                    "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("s2c2seg: error: ") and "--method baseline reads no preset" in err[0]


def test_a_sweep_preset_applies_to_its_s2c2seg_points_only(city):
    from s2c2seg.sweep import make_points

    _, _, proto = city
    points = make_points({"method": ["baseline", "s2c2seg"]}, proto, dataset="cityscapes", preset="released++")
    assert [p.preset for p in points][0] is None and points[1].preset.name == "released++"
    with pytest.raises(ValueError, match="reads no preset"):
        make_points([{"method": "baseline", "preset": "released"}], proto, dataset="cityscapes")


def test_a_backend_without_clipseg_text_serves_both_texts_in_one_pass():
    """The simulation states no CLIPSeg text: one pass may mix released (plain) and released++ (template) on
    Cityscapes, as notebook 07's tables do; a Segmenter that states 'plain' is refused for the template run."""
    from s2c2seg.data.protocols import Protocol
    from s2c2seg.evaluate import check_sources

    both = [resolve_run("s2c2seg", "cityscapes", Protocol(), preset=p) for p in ("released", "released++")]
    check_sources({"backend": "sim", "sources": ["paper", "window"]}, both)
    with pytest.raises(EncodeMismatchError, match="'template' text, this backend encoded 'plain'"):
        check_sources({"sources": ["paper", "window"], "local_text": "plain"}, both)
