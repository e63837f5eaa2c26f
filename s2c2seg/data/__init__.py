"""Datasets (MMSeg on-disk layouts), vocabularies (name files) and protocols (per-dataset tables)."""
from .datasets import DATASETS, Dataset, DatasetError, DatasetSpec, get_spec, load_dataset
from .names import NAME_VARIANTS, name_file, vocabulary
from .protocols import BASELINE_TABLE, PROTOCOLS, Protocol, get_protocol
from .sample import Sample
from .vocab import Vocabulary

__all__ = ["Protocol", "Sample", "Vocabulary", "DATASETS", "Dataset", "DatasetError", "DatasetSpec", "get_spec",
           "load_dataset", "NAME_VARIANTS", "name_file", "vocabulary", "BASELINE_TABLE", "PROTOCOLS",
           "get_protocol"]
