from importlib.metadata import version as _v

__version__ = _v("s2c2seg")

__all__ = ["segment_image"]


def __getattr__(name: str):
    """``s2c2seg.segment_image`` (:func:`s2c2seg.segment.segment_image`), imported on first use."""
    if name == "segment_image":
        from .segment import segment_image

        return segment_image
    raise AttributeError(f"module 's2c2seg' has no attribute {name!r}")
