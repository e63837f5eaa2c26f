"""Vocabularies: class names with synonyms, in the anchors' ``cls_<dataset>.txt`` format."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch

__all__ = ["Vocabulary"]


@dataclass(frozen=True)
class Vocabulary:
    """C classes, each a tuple of one or more names (synonyms). Q = total number of names (queries)."""

    classes: tuple[tuple[str, ...], ...]
    variant: str = "custom"
    """Which name file this came from (e.g. ``sclip``, ``proxyclip``, ``corrclip``, ``custom``)."""

    def __post_init__(self) -> None:
        if len(self.classes) == 0:
            raise ValueError("vocabulary is empty: give at least one class name")
        for i, names in enumerate(self.classes):
            if len(names) == 0 or any(not isinstance(n, str) or not n.strip() for n in names):
                raise ValueError(f"vocabulary class {i} has an empty name: {names!r}")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_names(cls, names: Iterable[str | Sequence[str]], variant: str = "custom") -> "Vocabulary":
        """From a list whose items are a name or a list of synonyms."""
        classes = tuple((n,) if isinstance(n, str) else tuple(n) for n in names)
        return cls(classes, variant)

    @classmethod
    def from_file(cls, path: str | Path, sep: str = ", ", variant: str | None = None) -> "Vocabulary":
        """Read a name file: one class per line, synonyms on the line split on ``sep``.

        As in the anchors, lines are only stripped of their newline (SCLIP splits on ``', '``, ProxyCLIP and
        CorrCLIP on ``'; '``).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"vocabulary file not found: {path}")
        lines = [ln.rstrip("\r\n") for ln in path.read_text(encoding="utf-8").splitlines()]
        lines = [ln for ln in lines if ln != ""]
        return cls(tuple(tuple(ln.split(sep)) for ln in lines), variant or path.stem)

    # ------------------------------------------------------------------ views
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def names(self) -> list[str]:
        """One display name per class (its first synonym)."""
        return [c[0] for c in self.classes]

    @property
    def queries(self) -> list[str]:
        """All names, class by class (Q entries)."""
        return [n for c in self.classes for n in c]

    @property
    def query_to_class(self) -> torch.Tensor:
        """(Q,) int64 class index of each query."""
        return torch.tensor([i for i, c in enumerate(self.classes) for _ in c], dtype=torch.long)

    def to_json(self) -> dict:
        return {"variant": self.variant, "classes": [list(c) for c in self.classes]}
