"""Run a Python script in a subprocess under a 4 GiB writable address-space cap (issue 21's must-show).

The torch build here maps ~3.2 GB of CUDA libraries and cv2 ~0.4 GB more, read-only or executable, which hold no
data, so a literal 4 GiB ``RLIMIT_AS`` cannot even import torch. :data:`CAP_PREAMBLE` imports the libraries, sums
their file-backed non-writable mappings from ``/proc/self/maps`` and sets the cap to 4 GiB plus that sum:
everything the run can write to counts against the 4 GiB."""
from __future__ import annotations

import subprocess
import sys

CAP_MB = 4096
"""Writable address space of a capped run, MiB."""

CAP_PREAMBLE = f"""
import resource
import cv2, torch  # the libraries' mappings first, then the cap
mapped = 0
for line in open("/proc/self/maps"):
    parts = line.split()
    lo, hi = (int(v, 16) for v in parts[0].split("-"))
    if len(parts) > 5 and parts[5].startswith("/") and "w" not in parts[1]:
        mapped += hi - lo
cap = {CAP_MB} * 2**20 + mapped
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
"""


def run_capped(script: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """``script`` after :data:`CAP_PREAMBLE` in a fresh interpreter; its output captured as text."""
    return subprocess.run([sys.executable, "-c", CAP_PREAMBLE + script], capture_output=True, text=True,
                          timeout=timeout, check=False)
