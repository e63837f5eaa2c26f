"""Helpers shared by the released-pipeline benchmarks: peak memory, the smoke-size protocol, the run header."""
from __future__ import annotations

import argparse
import os
import resource
from pathlib import Path

import torch

CLEAR_REFS = Path("/proc/self/clear_refs")
"""Writing ``5`` here resets the process's peak RSS (``VmHWM``) on Linux."""
STATUS = Path("/proc/self/status")


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
