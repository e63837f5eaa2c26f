"""The simulation backend: a controlled world with a known ground truth and one dial per failure mode.

SIMULATED. Nothing produced here is evidence for the paper's numbers: it is a teaching and testing
instrument that makes each scoring term of CSS / CSG visible, offline, without model weights.

Pieces
------
* :class:`SimConfig` — every effect is one named dial with a documented default (``EFFECT_DIALS``);
  :meth:`SimConfig.ideal` turns every effect off.
* :class:`CategoryStructure` — which categories are near-synonyms ("similar": their text embeddings overlap)
  and which co-occur, as two symmetric sparse neighbour lists of weights in [0, 1] (:class:`Neighbours`; no
  (C, C) matrix is ever built, so 20,000 classes cost megabytes); generated from a seed
  (:meth:`CategoryStructure.generate`) or built from a similarity matrix the user supplies
  (:meth:`CategoryStructure.from_similarity`, e.g. computed from real CLIP text embeddings with
  :func:`similarity_from_embeddings` and saved with ``numpy.save``).
* :func:`make_scene` — a label map over a real vocabulary (a dataset key such as ``"voc21"``, a
  :class:`~s2c2seg.data.vocab.Vocabulary`, a list of names, or a class count), with ``n_present`` categories
  drawn with a bias towards co-occurring ones, region shapes, an optional background class; the image is the
  label map painted with the dataset palette plus noise. Reproducible from ``(seed, index)``.
* :class:`SimDataset` — the same interface as the real datasets (``len``, ``sample(i)``, iteration, ``.ids``,
  ``.spec`` with ``num_classes``, ``background``, ``reduce_zero_label=False``).
* :class:`SimBackend` — ``encode(sample, vocab, protocol) -> FeatureBundle`` exactly like the real
  segmenter (dense logits per sliding-window crop on a patch grid, global cosines, CLIPSeg maps and means),
  and ``describe()`` (``backend="sim"``, ``label="SIMULATED"``, the dials). **It reads the scene's ground
  truth from ``sample.label``**: that is what a simulation is. Downstream code cannot tell it apart from a
  real backend. With ``cfg.released_sources`` it also fills the released pipeline's per-window sources
  (``window_local``, ``window_global``, ``window_pad``, ``input_image``).

Modules: :mod:`.config` (the dials), :mod:`.structure` (category structure), :mod:`.scenes` (scenes and the
dataset), :mod:`.backend` (the sources and the backend).

The world, per image (M_c = one-hot map of class c, presence_c ∈ [0, 1], W_sim / W_co the structure):

* global cosine of a query of class c: ``floor + span·(presence_c + leak_sim·max_c' W_sim[c,c']·presence_c'
  + leak_co·max_c' W_co[c,c']·presence_c') + bias_c + noise`` (:func:`global_scores`);
* dense cosine: ``floor + span·(B_c + leak_sim·Σ_c' W_sim[c,c']·B_c' + leak_co·Σ_c' W_co[c,c']·B_c') + bias_c``
  with ``B = blur(M)``, resized to the protocol's short side, cut into its crops and area-pooled to a patch
  grid, plus per-cell noise (:func:`dense_class_maps`, :meth:`SimBackend.encode`);
* CLIPSeg map: ``sigmoid(gain·(keep_c·B'_c + fp_c·F_c + noise − 0.5))`` with ``B'`` a (lightly) blurred
  one-hot, ``keep_c`` weakened by misses and ``F_c`` a false-positive support (:func:`clipseg_class_maps`).
"""
from __future__ import annotations

from .backend import (FP_BLOB_STRENGTH, QUERY_CHUNK, SimBackend, clipseg_activation, clipseg_class_maps,
                      dense_class_maps, gaussian_blur, global_scores)
from .config import EFFECT_DIALS, IGNORE_INDEX, LABEL, SHAPES, WINDOW_STORAGES, SimConfig
from .scenes import SimDataset, SimSpec, make_scene, resolve_vocabulary
from .structure import CategoryStructure, Neighbours, load_matrix, similarity_from_embeddings

__all__ = [
    "LABEL", "EFFECT_DIALS", "SHAPES", "WINDOW_STORAGES", "IGNORE_INDEX", "SimConfig", "CategoryStructure",
    "Neighbours", "SimSpec", "SimDataset", "SimBackend", "make_scene", "resolve_vocabulary",
    "similarity_from_embeddings", "load_matrix", "global_scores", "dense_class_maps", "clipseg_class_maps",
    "clipseg_activation", "gaussian_blur", "QUERY_CHUNK", "FP_BLOB_STRENGTH",
]
