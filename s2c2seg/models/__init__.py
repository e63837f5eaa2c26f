"""Everything that holds weights: CLIP (open_clip), text embeddings, dense baselines, VFMs, CLIPSeg, CorrCLIP."""
from .baselines import BASELINES, DenseOutput, baseline_class, make_baseline
from .clip import ClipHandle, load_clip, tiny_clip_config
from .offline import ModelUnavailableError
from .text import TextEncoder
from .vfm import VFMHandle, load_vfm, tiny_vfm_config

__all__ = ["BASELINES", "DenseOutput", "baseline_class", "make_baseline", "ClipHandle", "load_clip",
           "tiny_clip_config", "ModelUnavailableError", "TextEncoder", "VFMHandle", "load_vfm", "tiny_vfm_config"]
