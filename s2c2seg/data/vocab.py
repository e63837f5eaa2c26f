"""Vocabularies: class names with synonyms, in the anchors' ``cls_<dataset>.txt`` format."""
from __future__ import annotations

import warnings
from dataclasses import InitVar, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch

__all__ = ["Vocabulary"]


@dataclass(frozen=True)
class Vocabulary:
    """C classes, each a tuple of one or more names (synonyms). Q = total number of names (queries).

    Every name belongs to one class: a name in two classes raises naming both (unless listed in ``shared``),
    a name repeated within one class warns (the repeat is kept as given), an empty name raises.
    """

    classes: tuple[tuple[str, ...], ...]
    variant: str = "custom"
    """Which name file this came from (e.g. ``sclip``, ``proxyclip``, ``corrclip``, ``custom``)."""
    shared: frozenset[str] = frozenset()
    """Names allowed in more than one class: an anchor's file kept as published (SCLIP's COCO-Object lists
    ``bed`` among the background words and as a class); any other shared name is an error."""
    lines: InitVar[Sequence[str] | None] = None
    """Where each class was read (e.g. ``mine.txt line 3``), named in the errors; ``class i`` when None."""

    def __post_init__(self, lines: Sequence[str] | None) -> None:
        object.__setattr__(self, "shared", frozenset(self.shared))
        if len(self.classes) == 0:
            raise ValueError("vocabulary is empty: give at least one class name")
        where = (lambda i: lines[i]) if lines is not None else (lambda i: f"class {i}")
        owner: dict[str, int] = {}
        for i, names in enumerate(self.classes):
            if len(names) == 0 or any(not isinstance(n, str) or not n.strip() for n in names):
                raise ValueError(f"vocabulary {where(i)} has an empty name: {names!r} (give every class at least "
                                 "one name, and no empty synonym or lone separator)")
            for n in names:
                first = owner.setdefault(n, i)
                if first == i:
                    continue
                if n not in self.shared:
                    raise ValueError(f"vocabulary: the name {n!r} is in two classes, {where(first)} "
                                     f"({self.classes[first][0]!r}) and {where(i)} ({names[0]!r}) (a name must "
                                     "belong to one class: remove it from one of them)")
            repeated = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) < len(names) else []
            if repeated:
                warnings.warn(f"vocabulary {where(i)} ({names[0]!r}) repeats the synonym(s) {repeated}; kept as "
                              "given (each repeat is one more query)", UserWarning, stacklevel=3)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_names(cls, names: Iterable[str | Sequence[str]], variant: str = "custom",
                   shared: Iterable[str] = ()) -> "Vocabulary":
        """From a list whose items are a name or a list of synonyms."""
        classes = tuple((n,) if isinstance(n, str) else tuple(n) for n in names)
        return cls(classes, variant, frozenset(shared))

    @classmethod
    def from_file(cls, path: str | Path, sep: str = ", ", variant: str | None = None,
                  shared: Iterable[str] = ()) -> "Vocabulary":
        """Read a name file: one class per line, synonyms on the line split on ``sep``.

        As in the anchors, lines are only stripped of their newline (SCLIP splits on ``', '``, ProxyCLIP and
        CorrCLIP on ``'; '``); empty lines are skipped. Errors name the file and line.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"vocabulary file not found: {path}")
        numbered = [(k, ln.rstrip("\r\n")) for k, ln in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)]
        numbered = [(k, ln) for k, ln in numbered if ln != ""]
        return cls(tuple(tuple(ln.split(sep)) for _, ln in numbered), variant or path.stem, frozenset(shared),
                   lines=[f"{path} line {k}" for k, _ in numbered])

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
