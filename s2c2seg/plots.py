"""Figure helpers: CVPR column sizes, colour-blind-safe palettes, label palettes, reproducible PDF + PNG.

Every figure saved through :func:`save_figure` is written twice (PDF with embedded TrueType / Type-42 fonts,
and PNG), carries no timestamp (so the bytes depend only on the content), and, when it was made from random
weights or the simulation, says so in its title (``label="SIMULATED"`` / ``"RANDOM WEIGHTS"``).
"""
from __future__ import annotations

import io
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

from .palettes import ade_palette, label_palette, voc_palette
from .store import atomic_write

__all__ = [
    "CVPR_SINGLE", "CVPR_DOUBLE", "OKABE_ITO", "SEQUENTIAL_CMAP", "DIVERGING_CMAP", "RC_PARAMS",
    "categorical", "voc_palette", "ade_palette", "label_palette", "colorize", "overlay",
    "labelled_title", "figure", "style", "use_style", "save_figure", "plot_label_maps", "bar_scores", "heatmap",
    "line_sweep", "METHOD_COLOURS", "method_colours", "class_legend", "banner", "group_coincident", "scatter_labelled",
]

CVPR_SINGLE = 3.25
"""Width in inches of one CVPR column."""
CVPR_DOUBLE = 6.875
"""Width in inches of a figure spanning both CVPR columns."""

OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000")
"""Okabe & Ito's colour-blind-safe qualitative palette (8 colours)."""
_TOL_MUTED = ("#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255",
              "#AA4499", "#DDDDDD")
"""Paul Tol's colour-blind-safe 'muted' palette, used after Okabe-Ito for more than 8 series."""
SEQUENTIAL_CMAP = "viridis"
"""Perceptually uniform, colour-blind-safe colour map for magnitudes (scores, probabilities, confusion)."""
DIVERGING_CMAP = "PuOr_r"
"""Colour-blind-safe diverging map for signed differences (e.g. confusion reduction)."""

RC_PARAMS: dict = {
    "pdf.fonttype": 42,  # embed TrueType (Type 42), not Type 3
    "ps.fonttype": 42,
    "font.size": 7,
    "axes.titlesize": 7,
    "axes.labelsize": 7,
    "xtick.labelsize": 6,
    "ytick.labelsize": 6,
    "legend.fontsize": 6,
    "figure.titlesize": 8,
    "figure.dpi": 100,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "svg.hashsalt": "s2c2seg",
    "axes.prop_cycle": None,  # filled below with the colour-blind-safe cycle
}


def categorical(n: int) -> list[str]:
    """``n`` colour-blind-safe colours (Okabe-Ito, then Tol muted, then repeating)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    base = list(OKABE_ITO) + list(_TOL_MUTED)
    return [base[i % len(base)] for i in range(n)]


def _cycler():
    from cycler import cycler

    return cycler(color=list(OKABE_ITO))


RC_PARAMS["axes.prop_cycle"] = _cycler()


def colorize(label: np.ndarray, palette: np.ndarray, ignore_index: int = 255,
             ignore_color: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) uint8 RGB; ``ignore_index`` pixels get ``ignore_color``."""
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"label must be (H, W), got shape {label.shape}")
    palette = np.asarray(palette, dtype=np.uint8)
    ignore = label == ignore_index
    valid = label[~ignore]
    if valid.size and (valid.min() < 0 or valid.max() >= len(palette)):
        raise ValueError(f"label values must lie in [0, {len(palette)}) or equal {ignore_index}")
    out = palette[np.where(ignore, 0, label).astype(np.int64)]
    out[ignore] = np.asarray(ignore_color, dtype=np.uint8)
    return out


def overlay(image: np.ndarray, label: np.ndarray, palette: np.ndarray, alpha: float = 0.55,
            ignore_index: int = 255) -> np.ndarray:
    """Blend the coloured label map over the RGB image; ignored pixels show the image alone."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    image = np.asarray(image)
    if image.shape[:2] != np.shape(label):
        raise ValueError(f"image {image.shape[:2]} and label {np.shape(label)} differ in size")
    col = colorize(label, palette, ignore_index).astype(np.float32)
    a = np.where(np.asarray(label) == ignore_index, 0.0, alpha)[..., None]
    return (image.astype(np.float32) * (1 - a) + col * a).round().astype(np.uint8)


# ---------------------------------------------------------------------------------------------- figures
def labelled_title(title: str, label: str | None) -> str:
    """``"SIMULATED — title"`` when ``label`` is set (e.g. by a non-pretrained backend), else ``title``."""
    if not label:
        return title
    if label in title:
        return title
    return f"{label} — {title}" if title else label


@contextmanager
def style() -> Iterator[None]:
    """Matplotlib settings for paper figures (small fonts, Type-42, colour-blind cycle), scoped to the block."""
    import matplotlib

    with matplotlib.rc_context(RC_PARAMS):
        yield


def use_style() -> None:
    """Apply :data:`RC_PARAMS` to matplotlib's global settings (what a notebook calls once at its top)."""
    import matplotlib

    matplotlib.rcParams.update(RC_PARAMS)


def _width(width: str | float) -> float:
    if width == "single":
        return CVPR_SINGLE
    if width == "double":
        return CVPR_DOUBLE
    if isinstance(width, (int, float)) and width > 0:
        return float(width)
    raise ValueError(f"width must be 'single', 'double' or a positive number of inches, got {width!r}")


def figure(nrows: int = 1, ncols: int = 1, *, width: str | float = "single", aspect: float = 0.75,
           title: str = "", label: str | None = None, squeeze: bool = False, **kwargs):
    """A figure at a CVPR column width (``aspect`` = height / width); returns ``(fig, axes)`` (2-D array).

    The title gets ``label`` ("SIMULATED" / "RANDOM WEIGHTS") in front of it.
    """
    import matplotlib.pyplot as plt

    w = _width(width)
    with style():
        fig, axes = plt.subplots(nrows, ncols, figsize=(w, w * aspect), squeeze=squeeze, **kwargs)
    text = labelled_title(title, label)
    if text:
        fig.suptitle(text, fontsize=RC_PARAMS["figure.titlesize"])
    return fig, axes


def save_figure(fig, path: str | Path, *, label: str | None = None, close: bool = False) -> dict[str, str]:
    """Write ``path``.pdf (Type-42 fonts) and ``path``.png without timestamps; return both paths.

    When ``label`` is given and the figure's title does not carry it yet, it is put in the title first.
    """
    import matplotlib
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.suffix in (".pdf", ".png"):
        path = path.with_suffix("")
    path.parent.mkdir(parents=True, exist_ok=True)
    if label:
        current = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) is not None else ""
        if label not in current:
            fig.suptitle(labelled_title(current, label), fontsize=RC_PARAMS["figure.titlesize"])
    out = {"pdf": str(path.with_suffix(".pdf")), "png": str(path.with_suffix(".png"))}
    with matplotlib.rc_context(RC_PARAMS):  # rendered in memory, then written atomically (store.atomic_write)
        for fmt, metadata in (("pdf", {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": "s2c2seg"}),
                              ("png", {"Software": None})):
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, metadata=metadata)
            atomic_write(out[fmt], buf.getvalue())
    if close:
        plt.close(fig)
    return out


# ---------------------------------------------------------------------------------------------- plot helpers
def plot_label_maps(image: np.ndarray, maps: Mapping[str, np.ndarray], class_names: Sequence[str], *,
                    palette: np.ndarray, title: str = "", label: str | None = None,
                    width: str | float = "double", alpha: float = 0.55, ignore_index: int = 255,
                    max_legend: int = 12):
    """The image, then one overlay per entry of ``maps`` (name -> (H, W) labels), with a legend of the classes
    shown (at most ``max_legend``, by area). Returns the figure."""
    import matplotlib.patches as mpatches

    n = 1 + len(maps)
    h, w = image.shape[:2]
    fig, axes = figure(1, n, width=width, aspect=(h / w) / n * 1.35, title=title, label=label)
    axes = axes[0]
    axes[0].imshow(image)
    axes[0].set_title("image")
    counts: dict[int, int] = {}
    for ax, (name, lab) in zip(axes[1:], maps.items()):
        lab = np.asarray(lab)
        ax.imshow(overlay(image, lab, palette, alpha, ignore_index))
        ax.set_title(name)
        ids, c = np.unique(lab[lab != ignore_index], return_counts=True)
        for i, k in zip(ids.tolist(), c.tolist()):
            counts[i] = counts.get(i, 0) + k
    for ax in axes:
        ax.set_axis_off()
    shown = sorted(counts, key=lambda i: -counts[i])[:max_legend]
    handles = [mpatches.Patch(color=np.asarray(palette[i]) / 255.0,
                              label=class_names[i] if i < len(class_names) else str(i)) for i in shown]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), frameon=False,
                   fontsize=RC_PARAMS["legend.fontsize"], bbox_to_anchor=(0.5, -0.08))
    return fig


def bar_scores(ax, values: Sequence[float], names: Sequence[str], *, highlight: Sequence[int] = (),
               top: int | None = None, title: str = "", color: str = OKABE_ITO[4],
               highlight_color: str = OKABE_ITO[5], horizontal: bool = True):
    """Bar chart of one score per class (optionally the ``top`` largest only); ``highlight`` indices in another
    colour (e.g. the selected subset or the GT classes)."""
    values = np.asarray(values, dtype=float)
    if len(values) != len(names):
        raise ValueError(f"values ({len(values)}) and names ({len(names)}) differ in length")
    order = np.argsort(-values, kind="stable")
    if top is not None:
        order = order[:top]
    hl = set(int(i) for i in highlight)
    cols = [highlight_color if int(i) in hl else color for i in order]
    pos = np.arange(len(order))
    if horizontal:
        ax.barh(pos, values[order], color=cols)
        ax.set_yticks(pos, [names[i] for i in order])
        ax.invert_yaxis()
    else:
        ax.bar(pos, values[order], color=cols)
        ax.set_xticks(pos, [names[i] for i in order], rotation=90)
    if title:
        ax.set_title(title)
    return order


def heatmap(ax, matrix: np.ndarray, row_names: Sequence[str], col_names: Sequence[str], *,
            cmap: str = SEQUENTIAL_CMAP, vmin: float | None = None, vmax: float | None = None,
            annotate: bool = False, fmt: str = "{:.2f}", title: str = "", colorbar: bool = True):
    """A labelled matrix image (rows = GT classes for confusion matrices)."""
    matrix = np.asarray(matrix, dtype=float)
    if matrix.shape != (len(row_names), len(col_names)):
        raise ValueError(f"matrix {matrix.shape} does not match {len(row_names)} rows x {len(col_names)} cols")
    im = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.set_xticks(np.arange(len(col_names)), col_names, rotation=90)
    ax.set_yticks(np.arange(len(row_names)), row_names)
    if annotate:
        mid = np.nanmean(matrix) if vmax is None else (vmax + (vmin or 0)) / 2
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                v = matrix[i, j]
                if np.isfinite(v):
                    ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=5,
                            color="white" if v < mid else "black")
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    return im


def line_sweep(ax, x: Sequence[float], series: Mapping[str, Sequence[float]], *, xlabel: str = "",
               ylabel: str = "mIoU", title: str = "", marker: str = "o", default: float | None = None,
               legend: bool = True):
    """One line per series over a swept parameter; ``default`` draws a dashed vertical line at the paper value."""
    cols = categorical(len(series))
    for c, (name, ys) in zip(cols, series.items()):
        ax.plot(list(x), list(ys), marker=marker, markersize=3, linewidth=1, color=c, label=name)
    if default is not None:
        ax.axvline(default, color="0.5", linestyle="--", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if legend and len(series) > 1:
        ax.legend(frameon=False)
    ax.grid(True, linewidth=0.3, alpha=0.5)


# ---------------------------------------------------------------------------------------------- shared looks
METHOD_COLOURS: dict[str, str] = {
    "baseline": "#999999",        # grey: the reference everything is measured against
    "oracle": OKABE_ITO[7],       # black: the upper bound
    "s2c2seg": OKABE_ITO[5],      # vermillion: the full method (paper reading), in every notebook
    "category_aware": OKABE_ITO[5],  # the same point, named by its fusion mode in 03's fusion figure
    "released": OKABE_ITO[4],     # blue: the authors' released pipeline
    "released++": OKABE_ITO[6],   # reddish purple: its journal extension
}
"""Fixed colours of the experiment points (:mod:`s2c2seg.experiments` keys) that recur across figures
(baseline grey, full method vermillion, oracle black, the released presets blue / purple), so a colour means
the same thing in every figure of a notebook."""


def method_colours(names: Sequence[str]) -> dict[str, str]:
    """``{name: colour}``: :data:`METHOD_COLOURS` where it names one, the remaining colour-blind-safe colours
    (never grey, black or vermillion) for the others, in order."""
    reserved = set(METHOD_COLOURS.values())
    free = [c for c in categorical(len(names) + len(reserved)) if c not in reserved]
    out, k = {}, 0
    for n in names:
        if n in METHOD_COLOURS:
            out[n] = METHOD_COLOURS[n]
        else:
            out[n] = free[k % len(free)]
            k += 1
    return out


def class_legend(fig, class_ids: Sequence[int], class_names: Sequence[str], palette: np.ndarray, *,
                 ncol: int = 6, y: float = -0.02):
    """A legend of label-overlay colours under the figure (one patch per class id)."""
    import matplotlib.patches as mpatches

    handles = [mpatches.Patch(color=np.asarray(palette[i]) / 255.0,
                              label=class_names[i] if i < len(class_names) else str(i)) for i in class_ids]
    if handles:
        fig.legend(handles=handles, loc="upper center", ncol=min(ncol, len(handles)), frameon=False,
                   fontsize=RC_PARAMS["legend.fontsize"], bbox_to_anchor=(0.5, y))
    return handles


def banner(session, datasets: Sequence[str] | None = None, n_images: int | None = None) -> str:
    """The session's banner, naming what the notebook ran: with ``datasets``, every dataset (and the images
    per dataset) instead of the first session's one."""
    text = session.banner()
    if not datasets:
        return text
    one = f"data: {session.dataset_name}, {session.data_source}; {len(session)} image(s)"
    many = (f"data: {len(datasets)} dataset(s) ({', '.join(datasets)}), {session.data_source}; "
            f"{n_images if n_images is not None else len(session)} image(s) per dataset")
    if one not in text:
        raise ValueError(f"banner {text!r} does not name its data as expected ({one!r}); update plots.banner")
    return text.replace(one, many)


def group_coincident(points: Mapping[str, tuple[float, float]], decimals: int = 1) -> dict[tuple, list[str]]:
    """Group names whose (x, y) agree to ``decimals``: ``{(x, y): [names...]}`` (one marker per group, so no
    point hides under another)."""
    out: dict[tuple, list[str]] = {}
    for name, (x, y) in points.items():
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        out.setdefault((round(float(x), decimals), round(float(y), decimals)), []).append(name)
    return out


MIN_LABEL_GAP = 0.09
"""Smallest vertical gap, in axes fraction, between two point labels of :func:`scatter_labelled`."""


def scatter_labelled(ax, points: Mapping[str, tuple[float, float]], colours: Mapping[str, str], *,
                     decimals: int = 1) -> dict[tuple, list[str]]:
    """One marker per group of coincident points (:func:`group_coincident`), each labelled with every name
    it stands for, labels stacked in a column right of the points (never on top of each other) and joined to
    their point by a thin line. A group is drawn in the colour of its first name that has a fixed colour
    (:data:`METHOD_COLOURS`), else of its first name. Returns the groups."""
    groups = group_coincident(points, decimals)
    if not groups:
        ax.text(0.5, 0.5, "no finite points", ha="center", va="center", transform=ax.transAxes)
        return groups
    xs = [x for x, _ in groups]
    ys = [y for _, y in groups]
    span = (max(ys) - min(ys)) or 1.0
    lo = min(ys) - 0.1 * span
    order = sorted(groups, key=lambda k: k[1])
    frac = [(y - lo) / (1.2 * span) for _, y in order]
    placed: list[float] = []
    for f in frac:
        placed.append(max(f, placed[-1] + MIN_LABEL_GAP) if placed else f)
    shift = max(0.0, placed[-1] - 0.95)
    placed = [p - shift for p in placed]
    for (x, y), f in zip(order, placed):
        names = groups[(x, y)]
        colour = next((colours[n] for n in names if n in METHOD_COLOURS), colours[names[0]])
        ax.scatter(x, y, color=colour, s=14, zorder=3, edgecolor="white", linewidth=0.4)
        ax.annotate(", ".join(names), (x, y), xytext=(1.03, f), textcoords="axes fraction", va="center",
                    fontsize=5, color=colour, annotation_clip=False,
                    arrowprops={"arrowstyle": "-", "color": "0.6", "linewidth": 0.4})
    ax.set_ylim(lo, lo + 1.2 * span)
    if len(set(xs)) == 1:
        ax.set_xlim(xs[0] - 5, xs[0] + 5)
    return groups
