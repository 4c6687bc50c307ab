"""Digits from outside MNIST, made to look like MNIST (lecture 05).

MNIST digits are bright ink on a black background, scaled so that their longer side is
20 pixels, and centred by their centre of mass in a 28×28 frame. Anything else we show a
network trained on MNIST must go through the same steps:

- :func:`mnist_frame`: crop bright ink to its bounding box, scale the longer side to 20
  pixels (aspect ratio kept) and centre by mass in 28×28;
- :func:`preprocess_digit`: an image *file* (a photo of a digit on paper, a scan, a PNG
  with transparency) → grey → ink made bright → background removed → :func:`mnist_frame`;
- :func:`load_uci_digits`: the 1,797 UCI handwritten digits that ship with scikit-learn
  (8×8, other writers, another scanner), put through :func:`mnist_frame`;
- :func:`draw_two` draws a stand-in "photo" of a handwritten 2, and
  :func:`plot_digit_prediction` shows a photo, what the network sees, and its probabilities.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image, ImageDraw

__all__ = [
    "mnist_frame",
    "preprocess_digit",
    "load_uci_digits",
    "draw_two",
    "plot_digit_prediction",
]


def mnist_frame(ink: np.ndarray, size: int = 28, box: int = 20) -> np.ndarray:
    """Put a 2-D array of bright ink on a 0 background into an MNIST-like frame.

    Crops to the bounding box of the non-zero pixels, resizes (bilinear) so that the
    longer side is ``box`` pixels, and pastes the result into a ``size``×``size`` zero
    frame with its centre of mass at the centre. Returns float64 values in [0, 1]; an
    image without ink gives an all-zero frame.
    """
    a = np.clip(np.asarray(ink, dtype=np.float64), 0.0, 1.0)
    if a.ndim != 2:
        raise ValueError(f"need a 2-D image, got shape {a.shape}")
    canvas = np.zeros((size, size))
    if not (a > 0).any():
        return canvas
    rows, cols = np.nonzero(a)
    a = a[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]  # crop to the ink
    scale = box / max(a.shape)
    h, w = max(1, round(a.shape[0] * scale)), max(1, round(a.shape[1] * scale))
    small = Image.fromarray(a.astype(np.float32)).resize((w, h), Image.Resampling.BILINEAR)
    small = np.clip(np.asarray(small, dtype=np.float64), 0.0, 1.0)
    r, c = np.indices(small.shape)
    mass = small.sum()
    top = int(np.clip(round((size - 1) / 2 - (r * small).sum() / mass), 0, size - h))
    left = int(np.clip(round((size - 1) / 2 - (c * small).sum() / mass), 0, size - w))
    canvas[top : top + h, left : left + w] = small
    return canvas


def preprocess_digit(
    path: str | os.PathLike, size: int = 28, box: int = 20, ink_threshold: float = 0.2
) -> torch.Tensor:
    """Turn an image file into an MNIST-like float32 tensor of shape [1, 1, size, size].

    1. grey (a transparent image is first put on white paper); 2. if the border is light,
    invert so that the ink is bright; 3. subtract the background (median of the border),
    stretch the brightest ink to 1 and drop faint paper texture below ``ink_threshold``;
    4–5. :func:`mnist_frame`; 6. add the batch and channel dimensions.
    """
    img = Image.open(path)
    if img.mode in ("RGBA", "LA", "P"):  # transparency: put the image on white paper
        img = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img)
    a = np.asarray(img.convert("L"), dtype=np.float64) / 255.0  # 1. grey, in [0, 1]
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    if np.median(border) > 0.5:  # 2. light background: make the ink bright, as in MNIST
        a, border = 1.0 - a, 1.0 - border
    background = np.median(border)
    if a.max() - background < 1e-3:  # a blank image
        return torch.zeros(1, 1, size, size)
    a = np.clip((a - background) / (a.max() - background), 0.0, 1.0)  # 3. background -> 0
    a = np.clip((a - ink_threshold) / (1.0 - ink_threshold), 0.0, 1.0)  # no paper texture
    frame = mnist_frame(a, size=size, box=box)  # 4. crop and resize, 5. centre by mass
    return torch.tensor(frame, dtype=torch.float32).view(1, 1, size, size)  # 6.


def load_uci_digits(size: int = 28, box: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """The UCI handwritten digits of scikit-learn as MNIST-like ``(images, labels)``.

    1,797 digits by other writers than MNIST's, scanned as 32×32 bitmaps and reduced to
    8×8 counts of ink (0–16). Each is scaled to [0, 1] and put through :func:`mnist_frame`
    (upsampled to a 20-pixel box, centred by mass in 28×28). Ships with scikit-learn:
    no download. Returns float32 images ``[1797, 1, size, size]`` and int64 labels.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    frames = np.stack([mnist_frame(img / 16.0, size=size, box=box) for img in digits.images])
    images = torch.tensor(frames, dtype=torch.float32).unsqueeze(1)
    return images, torch.tensor(digits.target, dtype=torch.int64)


def draw_two(width: int = 180, height: int = 220, stroke: int = 16, seed: int = 0) -> Image.Image:
    """A stand-in photo of a handwritten "2": dark strokes on uneven, noisy light paper.

    A PIL greyscale image on a canvas that is not square, as a cropped phone photo of a
    digit written with a marker would be.
    """
    ink = Image.new("L", (width, height), 0)
    pen = ImageDraw.Draw(ink)
    pen.arc((45, 30, 135, 115), start=170, end=40, fill=255, width=stroke)  # the top curve
    pen.line([(120, 95), (50, 180), (140, 172)], fill=255, width=stroke, joint="curve")
    for x, y in [(50, 180), (140, 172)]:  # round pen tips
        pen.ellipse((x - stroke / 2, y - stroke / 2, x + stroke / 2, y + stroke / 2), fill=255)
    m = np.asarray(ink, dtype=np.float64) / 255.0
    rng = np.random.default_rng(seed)
    paper = 235 - 25 * np.arange(width) / width + rng.normal(0, 4, (height, width))
    return Image.fromarray(np.clip(paper * (1 - m) + 45 * m, 0, 255).astype(np.uint8))


def plot_digit_prediction(photo, x: torch.Tensor, probs_by_model: dict):
    """The photo, the network's 28×28 input, and the predicted probabilities per model."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), width_ratios=[1, 1, 2.4])
    axes[0].imshow(photo, cmap="gray", vmin=0, vmax=255)
    axes[0].set_title("the photo")
    axes[1].imshow(np.asarray(x[0, 0]), cmap="gray", vmin=0, vmax=1)
    axes[1].set_title("what the network sees")
    for ax in axes[:2]:
        ax.axis("off")
    width = 0.8 / len(probs_by_model)
    for k, (name, probs) in enumerate(probs_by_model.items()):
        offset = (k - (len(probs_by_model) - 1) / 2) * width
        axes[2].bar(np.arange(10) + offset, np.asarray(probs), width, label=name)
    axes[2].set(xticks=range(10), xlabel="digit", ylabel="probability", ylim=(0, 1.02),
                title="predicted probabilities")
    axes[2].legend()
    return fig
