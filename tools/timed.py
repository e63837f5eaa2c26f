"""Run a command and print its wall time and peak memory: ``python tools/timed.py LABEL -- CMD ...``.

The peak is the largest resident set of any one process of the command (``getrusage(RUSAGE_CHILDREN)``:
every descendant the command waited for, e.g. pytest-xdist's workers or papermill's kernels). The command's
exit status is passed on.
"""
from __future__ import annotations

import resource
import subprocess
import sys
import time


def wall_text(seconds: float) -> str:
    """``225.04`` -> ``"3 min 45.0 s"`` (whole minutes, then the seconds left)."""
    minutes, rest = divmod(float(seconds), 60.0)
    return f"{int(minutes)} min {rest:04.1f} s"


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") == 0 or argv.index("--") == len(argv) - 1:
        print("usage: python tools/timed.py LABEL -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    cut = argv.index("--")
    label, cmd = " ".join(argv[:cut]), argv[cut + 1:]
    t0 = time.perf_counter()
    status = subprocess.call(cmd)
    wall = time.perf_counter() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB -> GiB
    print(f"{label}: {wall_text(wall)} wall, peak RSS {peak_gb:.2f} GiB (largest process), "
          f"exit status {status}", flush=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
