"""Label palettes: the PASCAL VOC colour map and ADE20K's published 150 colours (data, no plotting)."""
from __future__ import annotations

import numpy as np

__all__ = ["voc_palette", "ade_palette", "label_palette"]


def voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map: class ``i``'s RGB bits are ``i``'s bits interleaved, high bit first. (n, 3) uint8."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    out = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out[i] = (r, g, b)
    return out


# ADE20K's 150-colour table (the dataset's published colour coding, in class order), as hex RGB.
_ADE_HEX = (
    "787878b4787806e6e650323204c8037878508c8c8ccc05ffe6e6e604fa07e005ffebff0796053d78784608ff33ff0652"
    "8fff8cccff04ff3307cc46030066c83de6faff06330b66ffff0747ff09e00907e6dcdcdcff095c7009ff08ffd607ffe0"
    "ffb8060aff47ff290a07ffffe0ff086608ffff3d06ffc207ff7a0800ff14ff0829ff05990633ffeb0cffa0961400a3ff"
    "8c8c8cfa0a0f14ff001fff00ff1f00ffe00099ff000000ffff470000ebff00adff1f00ff0bc8c8ff520000fff5003dff"
    "00ff7000ff85ff0000ffa300ff6600c2ff00008fff33ff000052ff00ff2900ffad0a00ffadff0000ff99ff5c00ff00ff"
    "ff00f5ff0066ffad00ff0014ffb8b8001fff00ff3d0047ffff00cc00ffc200ff52000aff0070ff3300ff00c2ff007aff"
    "00ffa3ff990000ff0aff70008fff005200ffa3ff00ffeb0008b8aa8500ff00ff5cb800ffff001f00b8ff00d6ffff0070"
    "5cff0000e0ff70e0ff46b8a0a300ff9900ff47ff00ff00a3ffcc00ff008f00ffeb85ff00ff00ebf500ffff007afff500"
    "0abed4d6ff0000ccff1400ffffff000099ff0029ff00ffcc2900ff29ff00ad00ff00f5ff4700ff7a00ff00ffb8005cff"
    "b8ff000085ffffd60019c2c266ff005c00ff"
)


def ade_palette() -> np.ndarray:
    """ADE20K's standard 150-colour palette (class order of ADE20K-150). (150, 3) uint8."""
    return np.frombuffer(bytes.fromhex(_ADE_HEX), dtype=np.uint8).reshape(150, 3).copy()


def label_palette(dataset: str | None, num_classes: int) -> np.ndarray:
    """The palette for label overlays: ADE's for ``ade*`` datasets (150 classes), VOC's colour map otherwise.

    Always at least ``num_classes`` rows (the VOC map extends beyond 150 classes).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if dataset and dataset.lower().startswith("ade") and num_classes <= 150:
        return ade_palette()
    return voc_palette(max(256, num_classes))
