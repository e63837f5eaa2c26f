"""The command line's error contract, through the real entry point (``python -m s2c2seg`` in a subprocess).

An error is one line on stderr, ``s2c2seg: error: <what> (<fix>)``, exit status 2 for usage and input errors
and 1 for a failure while running, no traceback unless ``--debug`` / ``S2C2SEG_DEBUG=1``; under torchrun it is
printed once.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from s2c2seg.cli import main
from s2c2seg.data.fixtures import write_fixture
from s2c2seg.records import RunRecord

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
SMALL = ["--short-side", "64", "--crop", "32", "--stride", "32", "--no-progress"]


def broken_backend(**_):
    """A backend whose encode fails the way a bug would (for ``--backend test_cli:broken_backend``)."""

    class Broken:
        def describe(self):
            return {"backend": "broken", "label": "SIMULATED"}

        def encode(self, sample, vocab, protocol):
            raise RuntimeError("simulated failure inside the model")

    return Broken()


def _env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "S2C2SEG_DEBUG")}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "empty_hf_home"), PYTHONPATH=os.pathsep.join(
        [str(REPO), str(TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    env.update(extra)
    return env


def run_cli(args, tmp_path, cwd=None, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "s2c2seg", *args], cwd=cwd or REPO, env=_env(tmp_path, **env),
                          capture_output=True, text=True, timeout=300)


def one_error_line(proc, status: int) -> str:
    """The contract: ``status``, nothing but one ``s2c2seg: error:`` line on stderr, no traceback."""
    assert proc.returncode == status, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("s2c2seg: error: ") and "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    return write_fixture("voc21", tmp_path_factory.mktemp("data") / "VOC2012", n_images=2, seed=3)


def test_missing_data_root_shows_the_whole_dataset_message(tmp_path):
    line = one_error_line(run_cli(["eval", "voc21", "--data-root", str(tmp_path / "nowhere"), "--backend", "sim",
                                   "--out", str(tmp_path / "o")], tmp_path), 2)
    # the DatasetError's first line (what, naming the path) and its hints, not only the last line
    assert f"voc21: dataset root not found: {tmp_path / 'nowhere'}" in line
    assert "expected layout: <root>/JPEGImages/*.jpg" in line and "produced by: " in line


def test_unknown_dataset(tmp_path):
    line = one_error_line(run_cli(["eval", "vocx", "--data-root", str(tmp_path), "--out", str(tmp_path / "o")],
                                  tmp_path), 2)
    assert "unknown dataset 'vocx'" in line and "voc21" in line and "sim:<dataset>" in line


def test_invalid_tau_names_the_option(tmp_path):
    line = one_error_line(run_cli(["eval", "sim:voc21", "--backend", "sim", "--tau", "0", "--out",
                                   str(tmp_path / "o")], tmp_path), 2)
    assert "tau must be a number in (0, 1], got 0.0" in line and "--tau" in line
    assert not (tmp_path / "o" / "record.json").exists()


def test_malformed_grid_yaml_names_file_and_line(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("tau: [0.1, 0.3\nlam: [0.5]\n", encoding="utf-8")
    line = one_error_line(run_cli(["sweep", "sim:voc21", "--backend", "sim", "--grid", str(grid), "--out",
                                   str(tmp_path / "o")], tmp_path), 2)
    assert f"grid file {grid} is not valid YAML at line 2" in line


def test_readme_eval_without_weights_names_the_cli_fixes(tmp_path):
    """The README's command, verbatim, in a folder holding the data but no weights (offline, empty HF_HOME)."""
    write_fixture("voc21", tmp_path / "data" / "VOCdevkit" / "VOC2012", n_images=2, seed=3)
    args = ("eval voc21 --data-root data/VOCdevkit/VOC2012 --baseline sclip --method s2c2seg "
            "--cache-dir cache/voc21-sclip --out runs/voc21-sclip-s2c2seg").split()
    line = one_error_line(run_cli(args, tmp_path, cwd=tmp_path, PYTHONPATH=str(REPO)), 2)
    assert "cannot load the real weights of" in line and "HF_HUB_OFFLINE is set" in line
    for fix in ("--backend random", "sim", "auto", "HF_HOME", "HF_HUB_OFFLINE=1"):
        assert fix in line
    assert "config=" not in line  # the API's fix is not the command line's


def test_offline_weights_and_debug_shows_the_traceback(tmp_path):
    args = ["eval", "sim:voc21", "--sim-images", "1", "--out", str(tmp_path / "o")]  # --backend pretrained
    line = one_error_line(run_cli(args, tmp_path), 2)
    assert "--backend random" in line and "HF_HOME" in line
    for proc in (run_cli([*args, "--debug"], tmp_path), run_cli(args, tmp_path, S2C2SEG_DEBUG="1")):
        assert proc.returncode == 2
        assert "Traceback (most recent call last)" in proc.stderr and "ModelUnavailableError" in proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == line  # the one line still ends it


def test_usage_error_is_one_line_with_status_2(tmp_path):
    line = one_error_line(run_cli(["eval", "sim:voc21", "--backend", "sim"], tmp_path), 2)
    assert "--out" in line and "s2c2seg eval --help" in line
    line = one_error_line(run_cli(["evaluate"], tmp_path), 2)
    assert "invalid choice: 'evaluate'" in line


def test_failure_while_running_is_status_1_and_names_the_image(tmp_path, voc_root):
    line = one_error_line(run_cli(["eval", "voc21", "--data-root", str(voc_root), "--backend",
                                   "test_cli:broken_backend", *SMALL, "--out", str(tmp_path / "o")], tmp_path), 1)
    first = sorted(p.stem for p in (voc_root / "JPEGImages").glob("*.jpg"))[0]
    assert f"image '{first}'" in line and "RuntimeError: simulated failure inside the model" in line
    assert "--on-error skip" in line


def _truncate_one(root: Path) -> str:
    """Cut the second image of the split in half (a truncated JPEG); returns its id."""
    ids = (root / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    path = root / "JPEGImages" / f"{ids[1]}.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return ids[1]


def test_on_error_skip_summary_and_record(tmp_path, capsys):
    root = write_fixture("voc21", tmp_path / "VOC2012", n_images=3, seed=6)
    bad = _truncate_one(root)
    args = ["eval", "voc21", "--data-root", str(root), "--backend", "sim", *SMALL]
    with pytest.raises(Exception, match=f"image '{bad}'"):
        main([*args, "--out", str(tmp_path / "stop")])
    assert main([*args, "--on-error", "skip", "--out", str(tmp_path / "skip")]) == 0
    out = capsys.readouterr().out
    assert "(2 images, 1 skipped" in out
    rec = RunRecord.load(tmp_path / "skip")
    assert rec.num_images == 2 and rec.extra["num_skipped"] == 1
    assert [s["id"] for s in rec.extra["skipped"]] == [bad] and "truncated" in rec.extra["skipped"][0]["error"]


@pytest.mark.slow
def test_torchrun_bad_data_root_reports_once(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "s2c2seg", "eval", "voc21", "--data-root",
           str(tmp_path / "nowhere"), "--backend", "sim", "--out", str(tmp_path / "o")]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.splitlines() if "s2c2seg: error:" in ln]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("s2c2seg: error: voc21: dataset root not found")
    assert "Traceback" not in proc.stderr.split(errors[0])[0]  # no rank printed a traceback before it
