"""Datasets (MMSeg on-disk layouts), vocabularies (name files) and protocols (per-dataset tables)."""
from .vocab import Vocabulary

__all__ = ["Vocabulary"]
