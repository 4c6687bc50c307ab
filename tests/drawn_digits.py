"""A hand-drawn-like digit for the tests of the photo pipeline (utils.digits, lecture 05)."""

import numpy as np
from PIL import Image, ImageDraw


def digit_image(dark_ink_on_light=True, size=(150, 210)):
    """A thick '7' on a non-square canvas, as a PIL greyscale image."""
    img = Image.new("L", size, 0)
    ImageDraw.Draw(img).line([(30, 40), (120, 40), (60, 190)], fill=255, width=14)
    a = np.asarray(img, dtype=np.float64)
    if dark_ink_on_light:
        a = 240 - a * (200 / 255)  # ink 40, paper 240
    return Image.fromarray(a.astype(np.uint8))
