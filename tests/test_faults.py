"""Fault injection (issue 21): one table of cases, every artefact the package writes x every fault, each ending in a
correct result or a one-line error, nothing already computed lost; one table of bad command-line paths.

Protects: damaged cache entries are counted and recomputed; damaged records, notebook records and sidecars are
detected by their checksums; a folder in a file's place, a read-only folder and two writers at once end in one line
or a valid file; a writer killed with SIGKILL between writing its data and renaming it into place leaves the
previous complete file (or none), and a rerun completes reusing what was finished. docs/evaluation.md, "Faults",
lists :data:`CASES` and :data:`CLI_CASES` (:func:`test_the_docs_list_every_case` keeps them equal).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from s2c2seg.bundle import FeatureBundle
from s2c2seg.cache import BundleCache
from s2c2seg.cli import console, main
from s2c2seg.models import TextEncoder, load_clip, tiny_clip_config
from s2c2seg.records import CSV_NAME, RECORD_NAME, DamagedRecordError, RecordExistsError, RunRecord, claim_out_dir
from s2c2seg.store import TEMP_GLOB, CorruptFileError, load_tensors, read_json_checked, save_tensors

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "evaluation.md"
NO_CHMOD = "runs as root: permission bits do not bind root, so a read-only folder cannot be made (not faked)"
KEY = "ab" * 32


# ------------------------------------------------------------------------------------------------ shared worlds
@pytest.fixture(scope="session")
def clip():
    return load_clip("tiny", config=tiny_clip_config())


@pytest.fixture(scope="session")
def sim_record(tmp_path_factory) -> RunRecord:
    """A real run record (one SIMULATED image), for the record / CSV cases."""
    out = tmp_path_factory.mktemp("sim") / "run"
    assert main(["eval", "sim:voc21", "--backend", "sim", "--sim-images", "1", "--no-progress", "--out", str(out)]) == 0
    return RunRecord.load(out)


@pytest.fixture(scope="session")
def figure_stem(tmp_path_factory) -> Path:
    """A figure saved by save_figure (PDF + PNG), for the figures/ cases."""
    import matplotlib

    matplotlib.use("Agg")
    from s2c2seg.plots import figure, save_figure

    fig, axes = figure(width="single", title="fault fixture", label="SIMULATED")
    axes.flat[0].plot([0, 1], [1, 0])
    stem = tmp_path_factory.mktemp("fig") / "main_results"
    save_figure(fig, stem, close=True)
    return stem


def _bundle(seed: int = 0) -> FeatureBundle:
    g = torch.Generator().manual_seed(seed)
    return FeatureBundle(dense_logits=torch.randn(1, 3, 2, 2, generator=g), crop_boxes=torch.tensor([[0, 8, 0, 8]]),
                         resized_hw=torch.tensor([8, 8]), image_hw=torch.tensor([8, 8]),
                         global_sim=torch.rand(3, generator=g), clipseg_mean=torch.rand(3, generator=g),
                         clipseg_maps=torch.rand(3, 4, 4, generator=g).half(),
                         query_to_class=torch.tensor([0, 1, 1]))


def _same_bundle(a: FeatureBundle, b: FeatureBundle) -> bool:
    return a.tensors().keys() == b.tensors().keys() and all(torch.equal(a.tensors()[k], b.tensors()[k])
                                                            for k in a.tensors())


def _other_record(rec: RunRecord) -> RunRecord:
    """``rec`` with other per-class numbers (a second writer's record)."""
    metrics = copy.deepcopy(rec.metrics)
    for v in metrics["per_class"].values():
        v["IoU"] = 0.125
    return dataclasses.replace(rec, metrics=metrics, created="another run")


def _prov(tmp_path) -> dict:
    from s2c2seg.figures import provenance

    rec = tmp_path / "07_paper_tables" / "record.json"
    return provenance(rec, record={"notebook": "07_paper_tables", "backend": "sim", "label": "SIMULATED",
                                   "n_images": 2, "params": {"datasets": ["voc21"]}, "package_version": "0"})


def _session(out_dir: Path):
    from s2c2seg.session import Session

    return Session(notebook="toy", backend=None, info={"backend": "sim", "label": "SIMULATED"},
                   backend_requested="sim", dataset_name="voc21", dataset=[0, 1], data_source="simulation",
                   vocab=SimpleNamespace(num_classes=21, variant="sclip"), protocol={}, out_dir=out_dir)


def _one_line(exc: BaseException, *names) -> str:
    """The message the command line would print: one line, naming each of ``names``."""
    text = str(exc)
    assert "\n" not in text and all(str(n) in text for n in names), text
    return text


# ------------------------------------------------------------------------------------------------ the faults
def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _flip(p: Path) -> None:
    """One byte changed where a reader would not notice by parsing alone: a tensor byte (safetensors), a digit
    (JSON, so it stays JSON), the middle byte otherwise."""
    data = bytearray(p.read_bytes())
    if p.suffix == ".safetensors":
        i = 8 + int.from_bytes(data[:8], "little") + 3  # a payload byte; the header stays valid
    elif p.suffix == ".json":
        digits = [m.start() for m in re.finditer(rb"[0-9]", bytes(data))]
        i = next(j for j in digits if j >= len(data) // 2) if digits[-1] >= len(data) // 2 else digits[0]
    else:
        i = len(data) // 2
    data[i] ^= 0x01
    p.write_bytes(bytes(data))


def _empty(p: Path) -> None:
    p.write_bytes(b"")


DAMAGE = {"truncated": _truncate, "flipped byte": _flip, "empty file": _empty}
FAULTS = (*DAMAGE, "a folder in its place", "no write permission", "two writers at once", "kill -9 mid-write, resume")


def _read_only(folder: Path):
    """``folder`` made read-only for the duration (the caller skips as root)."""
    class _Ctx:
        def __enter__(self):
            folder.chmod(0o555)

        def __exit__(self, *exc):
            folder.chmod(0o755)
    return _Ctx()


def _at_once(*writers, rounds: int = 10) -> list:
    """Run the writers together (threads released by one barrier), ``rounds`` times; each round's outcomes."""
    outcomes = []
    for r in range(rounds):
        barrier, got = threading.Barrier(len(writers)), [None] * len(writers)

        def run(i, w, barrier=barrier, got=got, r=r):
            barrier.wait()
            try:
                got[i] = w(r)
            except Exception as exc:  # noqa: BLE001 - the outcome is what the case checks
                got[i] = exc
        threads = [threading.Thread(target=run, args=(i, w)) for i, w in enumerate(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        outcomes.append(got)
    return outcomes


_STOPPER = r'''
import os, re, sys, time
pattern, nth, code = re.compile(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
seen = [0]
def _stopping(real):
    def rename(src, dst, *args, **kwargs):
        if pattern.search(os.fspath(dst)):
            seen[0] += 1
            if seen[0] == nth:  # the data is in its temporary file, not renamed yet: wait here to be killed
                print("writing", flush=True)
                time.sleep(600)
        return real(src, dst, *args, **kwargs)
    return rename
os.replace, os.link = _stopping(os.replace), _stopping(os.link)
sys.argv = [sys.argv[0], *sys.argv[4:]]
exec(compile(code, "<writer>", "exec"))
'''


def _kill_mid_write(tmp_path, pattern: str, code: str, *args, nth: int = 1) -> None:
    """Run ``code`` in a subprocess that stops when it is about to rename its ``nth`` file matching ``pattern``
    into place, and kill it there with SIGKILL."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",  # one thread, as in this process
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    with open(tmp_path / "writer.stderr", "w+") as err:
        p = subprocess.Popen([sys.executable, "-c", _STOPPER, pattern, str(nth), code, *map(str, args)],
                             stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        line = p.stdout.readline()
        if line.strip() != "writing":
            p.wait(timeout=60)
            err.seek(0)
            pytest.fail(f"the writer ended before the write it was to be killed in: {err.read()[-2000:]}")
        os.kill(p.pid, signal.SIGKILL)
        assert p.wait(timeout=60) == -signal.SIGKILL


# ------------------------------------------------------------------------------------------------ bundle cache
def bundle_damage(fault, tmp_path, request):
    cache = BundleCache(tmp_path)
    path = cache.put(KEY, _bundle())
    DAMAGE[fault](path)
    assert cache.get(KEY) is None and cache.stats.corrupt == 1 and not path.exists()
    cache.put(KEY, _bundle())  # what the run does next: encode again, store
    assert _same_bundle(BundleCache(tmp_path).get(KEY), _bundle())


def bundle_folder(fault, tmp_path, request):
    cache = BundleCache(tmp_path)
    cache.path(KEY).mkdir(parents=True)
    assert cache.get(KEY) is None
    with pytest.raises(IsADirectoryError) as err:
        cache.put(KEY, _bundle())
    _one_line(err.value, cache.path(KEY), "remove it")
    assert not list(tmp_path.rglob(TEMP_GLOB))


def bundle_read_only(fault, tmp_path, request):
    cache = BundleCache(tmp_path)
    cache.path(KEY).parent.mkdir(parents=True)
    with _read_only(cache.path(KEY).parent), pytest.raises(PermissionError) as err:
        cache.put(KEY, _bundle())
    _one_line(err.value, cache.path(KEY), "write permission")


def bundle_two_writers(fault, tmp_path, request):
    a, b = BundleCache(tmp_path), BundleCache(tmp_path)
    _at_once(lambda r: a.put(KEY, _bundle(0)), lambda r: b.put(KEY, _bundle(1)))
    reader = BundleCache(tmp_path)
    got = reader.get(KEY)
    assert reader.stats.corrupt == 0 and (_same_bundle(got, _bundle(0)) or _same_bundle(got, _bundle(1)))
    assert not list(tmp_path.rglob(TEMP_GLOB))


@pytest.fixture(scope="session")
def voc3(tmp_path_factory) -> Path:
    from s2c2seg.data.fixtures import write_fixture

    return write_fixture("voc21", tmp_path_factory.mktemp("voc") / "VOC2012", n_images=3, seed=0)


TINY_EVAL = ["--backend", "random", "--size", "tiny", "--short-side", "64", "--crop", "32", "--stride", "32",
             "--no-progress"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, voc3) -> tuple[Path, RunRecord]:
    """One image of ``voc3`` evaluated with the tiny random backend: (its --cache-dir, its record)."""
    base = tmp_path_factory.mktemp("tiny")
    assert main(["eval", "voc21", "--data-root", str(voc3), "--max-images", "1", *TINY_EVAL, "--cache-dir",
                 str(base / "cache"), "--out", str(base / "run")]) == 0
    return base / "cache", RunRecord.load(base / "run")


def bundle_kill(fault, tmp_path, request):
    """``s2c2seg eval --backend random --size tiny`` killed while storing its second image's bundle; the rerun
    with the same --cache-dir encodes only the two images not cached."""
    import shutil

    root, cache = request.getfixturevalue("voc3"), tmp_path / "cache"
    shutil.copytree(request.getfixturevalue("tiny_run")[0] / "text", cache / "text")  # the text is not the point
    args = ["eval", "voc21", "--data-root", str(root), *TINY_EVAL, "--cache-dir", str(cache)]
    _kill_mid_write(tmp_path, r"/[0-9a-f]{2}/[0-9a-f]{64}\.safetensors$",
                    "from s2c2seg.cli import console; sys.exit(console(sys.argv[1:]))",
                    *args, "--out", tmp_path / "killed", nth=2)
    assert len(BundleCache(cache)) == 1 and not (tmp_path / "killed" / RECORD_NAME).exists()
    assert main([*args, "--out", str(tmp_path / "killed")]) == 0  # the same --out: no record was finished there
    rec = RunRecord.load(tmp_path / "killed")
    assert rec.num_images == 3 and (rec.cache["hits"], rec.cache["misses"], rec.cache["corrupt"]) == (1, 2, 0)


# ------------------------------------------------------------------------------------------------ text cache
def text_damage(fault, tmp_path, request):
    clip = request.getfixturevalue("clip")
    first = TextEncoder(clip, templates="raw", cache_dir=tmp_path).encode(["cat", "dog"])
    path = TextEncoder(clip, templates="raw", cache_dir=tmp_path).cache_path(["cat", "dog"])
    DAMAGE[fault](path)
    enc = TextEncoder(clip, templates="raw", cache_dir=tmp_path)
    assert torch.equal(enc.encode(["cat", "dog"]), first) and enc.corrupt == 1 and enc.calls > 0
    load_tensors(path)  # rewritten, intact


def text_folder(fault, tmp_path, request):
    enc = TextEncoder(request.getfixturevalue("clip"), templates="raw", cache_dir=tmp_path)
    enc.cache_path(["cat"]).mkdir(parents=True)
    with pytest.raises(IsADirectoryError) as err:
        enc.encode(["cat"])
    _one_line(err.value, enc.cache_path(["cat"]), "remove it")


def text_read_only(fault, tmp_path, request):
    enc = TextEncoder(request.getfixturevalue("clip"), templates="raw", cache_dir=tmp_path)
    with _read_only(tmp_path), pytest.raises(PermissionError) as err:
        enc.encode(["cat"])
    _one_line(err.value, enc.cache_path(["cat"]), "write permission")


def text_two_writers(fault, tmp_path, request):
    clip = request.getfixturevalue("clip")
    ref = TextEncoder(clip, templates="raw").encode(["cat", "dog"])
    outcomes = _at_once(*[lambda r: TextEncoder(clip, templates="raw", cache_dir=tmp_path / str(r)).encode(
        ["cat", "dog"])] * 2, rounds=4)
    assert all(torch.equal(e, ref) for got in outcomes for e in got)
    for r in range(4):
        enc = TextEncoder(clip, templates="raw", cache_dir=tmp_path / str(r))
        assert torch.equal(enc.encode(["cat", "dog"]), ref) and enc.corrupt == 0 and enc.calls == 0


_TEXT_WRITER = """
from s2c2seg.models import TextEncoder, load_clip, tiny_clip_config
TextEncoder(load_clip("tiny", config=tiny_clip_config()), templates="raw", cache_dir=sys.argv[1],
            names_per_part=2).encode(["cat", "dog", "sky", "tree"])
"""


def text_kill(fault, tmp_path, request):
    """Killed while saving the second of two parts: the rerun encodes that part only."""
    clip, names = request.getfixturevalue("clip"), ["cat", "dog", "sky", "tree"]
    _kill_mid_write(tmp_path, r"part00001of00002", _TEXT_WRITER, tmp_path / "c")
    whole = TextEncoder(clip, templates="raw", names_per_part=2).encode(names)  # uninterrupted, uncached
    single = TextEncoder(clip, templates="raw", names_per_part=2)
    single.encode(names[2:])
    enc = TextEncoder(clip, templates="raw", cache_dir=tmp_path / "c", names_per_part=2)
    assert torch.equal(enc.encode(names), whole) and enc.calls == single.calls and enc.corrupt == 0
    assert [p.name for p in (tmp_path / "c").glob("*.safetensors")] == [enc.cache_path(names).name]


# ------------------------------------------------------------------------------------------------ run records
def record_damage(fault, tmp_path, request, capsys):
    request.getfixturevalue("sim_record").save(tmp_path / "run")
    DAMAGE[fault](tmp_path / "run" / RECORD_NAME)
    assert console(["tables", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("s2c2seg: error: 1 damaged run record") and str(tmp_path / "run" / RECORD_NAME) in err
    _one_line(err, "rerun")
    with pytest.raises(DamagedRecordError):
        RunRecord.load(tmp_path / "run")


def record_folder(fault, tmp_path, request):
    (tmp_path / RECORD_NAME).mkdir()
    for attempt in (lambda: claim_out_dir(tmp_path), lambda: request.getfixturevalue("sim_record").save(tmp_path)):
        with pytest.raises(IsADirectoryError) as err:
            attempt()
        _one_line(err.value, tmp_path / RECORD_NAME, "--out")
    assert not (tmp_path / CSV_NAME).exists()


def record_read_only(fault, tmp_path, request):
    with _read_only(tmp_path), pytest.raises(PermissionError) as err:
        request.getfixturevalue("sim_record").save(tmp_path)
    _one_line(err.value, tmp_path, "write permission")
    assert not (tmp_path / RECORD_NAME).exists()


def record_two_writers(fault, tmp_path, request):
    """Two runs saving into one folder: one wins, the other is refused, and the CSV is the winner's."""
    recs = [request.getfixturevalue("sim_record"), _other_record(request.getfixturevalue("sim_record"))]
    for got in _at_once(*[lambda r, rec=rec: rec.save(tmp_path / str(r)) for rec in recs]):
        assert sum(isinstance(g, RecordExistsError) for g in got) == 1 and sum(isinstance(g, Path) for g in got) == 1
    for r in range(10):
        saved = RunRecord.load(tmp_path / str(r))
        winner = next(rec for rec in recs if rec.created == saved.created)
        assert saved.metrics == winner.metrics
        assert (tmp_path / str(r) / CSV_NAME).read_bytes().decode() == winner.per_class_csv()


_RECORD_WRITER = """
from s2c2seg.records import RunRecord
RunRecord.load(sys.argv[1]).save(sys.argv[2])
"""


def record_kill(fault, tmp_path, request):
    rec = request.getfixturevalue("sim_record")
    _kill_mid_write(tmp_path, re.escape(RECORD_NAME) + "$", _RECORD_WRITER, rec.source, tmp_path / "run")
    assert not (tmp_path / "run" / RECORD_NAME).exists()
    claim_out_dir(tmp_path / "run")  # the folder may be used again
    rec.save(tmp_path / "run")
    assert RunRecord.load(tmp_path / "run").metrics == rec.metrics
    assert (tmp_path / "run" / CSV_NAME).read_bytes().decode() == rec.per_class_csv()


# ------------------------------------------------------------------------------------------------ per-class CSV
def csv_damage(fault, tmp_path, request, capsys):
    rec = request.getfixturevalue("sim_record")
    rec.save(tmp_path / "run")
    assert console(["tables", str(tmp_path)]) == 0
    before = capsys.readouterr().out
    DAMAGE[fault](tmp_path / "run" / CSV_NAME)
    assert console(["tables", str(tmp_path)]) == 0 and capsys.readouterr().out == before  # tables read records
    assert RunRecord.load(tmp_path / "run").per_class_csv() == rec.per_class_csv()  # the CSV's source, intact


def csv_folder(fault, tmp_path, request):
    (tmp_path / CSV_NAME).mkdir()
    with pytest.raises(IsADirectoryError) as err:
        request.getfixturevalue("sim_record").save(tmp_path)
    _one_line(err.value, tmp_path / CSV_NAME, "--out")
    assert not (tmp_path / RECORD_NAME).exists()  # no record without its CSV


def csv_read_only(fault, tmp_path, request):
    with _read_only(tmp_path), pytest.raises(PermissionError) as err:
        request.getfixturevalue("sim_record").save(tmp_path)
    _one_line(err.value, tmp_path / CSV_NAME, "write permission")


def csv_kill(fault, tmp_path, request):
    rec = request.getfixturevalue("sim_record")
    _kill_mid_write(tmp_path, re.escape(CSV_NAME) + "$", _RECORD_WRITER, rec.source, tmp_path / "run")
    assert not (tmp_path / "run" / CSV_NAME).exists() and not (tmp_path / "run" / RECORD_NAME).exists()
    rec.save(tmp_path / "run")  # the rerun: the folder holds no finished record
    assert (tmp_path / "run" / CSV_NAME).read_bytes().decode() == rec.per_class_csv()


# ------------------------------------------------------------------------------------------------ notebook outputs
def notebook_damage(fault, tmp_path, request):
    """A notebook's record.json, read back by the runner and by the figures/ export."""
    from s2c2seg.figures import provenance

    path = _session(tmp_path / "07_paper_tables").write_record({"mIoU": 0.5})
    assert provenance(path)["notebook"] == "toy"
    DAMAGE[fault](path)
    for read in (read_json_checked, provenance):
        with pytest.raises(CorruptFileError) as err:
            read(path)
        _one_line(err.value, path, "damaged")


def notebook_folder(fault, tmp_path, request):
    from s2c2seg.notebooks import _write_summary

    (tmp_path / "summary.json").mkdir()
    with pytest.raises(IsADirectoryError) as err:
        _write_summary(tmp_path, [], {}, None)
    _one_line(err.value, tmp_path / "summary.json", "remove it")
    (tmp_path / "nb").mkdir()
    (tmp_path / "nb" / RECORD_NAME).mkdir()
    with pytest.raises(IsADirectoryError):
        _session(tmp_path / "nb").write_record({})


def notebook_read_only(fault, tmp_path, request):
    from s2c2seg.notebooks import _write_summary

    with _read_only(tmp_path), pytest.raises(PermissionError) as err:
        _write_summary(tmp_path, [], {}, None)
    _one_line(err.value, tmp_path / "summary.json", "write permission")


def notebook_two_writers(fault, tmp_path, request):
    """Two runners at once into one --out: two run folders, each with its own summary."""
    from s2c2seg.notebooks import _write_summary, new_run_dir

    def runner(r):
        run_dir = new_run_dir(tmp_path / str(r))
        _write_summary(run_dir, [], {"writer": threading.get_ident()}, None)
        return run_dir
    for got in _at_once(runner, runner):
        assert got[0] != got[1] and all(json.loads((d / "summary.json").read_text())["params"] for d in got)


_SUMMARY_WRITER = """
from pathlib import Path
from s2c2seg.notebooks import _write_summary
_write_summary(Path(sys.argv[1]), [], {"attempt": 2}, None)
"""


def notebook_kill(fault, tmp_path, request):
    from s2c2seg.notebooks import _write_summary

    _write_summary(tmp_path, [], {"attempt": 1}, None)
    _kill_mid_write(tmp_path, r"summary\.json$", _SUMMARY_WRITER, tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["params"] == {"attempt": 1}  # the previous one
    _write_summary(tmp_path, [], {"attempt": 2}, None)
    assert json.loads((tmp_path / "summary.json").read_text())["params"] == {"attempt": 2}


# ------------------------------------------------------------------------------------------------ figures/ + sidecars
def _exported_intact(dest: Path, stem: str, src: Path) -> None:
    for suffix in (".pdf", ".png"):
        assert (dest / f"{stem}{suffix}").read_bytes() == src.with_suffix(suffix).read_bytes()
        assert read_json_checked(dest / f"{stem}{suffix}.json")["file"] == f"{stem}{suffix}"


def figures_damage(fault, tmp_path, request):
    """A damaged figure is ours (its sidecar says so): re-exported in place. A damaged sidecar is not ours: the
    export takes the next name and leaves the damaged pair as it was."""
    from s2c2seg.figures import export_file

    src, dest, prov = request.getfixturevalue("figure_stem"), tmp_path / "figures", _prov(tmp_path)
    export_file(src, dest, prov)
    DAMAGE[fault](dest / "main_results.pdf")
    assert [p.name for p in export_file(src, dest, prov)] == ["main_results.pdf", "main_results.png"]
    _exported_intact(dest, "main_results", src)
    DAMAGE[fault](dest / "main_results.pdf.json")
    damaged = (dest / "main_results.pdf.json").read_bytes()
    assert [p.name for p in export_file(src, dest, prov)] == ["main_results.v2.pdf", "main_results.v2.png"]
    _exported_intact(dest, "main_results.v2", src)
    assert (dest / "main_results.pdf.json").read_bytes() == damaged


def figures_folder(fault, tmp_path, request):
    from s2c2seg.figures import export_file

    src, dest = request.getfixturevalue("figure_stem"), tmp_path / "figures"
    (dest / "main_results.pdf").mkdir(parents=True)
    assert [p.name for p in export_file(src, dest, _prov(tmp_path))] == ["main_results.v2.pdf", "main_results.v2.png"]
    _exported_intact(dest, "main_results.v2", src)
    assert (dest / "main_results.pdf").is_dir()


def figures_read_only(fault, tmp_path, request):
    from s2c2seg.figures import export_file

    dest = tmp_path / "figures"
    dest.mkdir()
    with _read_only(dest), pytest.raises(PermissionError) as err:
        export_file(request.getfixturevalue("figure_stem"), dest, _prov(tmp_path))
    _one_line(err.value, dest, "write permission")


def figures_two_writers(fault, tmp_path, request):
    """Two exports of one record at once (``make notebooks`` twice): one intact set, no versions."""
    from s2c2seg.figures import export_file

    src, prov = request.getfixturevalue("figure_stem"), _prov(tmp_path)
    for got in _at_once(*[lambda r: export_file(src, tmp_path / str(r), prov)] * 2):
        assert all(isinstance(g, list) for g in got), got
    for r in range(10):
        _exported_intact(tmp_path / str(r), "main_results", src)
        assert sorted(p.name for p in (tmp_path / str(r)).iterdir()) == [
            "main_results.pdf", "main_results.pdf.json", "main_results.png", "main_results.png.json"]


_EXPORT_WRITER = """
import json
from s2c2seg.figures import export_file
export_file(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))
"""


def figures_kill(fault, tmp_path, request):
    """Killed while writing the PDF (its sidecar already written): the rerun exports under the same name."""
    from s2c2seg.figures import export_file

    src, dest, prov = request.getfixturevalue("figure_stem"), tmp_path / "figures", _prov(tmp_path)
    _kill_mid_write(tmp_path, r"main_results\.pdf$", _EXPORT_WRITER, src, dest, json.dumps(prov))
    assert not (dest / "main_results.pdf").exists()
    assert [p.name for p in export_file(src, dest, prov)] == ["main_results.pdf", "main_results.png"]
    _exported_intact(dest, "main_results", src)


# ------------------------------------------------------------------------------------------------ the table
@dataclasses.dataclass(frozen=True)
class Case:
    artefact: str
    fault: str
    outcome: str
    """What the fault gets (docs/evaluation.md lists it)."""
    check: object

    @property
    def id(self) -> str:
        return f"{self.artefact}: {self.fault}"


RO = "one line naming the file and the folder without write permission (exit 2)"
CASES = [
    *[Case("bundle cache", f, "detected (checksum), counted in the record's cache.corrupt, deleted, recomputed",
           bundle_damage) for f in DAMAGE],
    Case("bundle cache", "a folder in its place", "not served; storing it is one line naming the folder (remove it)",
         bundle_folder),
    Case("bundle cache", "no write permission", RO, bundle_read_only),
    Case("bundle cache", "two writers at once", "one writer's complete entry, verified", bundle_two_writers),
    Case("bundle cache", "kill -9 mid-write, resume", "finished entries kept; the rerun encodes only the images not "
         "cached (cache.hits / misses)", bundle_kill),
    *[Case("text cache", f, "detected (checksum), counted in the record's cache.text_corrupt, deleted, recomputed",
           text_damage) for f in DAMAGE],
    Case("text cache", "a folder in its place", "one line naming the folder (remove it)", text_folder),
    Case("text cache", "no write permission", RO, text_read_only),
    Case("text cache", "two writers at once", "the same embeddings, one complete entry", text_two_writers),
    Case("text cache", "kill -9 mid-write, resume", "finished parts kept; the rerun encodes only the missing part",
         text_kill),
    *[Case("run record", f, "`s2c2seg tables`: one line naming every damaged record (exit 2), never a table "
           "without it", record_damage) for f in DAMAGE],
    Case("run record", "a folder in its place", "refused before any work: one line naming the folder", record_folder),
    Case("run record", "no write permission", RO, record_read_only),
    Case("run record", "two writers at once", "one record wins; the other run is refused (one line)",
         record_two_writers),
    Case("run record", "kill -9 mid-write, resume", "no record; the same --out runs again", record_kill),
    *[Case("per-class CSV", f, "not read back: `tables` reads record.json, unchanged; the CSV's rows are in the "
           "record", csv_damage) for f in DAMAGE],
    Case("per-class CSV", "a folder in its place", "one line naming the folder; no record is written", csv_folder),
    Case("per-class CSV", "no write permission", RO, csv_read_only),
    Case("per-class CSV", "two writers at once", "the winning record's CSV", record_two_writers),
    Case("per-class CSV", "kill -9 mid-write, resume", "no CSV and no record; the same --out runs again", csv_kill),
    *[Case("notebook outputs", f, "the notebook's record.json: detected (checksum) by the runner and the figures/ "
           "export, one line naming it", notebook_damage) for f in DAMAGE],
    Case("notebook outputs", "a folder in its place", "one line naming the folder (remove it)", notebook_folder),
    Case("notebook outputs", "no write permission", RO, notebook_read_only),
    Case("notebook outputs", "two writers at once", "two run folders, each complete", notebook_two_writers),
    Case("notebook outputs", "kill -9 mid-write, resume", "the previous summary intact; the rerun writes it",
         notebook_kill),
    *[Case("figures/ + sidecars", f, "a damaged figure is re-exported in place; a damaged sidecar is not ours: the "
           "export takes the next name (.v2), the damaged pair is left", figures_damage) for f in DAMAGE],
    Case("figures/ + sidecars", "a folder in its place", "not ours: the export takes the next name (.v2)",
         figures_folder),
    Case("figures/ + sidecars", "no write permission", RO, figures_read_only),
    Case("figures/ + sidecars", "two writers at once", "one complete set under the name (no .v2)",
         figures_two_writers),
    Case("figures/ + sidecars", "kill -9 mid-write, resume", "sidecar first, then the file: the rerun exports "
         "under the same name", figures_kill),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault(case: Case, tmp_path, request, capsys):
    if case.fault == "no write permission" and os.geteuid() == 0:
        pytest.skip(NO_CHMOD)
    check = case.check
    if "capsys" in check.__code__.co_varnames[:check.__code__.co_argcount]:
        check(case.fault, tmp_path, request, capsys)
    else:
        check(case.fault, tmp_path, request)
    if case.fault != "kill -9 mid-write, resume":  # a killed writer's temporary file may stay (no reader opens it)
        assert not list(tmp_path.rglob(TEMP_GLOB))


def test_every_artefact_meets_every_fault():
    artefacts = list(dict.fromkeys(c.artefact for c in CASES))
    assert len(artefacts) == 6 and sorted((c.artefact, c.fault) for c in CASES) == sorted(
        (a, f) for a in artefacts for f in FAULTS)


# ------------------------------------------------------------------------------------------------ command-line paths
@dataclasses.dataclass(frozen=True)
class CliCase:
    command: str
    option: str
    where: str
    outcome: str
    """``accepted`` (the line parses; the folder is created when missing) or the words the one error line holds."""

    @property
    def id(self) -> str:
        return f"{self.command} {self.option}: {self.where}"


WHERE_FOLDER = ("missing", "a file", "an empty folder")
WHERE_FILE = ("missing", "an empty file", "an empty folder")
_EVAL = ["sim:voc21", "--backend", "sim", "--sim-images", "1", "--no-progress"]
COMMANDS = {"eval": ["eval", *_EVAL], "sweep": ["sweep", *_EVAL], "tables": ["tables"],
            "notebooks run": ["notebooks", "run", "01"]}
NEEDS = {"eval": ["--out", "{tmp}/o"], "sweep": ["--out", "{tmp}/o", "--points", "main"], "tables": ["{records}"],
         "notebooks run": []}
"""What else each command needs so that only the option under test is at fault."""
CLI_CASES = [
    CliCase("eval", "--data-root", "missing", "dataset root not found (the dataset's own message: the layout)"),
    CliCase("eval", "--data-root", "a file", "is a file, not a folder"),
    CliCase("eval", "--data-root", "an empty folder", "image folder not found (the dataset's own message: the layout)"),
    *[CliCase(c, o, w, "no such folder" if w == "missing" else f"is {w}" if w == "an empty folder" else
              "is a file, not a folder") for c in ("eval", "sweep") for o in ("--region-dir",) for w in WHERE_FOLDER],
    *[CliCase(c, o, w, {"missing": "no such file", "an empty file": "is an empty file",
                        "an empty folder": "is a folder, not a file"}[w])
      for c, o in (("eval", "--names"), ("sweep", "--grid")) for w in WHERE_FILE],
    *[CliCase(c, o, w, "is a file, not a folder" if w == "a file" else "accepted")
      for c in ("eval", "sweep", "notebooks run") for o in ("--out", "--cache-dir")
      if not (c == "notebooks run" and o == "--cache-dir") for w in WHERE_FOLDER],
    *[CliCase("tables", "RECORDS", w, {"missing": "no such file or folder", "an empty file": "is an empty file",
                                       "an empty folder": "is an empty folder"}[w]) for w in WHERE_FILE],
    *[CliCase("tables", "--out", w, "is a folder, not a file" if w == "an empty folder" else "accepted")
      for w in WHERE_FILE],
    *[CliCase("notebooks run", o, w, {"missing": "no such file", "an empty file": "accepted",
                                      "an empty folder": "is a folder, not a file"}[w])
      for o in ("--params", "--grid") for w in WHERE_FILE],
    *[CliCase("notebooks run", "--notebook-dir", w, "no such folder" if w == "missing" else
              "is an empty folder" if w == "an empty folder" else "is a file, not a folder") for w in WHERE_FOLDER],
]


def _bad_path(tmp_path: Path, where: str) -> Path:
    target = tmp_path / "target"
    if where in ("a file", "an empty file"):
        target.write_text("" if where == "an empty file" else "x\n")
    elif where == "an empty folder":
        target.mkdir()
    return target


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_cli_path(case: CliCase, tmp_path, request, capsys):
    """Each sub-command's path options: one line naming the option, the path and the fix (exit 2), or accepted."""
    from s2c2seg.cli import build_parser

    target = _bad_path(tmp_path, case.where)
    records = request.getfixturevalue("sim_record").source if case.option != "RECORDS" else target
    fill = {"tmp": tmp_path, "records": records}
    extra = [a.format(**fill) for a in NEEDS[case.command]]
    if case.option == "--grid" and case.command == "sweep":
        extra = extra[:2]  # --grid stands for --points (one of the two)
    given = [str(target)] if case.option == "RECORDS" else [case.option, str(target)]
    argv = [*COMMANDS[case.command], *given, *[a for a in extra if case.option != "RECORDS" or a != str(records)]]
    if case.command == "eval" and case.option == "--data-root":
        argv[1] = "voc21"  # a benchmark that reads --data-root
    if case.outcome == "accepted":
        build_parser().parse_args(argv)  # the command then runs as with any folder (created when missing)
        return
    assert console(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("s2c2seg: error: ") and "\n" not in err and str(target) in err, err
    assert case.outcome.split(" (")[0] in err and "(" in err, err  # what is wrong, then the fix in parentheses
    if "own message" not in case.outcome:
        assert case.option in err, err


# ------------------------------------------------------------------------------------------------ must-show extras
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_modes_follow_the_umask(clip, tmp_path, umask, sim_record, figure_stem):
    """Every writer creates files with mode 0o666 & ~umask: caches, record + CSV, notebook record and summary,
    figures/ exports and their sidecars, save_figure, sweep outputs."""
    from s2c2seg.figures import export_file
    from s2c2seg.notebooks import _write_summary
    from s2c2seg.plots import figure, save_figure

    old = os.umask(umask)
    try:
        TextEncoder(clip, templates="raw", cache_dir=tmp_path / "text").encode(["cat"])
        BundleCache(tmp_path / "b").put(KEY, _bundle())
        sim_record.save(tmp_path / "run")
        _session(tmp_path / "nb").write_record({})
        _write_summary(tmp_path / "nb", [], {}, None)
        export_file(figure_stem, tmp_path / "figures", _prov(tmp_path))
        fig, _ = figure(width="single")
        save_figure(fig, tmp_path / "fig" / "x", close=True)
        assert main(["sweep", "sim:voc21", "--backend", "sim", "--sim-images", "1", "--no-progress",
                     "--grid", str(_grid(tmp_path)), "--out", str(tmp_path / "sweep")]) == 0
    finally:
        os.umask(old)
    files = [f for f in tmp_path.rglob("*") if f.is_file() and f.name != "grid.yaml"]
    assert len(files) >= 18
    assert {oct(f.stat().st_mode & 0o777) for f in files} == {oct(0o666 & ~umask)}


def _grid(tmp_path: Path) -> Path:
    (tmp_path / "grid.yaml").write_text("select.tau: [0.5]\n")
    return tmp_path / "grid.yaml"


def test_load_tensors_without_checksum_is_corrupt(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.ones(2)}, str(tmp_path / "old.safetensors"))
    with pytest.raises(CorruptFileError, match="checksum"):
        load_tensors(tmp_path / "old.safetensors")
    save_tensors(tmp_path / "new.safetensors", {"x": torch.ones(2)}, {"v": 1})
    assert load_tensors(tmp_path / "new.safetensors")[1] == {"v": 1}


def test_a_damaged_text_cache_file_is_counted_in_the_evaluate_record(tmp_path, voc3, tiny_run):
    """``s2c2seg eval`` after a flipped byte in the text cache: the record says ``text_corrupt: 1``, same numbers."""
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(tiny_run[0], cache)
    first = tiny_run[1]
    args = ["eval", "voc21", "--data-root", str(voc3), "--max-images", "1", *TINY_EVAL, "--cache-dir", str(cache)]
    (text_file,) = (cache / "text").rglob("text_*.safetensors")
    _flip(text_file)
    for entry in cache.glob("??/*.safetensors"):  # the image must be encoded again, so the text is read
        entry.unlink()
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    second = RunRecord.load(tmp_path / "b")
    assert first.cache["text_corrupt"] == 0 and second.cache["text_corrupt"] == 1
    assert second.cache["misses"] == 1 and second.metrics == first.metrics
    load_tensors(text_file)  # recomputed and rewritten intact


# ------------------------------------------------------------------------------------------------ the docs
def doc_tables() -> str:
    """The two tables docs/evaluation.md shows under "Faults", made from :data:`CASES` and :data:`CLI_CASES`."""
    lines = ["| artefact | fault | what it gets |", "|---|---|---|"]
    lines += [f"| {c.artefact} | {c.fault} | {c.outcome} |" for c in CASES]
    lines += ["", "| command | path option | given | what it gets |", "|---|---|---|---|"]
    lines += [f"| `s2c2seg {c.command}` | `{c.option}` | {c.where} | "
              + ("accepted (created when missing)" if c.outcome == "accepted" else f"one line: \"{c.outcome}\"") + " |"
              for c in CLI_CASES]
    return "\n".join(lines)


def test_the_docs_list_every_case():
    """docs/evaluation.md shows :func:`doc_tables` between its markers (regenerate: ``python tests/test_faults.py``)."""
    text = DOC.read_text()
    start, end = "<!-- fault tables: generated by tests/test_faults.py -->\n", "\n<!-- end of fault tables -->"
    assert start in text and end in text, "docs/evaluation.md lacks the fault tables' markers"
    assert text.split(start)[1].split(end)[0] == doc_tables()


if __name__ == "__main__":  # rewrite the tables in docs/evaluation.md
    _text = DOC.read_text()
    _start, _end = "<!-- fault tables: generated by tests/test_faults.py -->\n", "\n<!-- end of fault tables -->"
    DOC.write_text(_text.split(_start)[0] + _start + doc_tables() + _end + _text.split(_end)[1])
