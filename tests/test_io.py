"""Every image kind loads as (H, W, 3) uint8 RGB; bad files raise naming the path."""
import numpy as np
import pytest
from PIL import Image

from s2c2seg.io import ImageLoadError, load_image, load_label


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (12, 17, 3), dtype=np.uint8)


def _check(arr, h=12, w=17):
    assert arr.shape == (h, w, 3) and arr.dtype == np.uint8 and arr.flags["C_CONTIGUOUS"]


def test_rgb_png_roundtrip(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    _check(out)
    assert (out == rgb).all()


def test_grayscale(tmp_path, rgb):
    g = rgb[..., 0]
    Image.fromarray(g, mode="L").save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    _check(out)
    assert (out == g[..., None]).all()


def test_rgba_drops_alpha(tmp_path, rgb):
    a = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    Image.fromarray(a, mode="RGBA").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    _check(out)
    assert (out == rgb).all()


def test_gray_alpha(tmp_path, rgb):
    Image.fromarray(rgb[..., 0], mode="L").convert("LA").save(tmp_path / "la.png")
    out = load_image(tmp_path / "la.png")
    _check(out)
    assert (out == rgb[..., :1]).all()


def test_palette(tmp_path, rgb):
    p = Image.fromarray(rgb).quantize(colors=16)
    p.save(tmp_path / "p.png")
    out = load_image(tmp_path / "p.png")
    _check(out)
    assert (out == np.asarray(p.convert("RGB"))).all()
    p.info["transparency"] = 0
    p.save(tmp_path / "pt.png", transparency=0)
    _check(load_image(tmp_path / "pt.png"))


def test_16bit(tmp_path):
    v = np.arange(12 * 17, dtype=np.uint16).reshape(12, 17) * 300
    Image.fromarray(v).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    out = load_image(tmp_path / "d.png")
    _check(out)
    assert (out[..., 1] == (v >> 8)).all()


def test_cmyk(tmp_path, rgb):
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", quality=100)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    out = load_image(tmp_path / "c.jpg")
    _check(out)
    assert np.abs(out.astype(int) - rgb).mean() < 20  # JPEG-lossy, but the same picture


def test_exif_orientation(tmp_path, rgb):
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "o.jpg", exif=exif, quality=100)
    out = load_image(tmp_path / "o.jpg")
    assert out.shape == (17, 12, 3)


def test_missing_and_corrupt(tmp_path, rgb):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "bad.jpg").write_bytes(b"not an image at all")
    with pytest.raises(ImageLoadError, match="bad.jpg"):
        load_image(tmp_path / "bad.jpg")
    Image.fromarray(rgb).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="trunc.png"):
        load_image(tmp_path / "trunc.png")


def test_load_label_keeps_values(tmp_path):
    lab = (np.arange(12 * 17).reshape(12, 17) % 21).astype(np.uint8)
    lab[0, 0] = 255
    p = Image.fromarray(lab, mode="P")
    p.putpalette([i % 256 for i in range(768)][::-1])
    p.save(tmp_path / "l.png")
    out = load_label(tmp_path / "l.png")
    assert out.dtype == np.int64 and (out == lab).all()
    Image.fromarray(lab, mode="L").save(tmp_path / "g.png")
    assert (load_label(tmp_path / "g.png") == lab).all()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ImageLoadError, match="rgb.png"):
        load_label(tmp_path / "rgb.png")
    with pytest.raises(FileNotFoundError, match="none.png"):
        load_label(tmp_path / "none.png")
