"""One plotting style for the whole course, and the plots every lecture needs.

The palette is Okabe–Ito (safe for the common kinds of colour blindness); figures
have an opaque white background, so they stay readable in dark JupyterLab themes
and on GitHub's dark mode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

__all__ = [
    "PALETTE",
    "use_course_style",
    "register_cjk_font",
    "plot_losses",
    "running_mean",
    "show_images",
    "tile_images",
    "image_rows",
    "plot_histograms",
    "plot_heatmap",
]

# Okabe & Ito (2008), "Color Universal Design"; black last.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]


def use_course_style() -> None:
    """Apply the course's matplotlib style (called on ``import utils``)."""
    mpl.rcParams.update(
        {
            "axes.prop_cycle": mpl.cycler(color=PALETTE),
            "figure.figsize": (6.4, 4.0),
            "figure.dpi": 80,
            "savefig.dpi": 120,
            "figure.facecolor": "white",
            "savefig.facecolor": "white",
            "axes.facecolor": "white",
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titleweight": "bold",
            "legend.frameon": False,
            "image.cmap": "viridis",
            "font.size": 11,
            "figure.constrained_layout.use": True,
        }
    )
    register_cjk_font()


CJK_FONT_FILE = Path(__file__).resolve().parent / "fonts" / "NotoSansCJKsc-Regular-subset.otf"
CJK_FONT_NAME = "Noto Sans CJK SC"


def register_cjk_font() -> str:
    """Make Chinese characters render in every figure, with no system font installed.

    Registers the course's subset of Noto Sans CJK SC (shipped in ``utils/fonts``) and
    puts it after DejaVu Sans in ``font.family``: Latin text and numbers keep the default
    font, and matplotlib falls back to the CJK font for each character DejaVu lacks.
    Returns the family name.
    """
    from matplotlib import font_manager

    if not any(f.fname == str(CJK_FONT_FILE) for f in font_manager.fontManager.ttflist):
        font_manager.fontManager.addfont(str(CJK_FONT_FILE))
    mpl.rcParams["font.family"] = ["DejaVu Sans", CJK_FONT_NAME]
    # The subset has one weight: bold titles use it for Chinese characters. Keep matplotlib
    # from logging "Failed to find font weight bold" into every notebook that has a title.
    import logging

    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    return CJK_FONT_NAME


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def running_mean(values, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each step (fewer at the start): same length as
    ``values``, so a smoothed curve lines up with the raw one step by step."""
    values = _to_numpy(values).ravel().astype(float)
    if window < 1:
        raise ValueError(f"window must be a positive number of steps, got {window}")
    csum = np.concatenate([[0.0], np.cumsum(values)])
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (csum[ends] - csum[starts]) / (ends - starts)


def plot_losses(
    curves: Mapping[str, Sequence[float]],
    *,
    logy: bool = False,
    smooth: int | None = None,
    xlabel: str = "step",
    ylabel: str = "loss",
    title: str | None = None,
    ax=None,
):
    """Plot one or more loss curves, labelled by the mapping's keys.

    ``smooth=k`` draws the running mean over the last k steps (see ``running_mean``): the
    loss of single mini-batches is noisy, and the trend is what matters.
    """
    if ax is None:
        _, ax = plt.subplots()
    for label, values in curves.items():
        values = _to_numpy(values).ravel()
        if smooth:
            values = running_mean(values, smooth)
        ax.plot(np.arange(1, len(values) + 1), values, label=label, lw=1.8)
    if logy:
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel)
    if title:
        ax.set_title(title)
    if len(curves) > 1:
        ax.legend()
    return ax


def show_images(
    images,
    labels: Sequence | None = None,
    *,
    ncols: int = 8,
    cmap: str = "gray",
    size: float = 1.3,
    title: str | None = None,
):
    """Show a grid of images: ``[n, H, W]``, ``[n, 1, H, W]``, ``[n, H, W, 3]`` or ``[n, 3, H, W]``."""
    images = _to_numpy(images)
    if images.ndim == 4 and images.shape[1] in (1, 3) and images.shape[-1] not in (1, 3):
        images = images.transpose(0, 2, 3, 1)  # channels last for imshow
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    n = len(images)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size * ncols, size * nrows + (0.3 if title else 0)), squeeze=False
    )
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap=cmap if images[i].ndim == 2 else None)
            if labels is not None:
                ax.set_title(str(labels[i]), fontsize=9, fontweight="normal")
    if title:
        fig.suptitle(title)
    return fig


def tile_images(
    images, ncols: int, *, shape: tuple[int, int] = (28, 28), fill: float = 1.0
) -> np.ndarray:
    """Arrange ``n`` images (``[n, H*W]`` or ``[n, H, W]``) into one ``[rows*H, ncols*W]`` array.

    Row by row; the cells after the last image keep the value ``fill``. Show the result with
    one ``imshow`` (much faster than one axes per image for a large grid).
    """
    h, w = shape
    images = _to_numpy(images).reshape(-1, h, w)
    nrows = int(np.ceil(len(images) / ncols))
    canvas = np.full((nrows * h, ncols * w), fill, dtype=float)
    for i, image in enumerate(images):
        r, c = divmod(i, ncols)
        canvas[r * h : (r + 1) * h, c * w : (c + 1) * w] = image
    return canvas


def image_rows(rows: Mapping[str, object], *, size: float = 1.0, shape: tuple[int, int] = (28, 28)):
    """One titled row of grey images (values in [0, 1]) per entry of ``{title: images}``."""
    n = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(
        len(rows), n, figsize=(size * n, size * len(rows) + 0.2), squeeze=False
    )
    for r, (title, images) in enumerate(rows.items()):
        images = _to_numpy(images).reshape(-1, *shape)
        for c in range(n):
            axes[r, c].axis("off")
            if c < len(images):
                axes[r, c].imshow(images[c], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[r, 0].set_title(title, fontsize=10, loc="left", fontweight="normal")
    return fig


def plot_histograms(
    samples: Mapping[str, object],
    *,
    bins: int = 50,
    ncols: int | None = None,
    sharex: bool = False,
    xlabel: str | None = None,
    title: str | None = None,
):
    """One histogram panel per entry of ``samples`` (e.g. activations per layer)."""
    ncols = ncols or len(samples)
    nrows = int(np.ceil(len(samples) / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(2.6 * ncols, 2.2 * nrows), sharex=sharex, squeeze=False
    )
    for ax, (label, values) in zip(axes.flat, samples.items()):
        ax.hist(_to_numpy(values).ravel(), bins=bins, color=PALETTE[0], alpha=0.85)
        ax.set_title(label, fontsize=10)
        ax.set_yticks([])
        if xlabel:
            ax.set_xlabel(xlabel)
    for ax in list(axes.flat)[len(samples) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    return fig


def plot_heatmap(
    matrix,
    *,
    xticklabels: Sequence | None = None,
    yticklabels: Sequence | None = None,
    annot: bool = False,
    fmt: str = ".2f",
    cmap: str = "viridis",
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    ax=None,
    **kwargs,
):
    """A labelled heatmap (attention maps, confusion matrices, Jacobians) via seaborn."""
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots()
    sns.heatmap(
        _to_numpy(matrix),
        ax=ax,
        annot=annot,
        fmt=fmt,
        cmap=cmap,
        xticklabels=xticklabels if xticklabels is not None else "auto",
        yticklabels=yticklabels if yticklabels is not None else "auto",
        square=True,
        cbar_kws={"shrink": 0.8},
        **kwargs,
    )
    ax.grid(False)
    ax.set(xlabel=xlabel or "", ylabel=ylabel or "")
    if title:
        ax.set_title(title)
    return ax


def draw_unrolled_rnn(ax, n_in: int, n_out: int, *, aligned: bool = False, title: str = "",
                      in_label: str = "x", out_label: str = "y") -> None:
    """Draw an RNN unrolled in time on ``ax``: input boxes, hidden states, output boxes.

    ``n_in`` inputs are read one per step; ``n_out`` outputs are produced either at the
    same steps (``aligned=True``, one per input), after the last input (many-to-one,
    ``n_out=1``), or by a second chain of states that starts where reading stops (the
    encoder–decoder of seq2seq). ``n_in=1`` with several outputs is one-to-many.
    """
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    def box(x, y, text, color):
        ax.add_patch(FancyBboxPatch((x - 0.32, y - 0.22), 0.64, 0.44,
                                    boxstyle="round,pad=0.02", fc=color, ec="black", lw=1))
        ax.text(x, y, text, ha="center", va="center", fontsize=10)

    def arrow(x0, y0, x1, y1):
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=10,
                                     lw=1, color="black", shrinkA=10, shrinkB=10))

    reading = range(n_in)
    writing = range(n_in) if aligned else range(n_in - 1, n_in - 1 + n_out) if n_out == 1 or n_in == 1 \
        else range(n_in, n_in + n_out)
    steps = max(max(reading), max(writing)) + 1
    for t in range(steps):
        box(t, 1, f"h{t + 1}", "#cfe2f3" if t < n_in else "#fde9c9")
        if t:
            arrow(t - 1, 1, t, 1)
    for t in reading:
        box(t, 0, f"{in_label}{t + 1}", "#d9ead3")
        arrow(t, 0, t, 1)
    for k, t in enumerate(writing):
        box(t, 2, f"{out_label}{k + 1}", "#f4cccc")
        arrow(t, 1, t, 2)
    ax.set_xlim(-0.6, steps - 0.4)
    ax.set_ylim(-0.5, 2.5)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=11)
