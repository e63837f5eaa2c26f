"""Pictures of a :class:`~s2c2seg.segment.Segmentation`: the overlay with its legend and backend label (PIL only),
the index map (8 or 16 bit) and the explanation figure (matplotlib; ``docs/segment.md`` describes it)."""
from __future__ import annotations

import io

import numpy as np

from .plots import label_palette, labelled_title, overlay

__all__ = ["OVERLAY_ALPHA", "MAX_ROWS", "overlay_image", "labels_png", "png_bytes", "class_window_states",
           "explain_figure", "STATE_NAMES"]

OVERLAY_ALPHA = 0.55
"""Opacity of the class colours over the image."""
MAX_ROWS = 30
"""Classes the explanation figure shows at most (the kept ones first, by area, then the others by score)."""
STATE_NAMES = ("not a candidate", "candidate (cut by k_max)", "selected by CSS", "admitted by refinement")
"""What each cell of the per-window selection panel means (0-3)."""


def _palette(seg) -> np.ndarray:
    return label_palette(seg.run.get("dataset"), len(seg.classes))


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def overlay_image(seg):
    """The label map over the image with a legend of the classes present (name, area %) underneath, and the
    backend's label (``SIMULATED`` / ``RANDOM WEIGHTS``) drawn on the image itself when real weights were not
    used. A PIL image."""
    from PIL import Image, ImageDraw

    pal = _palette(seg)
    base = Image.fromarray(overlay(seg.image, seg.label_map, pal, OVERLAY_ALPHA))
    w, h = base.size
    size = max(11, min(24, w // 40))
    font = _font(size)
    present = sorted((c for c in seg.classes if c.area_percent > 0), key=lambda c: -c.area_percent)
    items = [(c, f"{c.name} {c.area_percent:.1f}%") for c in present]
    draw0 = ImageDraw.Draw(base)
    widths = [int(draw0.textlength(t, font=font)) + 2 * size for _, t in items]
    rows, x = [[]], 0
    for item, iw in zip(items, widths):
        if rows[-1] and x + iw > w:
            rows.append([])
            x = 0
        rows[-1].append((item, iw))
        x += iw
    line = int(size * 1.6)
    canvas = Image.new("RGB", (w, h + line * len(rows) + size // 2), (255, 255, 255))
    canvas.paste(base, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(rows):
        x, y = size // 2, h + size // 4 + r * line
        for (c, text), iw in row:
            colour = tuple(int(v) for v in pal[c.index])
            draw.rectangle([x, y + 2, x + size, y + size + 2], fill=colour, outline=(0, 0, 0))
            draw.text((x + int(size * 1.4), y), text, fill=(0, 0, 0), font=font)
            x += iw
    if seg.label:
        big = _font(max(14, min(40, w // 16)))
        box = draw.textbbox((0, 0), seg.label, font=big)
        pad = 6
        draw.rectangle([0, 0, box[2] + 2 * pad, box[3] + 2 * pad], fill=(0, 0, 0))
        draw.text((pad, pad), seg.label, fill=(255, 220, 0), font=big)
    return canvas


def png_bytes(image) -> bytes:
    """A PIL image as PNG bytes (no timestamp)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def labels_png(label_map: np.ndarray, num_classes: int) -> bytes:
    """The class indices as a PNG: 8-bit grey for up to 256 classes, else 16-bit."""
    from PIL import Image

    lab = np.asarray(label_map)
    if num_classes <= 256:
        return png_bytes(Image.fromarray(lab.astype(np.uint8), mode="L"))
    return png_bytes(Image.fromarray(lab.astype(np.uint16)))


# ---------------------------------------------------------------------------------------------- explanation
def class_window_states(explanation: dict, num_classes: int) -> np.ndarray:
    """(C, N) per class and window of a released explanation: 3 when one of its queries was admitted by the
    refinement, 2 selected by CSS, 1 a candidate that ``k_max`` cut, 0 otherwise (:data:`STATE_NAMES`)."""
    q2c = explanation["query_to_class"]
    out = np.zeros((num_classes, len(explanation["windows"])), dtype=np.int64)
    for n, w in enumerate(explanation["windows"]):
        for state, key in ((1, "candidates"), (2, "selected"), (3, "admitted")):
            for q in w[key]:
                out[q2c[q], n] = max(out[q2c[q], n], state)
    return out


def _class_weights(explanation: dict, num_classes: int) -> np.ndarray:
    """(C, N) per class the sum of its final queries' fusion weights on each window (paper: one column)."""
    q2c = explanation["query_to_class"]
    if explanation["kind"] == "paper":
        out = np.zeros((num_classes, 1))
        for q, wt in zip(explanation["csg"]["queries"], explanation["csg"]["weights"]):
            out[q2c[q], 0] += wt
        return out
    out = np.zeros((num_classes, len(explanation["windows"])))
    for n, w in enumerate(explanation["windows"]):
        for q, wt in zip(w["final"], w["fusion_weights"] or []):
            out[q2c[q], n] += wt
    return out


def _rows(seg) -> list[int]:
    kept = sorted((c for c in seg.classes if c.selected), key=lambda c: -c.area_percent)
    rest = sorted((c for c in seg.classes if not c.selected), key=lambda c: -float(c.scores.get("global", 0.0)))
    return [c.index for c in kept + rest][:MAX_ROWS]


def _table(ax, values: np.ndarray, rows: list[str], cols: list[str], title: str, cmap="viridis", fmt="{:.3g}",
           vmin=None, vmax=None, annotate=True, shown: np.ndarray | None = None):
    """A heatmap of ``values`` (rows x cols), each cell annotated with ``shown`` (default: ``values``)."""
    ax.imshow(values, aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xticks(range(len(cols)), cols, rotation=0)
    ax.set_title(title)
    if annotate and values.size <= 400:
        for (i, j), v in np.ndenumerate(values if shown is None else shown):
            ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=5, color="w")


def explain_figure(seg):
    """The explanation figure of one segmentation (``segment_image(..., explain=True)``): image with the sliding
    windows, the baseline and S2C2Seg overlays, the class scores, the per-window selection, the fusion weights."""
    from .plots import style

    with style():
        return _explain_figure(seg)


def _explain_figure(seg):
    import matplotlib.patches as mpatches
    from matplotlib.colors import ListedColormap

    from .plots import OKABE_ITO, class_legend, figure

    e = seg.explanation
    if e is None:
        raise ValueError("the segmentation has no explanation: call segment_image(..., explain=True)")
    c = len(seg.classes)
    pal = _palette(seg)
    rows = _rows(seg)
    names = [("● " if seg.classes[i].selected else "  ") + seg.classes[i].name for i in rows]
    released = e["kind"] == "released"
    title = (f"{seg.name}: why S2C2Seg ({e['preset']}) kept each class (● kept"
             + (f"; {len(rows)} of {c} classes shown)" if len(rows) < c else ")"))
    fig, ax = figure(2, 3, width="double", aspect=0.75, title=title, label=seg.label)
    h, w = seg.label_map.shape
    ax[0, 0].imshow(seg.image)
    if released:
        rh, rw = e["resized_hw"]
        for n, win in enumerate(e["windows"]):
            y1, y2, x1, x2 = win["box"]
            sy, sx = h / rh, w / rw
            colour = OKABE_ITO[n % len(OKABE_ITO)]
            ax[0, 0].add_patch(mpatches.Rectangle((x1 * sx, y1 * sy), (x2 - x1) * sx, (y2 - y1) * sy, fill=False,
                                                  lw=0.8, ec=colour))
            ax[0, 0].text(x1 * sx + 3, y1 * sy + 3, f"w{n}", color=colour, fontsize=6, va="top")
        ax[0, 0].set_title(f"image, {len(e['windows'])} sliding windows")
    else:
        ax[0, 0].set_title("image")
    if seg.baseline_map is not None:
        ax[0, 1].imshow(overlay(seg.image, seg.baseline_map, pal, OVERLAY_ALPHA))
    ax[0, 1].set_title(f"baseline ({seg.run['baseline']})")
    ax[0, 2].imshow(overlay(seg.image, seg.label_map, pal, OVERLAY_ALPHA))
    ax[0, 2].set_title(f"S2C2Seg ({e['preset']})")
    for a in ax[0]:
        a.set_axis_off()
    shown = sorted({int(v) for v in np.unique(seg.label_map)} | (
        {int(v) for v in np.unique(seg.baseline_map)} if seg.baseline_map is not None else set()))

    scores = np.array([[seg.classes[i].scores.get(k, np.nan) for k in ("global", "spatial", "confidence")]
                       for i in rows])
    span = np.nanmax(scores, 0) - np.nanmin(scores, 0)
    normed = (scores - np.nanmin(scores, 0)) / np.where(span > 0, span, 1)
    if released:
        alphas = [win["alpha"] for win in e["windows"]]
        a_text = f"α {min(alphas):.3f}–{max(alphas):.3f} over windows" if len(alphas) > 1 else f"α {alphas[0]:.3f}"
        s_title = f"class scores (window means); {a_text}"
    else:
        s_title = f"class scores; α {e['alpha']:.3f}"
    _table(ax[1, 0], normed, names, ["global", "spatial", "conf."], s_title, shown=scores)
    if released:
        states = class_window_states(e, c)[rows]
        cmap = ListedColormap(["#ffffff", "#bbbbbb", OKABE_ITO[4], OKABE_ITO[5]])
        _table(ax[1, 1], states, [seg.classes[i].name for i in rows], [f"w{n}" for n in range(states.shape[1])],
               f"selection per window (τ {e['tau']})", cmap=cmap, vmin=-0.5, vmax=3.5,
               annotate=False)
        handles = [mpatches.Patch(facecolor=col, edgecolor="k", lw=0.3, label=lab)
                   for col, lab in zip(cmap.colors, STATE_NAMES)]
        ax[1, 1].legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.08), fontsize=5, ncol=2,
                        frameon=False)
        coef = e["fusion"].get("coefficients")
        f_title = ("fusion weights w" + (f"\n{coef['global']:.3g}·G + {coef['local']:.3g}·L + "
                                          f"{coef['guided']:.3g}·L·w" if coef else f" ({e['fusion']['form']} form)"))
        cols = [f"w{n}" for n in range(len(e["windows"]))]
    else:
        union, subset = set(e["stage1_union"]), set(e["subset"])
        states = np.array([[2 * (i in union), 2 * (i in subset)] for i in rows])
        cmap = ListedColormap(["#ffffff", OKABE_ITO[4]])
        _table(ax[1, 1], states // 2, [seg.classes[i].name for i in rows], ["stage-1 union", "subset"],
               f"CSS (τ {e['tau']}, K ∈ [{e['k_min']}, {e['k_max']}])", cmap=cmap, vmin=0, vmax=1, annotate=False)
        f_title = f"CSG weights w ({e['csg']['mode']}, λ {e['csg']['lam']})"
        cols = ["w"]
    weights = _class_weights(e, c)[rows]
    _table(ax[1, 2], weights, [seg.classes[i].name for i in rows], cols, f_title, cmap="magma", fmt="{:.2f}",
           vmin=0, vmax=1)
    fig.subplots_adjust(hspace=0.45, wspace=0.7, left=0.12, right=0.98, top=0.9, bottom=0.1)
    class_legend(fig, shown, seg.class_names, pal, ncol=8, y=ax[0, 1].get_position().y0 - 0.005)
    if seg.label and seg.label not in fig._suptitle.get_text():
        fig.suptitle(labelled_title(fig._suptitle.get_text(), seg.label))
    return fig
