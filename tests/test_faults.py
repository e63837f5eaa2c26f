"""Fault injection (issue 21): one table of damaged-file cases, each ending in a correct result or a one-line error.

Protects: the text cache and the bundle cache detect a damaged entry (truncated, flipped byte, empty), count it,
delete it and recompute the same numbers; file modes follow the umask; two writers at once leave a valid file;
a writer killed with SIGKILL mid-write leaves the old file intact; ``s2c2seg tables`` on a bad path is one line,
exit 2. See docs/evaluation.md, "Faults".
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import torch

from s2c2seg.bundle import FeatureBundle
from s2c2seg.cache import BundleCache
from s2c2seg.cli import console
from s2c2seg.models import TextEncoder, load_clip, tiny_clip_config
from s2c2seg.store import CorruptFileError, atomic_write, load_tensors, save_tensors


@pytest.fixture(scope="module")
def clip():
    return load_clip("tiny", config=tiny_clip_config())


def _truncate(p):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _flip(p):
    data = bytearray(p.read_bytes())
    data[8 + int.from_bytes(data[:8], "little") + 3] ^= 0x01  # a payload byte; the header stays valid
    p.write_bytes(bytes(data))


def _empty(p):
    p.write_bytes(b"")


DAMAGE = {"truncated": _truncate, "flipped byte": _flip, "empty file": _empty}


def _bundle():
    g = torch.Generator().manual_seed(0)
    return FeatureBundle(dense_logits=torch.randn(1, 3, 2, 2, generator=g), crop_boxes=torch.tensor([[0, 8, 0, 8]]),
                         resized_hw=torch.tensor([8, 8]), image_hw=torch.tensor([8, 8]), global_sim=torch.rand(3),
                         clipseg_mean=torch.rand(3), clipseg_maps=torch.rand(3, 4, 4).half(),
                         query_to_class=torch.tensor([0, 1, 1]))


KEY = "ab" * 32


@pytest.mark.parametrize("fault", list(DAMAGE))
def test_text_cache_damage_is_detected_counted_and_recomputed(clip, tmp_path, fault):
    """Text cache entry: the damaged file is counted (``corrupt``), deleted and recomputed to the same rows."""
    first = TextEncoder(clip, templates="raw", cache_dir=tmp_path).encode(["cat", "dog"])
    path = TextEncoder(clip, templates="raw", cache_dir=tmp_path).cache_path(["cat", "dog"])
    DAMAGE[fault](path)
    enc = TextEncoder(clip, templates="raw", cache_dir=tmp_path)
    again = enc.encode(["cat", "dog"])
    assert enc.corrupt == 1 and enc.calls > 0 and torch.equal(again, first)
    load_tensors(path)  # rewritten, intact


@pytest.mark.parametrize("fault", list(DAMAGE))
def test_text_cache_damaged_part_is_recomputed_on_resume(clip, tmp_path, fault):
    """A resumable part of an interrupted encode, damaged: recomputed, the result equals an uninterrupted run."""
    names = ["cat", "dog", "sky", "tree"]
    whole = TextEncoder(clip, templates="raw", cache_dir=tmp_path / "w", names_per_part=2).encode(names)
    enc = TextEncoder(clip, templates="raw", cache_dir=tmp_path / "c", names_per_part=2)
    part = enc._part_paths(enc.cache_path(names), len(names))[0]
    enc._save(part, {**enc.cache_key(names[:2]), "part": [0, 2]}, whole[:2])  # what a killed run left
    DAMAGE[fault](part)
    assert torch.equal(enc.encode(names), whole) and enc.corrupt == 1


@pytest.mark.parametrize("fault", list(DAMAGE))
def test_bundle_cache_damage_is_detected_counted_and_recomputed(tmp_path, fault):
    cache = BundleCache(tmp_path)
    path = cache.put(KEY, _bundle())
    DAMAGE[fault](path)
    assert cache.get(KEY) is None and cache.stats.corrupt == 1 and not path.exists()


@pytest.mark.parametrize("kind", ["text", "bundle", "atomic"])
def test_a_directory_in_place_of_an_entry_is_a_one_line_error(clip, tmp_path, kind):
    """A folder where a cache file belongs: the write fails naming the path (nothing else is lost)."""
    if kind == "text":
        enc = TextEncoder(clip, templates="raw", cache_dir=tmp_path)
        enc.cache_path(["cat"]).mkdir(parents=True)
        with pytest.raises(IsADirectoryError):
            enc.encode(["cat"])
    elif kind == "bundle":
        cache = BundleCache(tmp_path)
        cache.path(KEY).mkdir(parents=True)
        assert cache.get(KEY) is None
        with pytest.raises(IsADirectoryError):
            cache.put(KEY, _bundle())
    else:
        (tmp_path / "f").mkdir()
        with pytest.raises(IsADirectoryError):
            atomic_write(tmp_path / "f", "x")
    assert not list(tmp_path.rglob(".*.tmp"))  # no temporary file left behind


def test_no_write_permission_is_an_error_naming_the_path(tmp_path):
    """Tests run as root, so chmod does not bite: the parent of the target is a file instead."""
    (tmp_path / "file").write_text("x")
    with pytest.raises((NotADirectoryError, FileExistsError), match="file"):
        save_tensors(tmp_path / "file" / "entry.safetensors", {"a": torch.ones(2)}, {})


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_modes_follow_the_umask(clip, tmp_path, umask):
    """Every writer (text cache, bundle cache, record + CSV) creates files with mode 0o666 & ~umask."""
    from s2c2seg.records import CSV_NAME, RECORD_NAME, RunRecord

    old = os.umask(umask)
    try:
        TextEncoder(clip, templates="raw", cache_dir=tmp_path / "text").encode(["cat"])
        BundleCache(tmp_path / "b").put(KEY, _bundle())
        fields = dict.fromkeys(["dataset", "split", "method", "baseline", "backend", "protocol", "parameters",
                                "vocabulary", "num_images", "timing", "confusion"], None)
        RunRecord(**fields, metrics={"mIoU": 1.0, "per_class": {"cat": {"IoU": 1.0, "Acc": 1.0}}}).save(
            tmp_path / "run")
    finally:
        os.umask(old)
    files = [*tmp_path.rglob("*.safetensors"), tmp_path / "run" / RECORD_NAME, tmp_path / "run" / CSV_NAME]
    assert len(files) == 4
    assert {oct(f.stat().st_mode & 0o777) for f in files} == {oct(0o666 & ~umask)}


_WRITER = """
import sys, torch
from s2c2seg.store import save_tensors
for i in range(30):
    save_tensors(sys.argv[1], {"x": torch.full((20000,), float(sys.argv[2]))}, {"writer": sys.argv[2]})
"""


def test_two_writers_at_once_leave_a_valid_entry(tmp_path):
    path = tmp_path / "e.safetensors"
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(w)]) for w in (1, 2)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    tensors, meta = load_tensors(path)
    assert torch.equal(tensors["x"], torch.full((20000,), float(meta["writer"])))
    assert not list(tmp_path.glob(".*.tmp"))


_KILLED = """
import os, sys, time, torch
from s2c2seg.store import save_tensors
os.fsync = lambda fd: (print("writing", flush=True), time.sleep(60))  # stop mid-write, the data not renamed yet
save_tensors(sys.argv[1], {"x": torch.zeros(10)}, {"v": 2})
"""


def test_kill_9_mid_write_keeps_the_old_entry(tmp_path):
    path = tmp_path / "e.safetensors"
    save_tensors(path, {"x": torch.ones(10)}, {"v": 1})
    p = subprocess.Popen([sys.executable, "-c", _KILLED, str(path)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "writing"
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    tensors, meta = load_tensors(path)  # the old entry, intact
    assert meta == {"v": 1} and torch.equal(tensors["x"], torch.ones(10))
    save_tensors(path, {"x": torch.zeros(10)}, {"v": 2})  # the resumed write
    assert load_tensors(path)[1] == {"v": 2}


def test_load_tensors_without_checksum_is_corrupt(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.ones(2)}, str(tmp_path / "old.safetensors"))
    with pytest.raises(CorruptFileError, match="checksum"):
        load_tensors(tmp_path / "old.safetensors")


@pytest.mark.parametrize("where", ["missing", "file", "empty folder"])
def test_tables_on_a_bad_path_is_one_line_exit_2(tmp_path, capsys, where):
    target = tmp_path / "x"
    if where == "file":
        target.write_text("not json")
    elif where == "empty folder":
        target.mkdir()
    assert console(["tables", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("s2c2seg: error: ") and "\n" not in err and str(target) in err and "(" in err


def test_a_damaged_text_cache_file_is_counted_in_the_evaluate_record(tmp_path):
    """``s2c2seg eval`` after a flipped byte in the text cache: the record says ``text_corrupt: 1``, same numbers."""
    from s2c2seg.cli import main
    from s2c2seg.data.fixtures import write_fixture
    from s2c2seg.records import RunRecord

    root = write_fixture("voc21", tmp_path / "VOC2012", n_images=1, seed=0)
    cache = tmp_path / "cache"
    args = ["eval", "voc21", "--data-root", str(root), "--backend", "random", "--size", "tiny", "--short-side", "64",
            "--crop", "32", "--stride", "32", "--no-progress", "--cache-dir", str(cache)]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    first = RunRecord.load(tmp_path / "a")
    (text_file,) = (cache / "text").rglob("text_*.safetensors")
    _flip(text_file)
    for entry in cache.glob("??/*.safetensors"):  # the images must be encoded again, so the text is read
        entry.unlink()
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    second = RunRecord.load(tmp_path / "b")
    assert first.cache["text_corrupt"] == 0 and second.cache["text_corrupt"] == 1
    assert second.cache["misses"] == 1 and second.metrics == first.metrics
    load_tensors(text_file)  # recomputed and rewritten intact
