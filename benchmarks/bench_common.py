"""Helpers shared by the benchmarks: peak memory, the smoke-size protocol, the run header, and the JSON result
(command, revision, machine, load, figures, targets) that ``benchmarks/report.py`` turns into docs/benchmarks.md."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
from pathlib import Path

import torch

CLEAR_REFS = Path("/proc/self/clear_refs")
"""Writing ``5`` here resets the process's peak RSS (``VmHWM``) on Linux."""
STATUS = Path("/proc/self/status")
REPO = Path(__file__).resolve().parents[1]
"""The repository root (this file's folder's parent)."""
RESULTS = REPO / "benchmarks" / "results"
"""Where a full run writes ``<benchmark>.json`` (the latest per benchmark; the history is git's)."""
QUICK_RESULTS = RESULTS / "quick"
"""Where a ``--quick`` run writes by default (ignored by git: tiny models say nothing about the targets)."""
SCHEMA = 1
OPS = {"<=": lambda v, t: v <= t, ">=": lambda v, t: v >= t, "==": lambda v, t: v == t}
"""A target's comparison: figure OP threshold passes."""


def peak_rss_gb() -> float:
    """Peak resident set size of this process since start or the last :func:`reset_peak_rss` (GiB)."""
    if STATUS.exists():
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024 ** 2
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def reset_peak_rss() -> bool:
    """Reset the peak RSS to the current RSS (Linux); False where the kernel does not allow it."""
    try:
        CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def add_protocol_arguments(ap: argparse.ArgumentParser) -> None:
    """``--short-side`` / ``--crop`` / ``--stride``: replace the protocol's resize and windows (smoke runs only)."""
    ap.add_argument("--short-side", type=int, default=None, help="override the protocol's short side (smoke runs)")
    ap.add_argument("--crop", type=int, default=None, help="override the protocol's window size (smoke runs)")
    ap.add_argument("--stride", type=int, default=None, help="override the protocol's window stride (smoke runs)")


def protocol_from_args(protocol, args):
    """``protocol`` with the ``--short-side`` / ``--crop`` / ``--stride`` given on the command line."""
    changes = {k: getattr(args, k) for k in ("short_side", "crop", "stride") if getattr(args, k) is not None}
    return protocol.replace(**changes) if changes else protocol


def header(size: str) -> str:
    """The run's label (RANDOM WEIGHTS, tiny models said), torch threads and the load average now."""
    from s2c2seg.segmenter import RANDOM_LABEL

    label = RANDOM_LABEL + ("" if size == "full" else " (tiny test models)")
    return f"{label}; torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}"


QUICK_CLIPSEG = {"input_size": 64, "decoder_chunk": 256}
"""CLIPSeg's settings in the quick modes: a 64² input (352 is the processor's) and one decoder batch for up to 256
queries; the tiny decoder at 352² in chunks of 8 dominates a smoke run."""


def quick_backend(baseline: str, cache_dir, config=None):
    """The quick modes' backend (RANDOM WEIGHTS, tiny test models): ``build_backend("random", size="tiny")`` with
    CLIPSeg at :data:`QUICK_CLIPSEG` and CLIP's text from one template per name (text features are excluded)."""
    from s2c2seg.models.clipseg import ClipSeg, ClipSegSettings, tiny_clipseg_config
    from s2c2seg.models.text import TextEncoder
    from s2c2seg.factories import build_backend
    from s2c2seg.segmenter import SegmenterConfig

    seg = build_backend("random", baseline=baseline, size="tiny", cache_dir=cache_dir,
                        config=config or SegmenterConfig())
    seg.clipseg = ClipSeg(config=tiny_clipseg_config(), cache_dir=cache_dir,
                          settings=ClipSegSettings(**QUICK_CLIPSEG))
    seg.text = TextEncoder(seg.clip, templates="raw", cache_dir=Path(cache_dir) / "text-raw")
    return seg


# ---------------------------------------------------------------------------------------------- results as data
def add_output_arguments(ap: argparse.ArgumentParser, quick: str | None = None) -> None:
    """``--out-dir`` (where the JSON result goes) and, with ``quick`` (its help text), ``--quick``."""
    if quick is not None:
        ap.add_argument("--quick", action="store_true", help=quick)
    ap.add_argument("--out-dir", type=Path, default=None,
                    help=f"folder of the JSON result (default: {RESULTS.relative_to(REPO)}; with --quick "
                         f"{QUICK_RESULTS.relative_to(REPO)})")


def parse_quick(ap: argparse.ArgumentParser, argv, quick_values: dict) -> argparse.Namespace:
    """``ap.parse_args(argv)``, with ``quick_values`` set over the parsed values when ``--quick`` is given."""
    args = ap.parse_args(argv)
    if args.quick:
        for k, v in quick_values.items():
            setattr(args, k, v)
    return args


def revision() -> dict:
    """``{"commit": HEAD, "dirty": uncommitted changes to tracked files}`` of the repository (None where git fails)."""
    def git(*a):
        return subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True, check=True).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def machine(device: str = "cpu") -> dict:
    """CPU model, cores, RAM (GiB), torch version and threads, the device the benchmark ran on, Python."""
    cpu = platform.processor() or platform.machine()
    info = Path("/proc/cpuinfo")
    if info.exists():
        names = [ln.split(":", 1)[1].strip() for ln in info.read_text().splitlines() if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024 ** 3
    except (ValueError, OSError, AttributeError):
        ram = None
    dev = device if not str(device).startswith("cuda") else f"{device} ({torch.cuda.get_device_name(device)})"
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gb": None if ram is None else round(ram, 1),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "device": dev,
            "python": platform.python_version()}


def target(figure: str, op: str, threshold: float, issue: int | None = None) -> dict:
    """A target: ``figure op threshold`` (``op`` in :data:`OPS`), from ``issue``."""
    if op not in OPS:
        raise ValueError(f"target op must be one of {sorted(OPS)}, got {op!r}")
    return {"figure": figure, "op": op, "threshold": threshold, "issue": issue}


def judged(targets: list[dict], figures: dict) -> list[dict]:
    """``targets`` with ``pass`` set from the figures (None where the figure is missing)."""
    out = []
    for t in targets:
        fig = figures.get(t["figure"])
        value = None if fig is None else fig["value"]
        out.append({**t, "pass": None if value is None else bool(OPS[t["op"]](value, t["threshold"]))})
    return out


def figure(value, unit: str = "") -> dict:
    """One figure of a result: a number and its unit."""
    return {"value": value, "unit": unit}


class Run:
    """One benchmark run: created before the work (load, date, command), :meth:`finish` writes the JSON result."""

    def __init__(self, name: str, argv: list[str] | None, out_dir: Path | None = None, quick: bool = False,
                 device: str = "cpu", script: str | None = None):
        argv = list(sys.argv[1:] if argv is None else argv)
        kept, skip = [], False
        for a in argv:  # where the result goes is not part of what ran
            if skip or a == "--out-dir":
                skip = not skip
                continue
            if not a.startswith("--out-dir="):
                kept.append(a)
        self.name, self.quick, self.device = name, quick, device
        self.out_dir = Path(out_dir) if out_dir is not None else (QUICK_RESULTS if quick else RESULTS)
        self.script = f"benchmarks/{script or name}.py"
        self.command = shlex.join([self.script, *kept])
        self.date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        self.load_before = [round(v, 2) for v in os.getloadavg()]

    def finish(self, title: str, label: str, figures: dict, targets: list[dict] = (),
               extra: dict | None = None) -> dict:
        """Write ``<out_dir>/<name>.json`` and return it (``extra``: more data, e.g. per-stage tables)."""
        result = {"schema": SCHEMA, "benchmark": self.name, "script": self.script,
                  "title": title, "label": label, "mode": "quick" if self.quick else "full", "command": self.command,
                  "revision": revision(), "machine": machine(self.device),
                  "load": {"before": self.load_before, "after": [round(v, 2) for v in os.getloadavg()]},
                  "date": self.date, "figures": figures, "targets": judged(list(targets), figures)}
        if extra:
            result["data"] = extra
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"{self.name}.json"
        path.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
        print(f"result: {path}")
        return result


REQUIRED = {"schema": int, "benchmark": str, "script": str, "title": str, "label": str, "mode": str,
            "command": (str, type(None)), "revision": dict, "machine": dict, "load": dict,
            "date": (str, type(None)), "figures": dict, "targets": list}
"""The keys of a result and their types (converted results add ``source``, ``recorded_in`` and ``note``)."""


def validate(result: dict, where: str = "result") -> dict:
    """``result`` itself if it is a well-formed benchmark result, else ValueError naming ``where`` and the key."""
    for key, kind in REQUIRED.items():
        if not isinstance(result.get(key), kind):
            raise ValueError(f"{where}: {key!r} missing or not {kind}; rerun the benchmark to rewrite it")
    if result["schema"] != SCHEMA or result["mode"] not in ("full", "quick"):
        raise ValueError(f"{where}: schema {result['schema']} / mode {result['mode']!r}, "
                         f"expected {SCHEMA} / full or quick")
    if "commit" not in result["revision"] or not {"before", "after"} <= set(result["load"]):
        raise ValueError(f"{where}: revision needs 'commit', load needs 'before' and 'after' (null where unknown)")
    for name, fig in result["figures"].items():
        if set(fig) != {"value", "unit"} or not isinstance(fig["value"], (int, float, type(None))):
            raise ValueError(f"{where}: figure {name!r} must be {{'value': number, 'unit': str}}, got {fig!r}")
    for t in result["targets"]:
        if t.get("op") not in OPS or t.get("figure") not in result["figures"] or "pass" not in t:
            raise ValueError(f"{where}: target {t!r} needs an op in {sorted(OPS)}, a known figure and 'pass'")
        if t["pass"] != judged([t], result["figures"])[0]["pass"]:
            raise ValueError(f"{where}: target {t['figure']!r} says pass={t['pass']}, its figure says otherwise")
    return result
