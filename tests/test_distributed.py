"""torchrun sharding: 2 CPU processes (gloo) give exactly the single-process result (eval and sweep)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from s2c2seg.data import get_protocol, load_dataset, vocabulary
from s2c2seg.data.fixtures import write_fixture
from s2c2seg.distributed import DistContext, all_gather_objects, all_reduce_sum, env_rank, init_from_env, shard
from s2c2seg.evaluate import evaluate
from s2c2seg.sweep import sweep
from fakes import FakeBackend

REPO = Path(__file__).resolve().parents[1]
PROTO = dict(short_side=64, crop=32, stride=16)
FLAGS = ["--short-side", "64", "--crop", "32", "--stride", "16", "--no-progress",
         "--backend", "tests.fakes:make_backend"]


def test_shard_and_single_process_context(monkeypatch):
    assert shard(range(7), DistContext(0, 2)) == [0, 2, 4, 6]
    assert shard(range(7), DistContext(1, 2)) == [1, 3, 5]
    assert shard(range(1), DistContext(1, 2)) == []
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = init_from_env()
    assert (ctx.rank, ctx.world_size, ctx.active) == (0, 1, False)
    t = torch.arange(4)
    assert torch.equal(all_reduce_sum(t, ctx), t)
    assert all_gather_objects([("a", 1)], ctx) == [[("a", 1)]]
    monkeypatch.delenv("RANK", raising=False)
    assert env_rank() == 0
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(ValueError, match="RANK"):
        init_from_env()


def _torchrun(args, tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["HF_HUB_OFFLINE"] = "1"
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "s2c2seg", *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(tmp_path):
    root = write_fixture("voc21", tmp_path / "VOC2012", n_images=5, seed=4)
    ds, vocab = load_dataset("voc21", root), vocabulary("voc21", "sclip")
    proto = get_protocol("voc21", "sclip", **PROTO)
    single = evaluate(ds, FakeBackend(), vocab, proto, method="s2c2seg", progress=False)
    _torchrun(["eval", "voc21", "--data-root", str(root), "--out", str(tmp_path / "ddp"),
               "--cache-dir", str(tmp_path / "cache"), *FLAGS], tmp_path)
    rec = json.loads((tmp_path / "ddp" / "record.json").read_text())
    assert rec["extra"]["world_size"] == 2 and rec["num_images"] == 5
    assert rec["confusion"] == single.confusion
    assert rec["cache"]["misses"] == 5  # the two ranks encoded disjoint shards
    grid = tmp_path / "grid.yaml"
    grid.write_text("- {method: baseline}\n- {tau: 0.2, mode: uniform}\n- {method: oracle}\n")
    _torchrun(["sweep", "voc21", "--grid", str(grid), "--data-root", str(root), "--out", str(tmp_path / "sw"),
               "--cache-dir", str(tmp_path / "cache"), *FLAGS], tmp_path)
    ref = sweep(ds, FakeBackend(), vocab, proto, [{"method": "baseline"}, {"tau": 0.2, "mode": "uniform"},
                                                  {"method": "oracle"}], progress=False)
    for i, r in enumerate(ref.records):
        got = json.loads((tmp_path / "sw" / "points" / f"{i:03d}" / "record.json").read_text())
        assert got["confusion"] == r.confusion and got["extra"]["world_size"] == 2


@pytest.mark.slow
def test_torchrun_skips_are_gathered_from_every_rank(tmp_path):
    """Two bad images, one on each rank's shard: the record lists both, in split order, as one process does."""
    root = write_fixture("voc21", tmp_path / "VOC2012", n_images=5, seed=4)
    ids = (root / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    for k in (1, 2):  # rank 1 gets index 1, rank 0 index 2
        path = root / "JPEGImages" / f"{ids[k]}.jpg"
        path.write_bytes(path.read_bytes()[:200])
    ds, vocab = load_dataset("voc21", root), vocabulary("voc21", "sclip")
    single = evaluate(ds, FakeBackend(), vocab, get_protocol("voc21", "sclip", **PROTO), on_error="skip",
                      progress=False)
    _torchrun(["eval", "voc21", "--data-root", str(root), "--out", str(tmp_path / "ddp"), "--on-error", "skip",
               "--cache-dir", str(tmp_path / "cache"), *FLAGS], tmp_path)
    rec = json.loads((tmp_path / "ddp" / "record.json").read_text())
    assert [s["id"] for s in rec["extra"]["skipped"]] == [ids[1], ids[2]] and rec["extra"]["num_skipped"] == 2
    assert rec["extra"]["skipped"] == single.extra["skipped"]
    assert rec["num_images"] == 3 and rec["confusion"] == single.confusion and rec["cache"]["misses"] == 3
