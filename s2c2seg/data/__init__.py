"""Datasets (MMSeg on-disk layouts), vocabularies (name files) and protocols (per-dataset tables)."""
from .protocols import Protocol
from .sample import Sample
from .vocab import Vocabulary

__all__ = ["Protocol", "Sample", "Vocabulary"]
