"""utils.digits: MNIST-like framing of outside digits (photos, scikit-learn's UCI digits)."""

import numpy as np
import pytest
import torch
from drawn_digits import digit_image
from PIL import Image

from utils import digits


def _centre_of_mass(frame):
    r, c = np.indices(frame.shape)
    return (r * frame).sum() / frame.sum(), (c * frame).sum() / frame.sum()


# --------------------------------------------------------------------- mnist_frame
@pytest.mark.parametrize("shape", [(40, 15), (9, 60), (8, 8), (100, 100)])
def test_mnist_frame_fits_the_box_and_centres_by_mass(shape):
    rng = np.random.default_rng(sum(shape))
    ink = np.zeros((shape[0] + 10, shape[1] + 6))
    ink[4 : 4 + shape[0], 2 : 2 + shape[1]] = rng.uniform(0.2, 1.0, shape)
    frame = digits.mnist_frame(ink)
    assert frame.shape == (28, 28) and frame.min() >= 0 and frame.max() <= 1
    rows, cols = np.nonzero(frame)
    height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert max(height, width) == 20  # the longer side fills the 20-pixel box ...
    expected = 20 * min(shape) / max(shape)  # ... and the aspect ratio is kept
    assert abs(min(height, width) - expected) <= 1.5
    r, c = _centre_of_mass(frame)
    assert abs(r - 13.5) <= 0.5 and abs(c - 13.5) <= 0.5


def test_mnist_frame_is_shift_invariant_and_handles_blank_and_bad_input():
    rng = np.random.default_rng(0)
    blob = rng.uniform(0.3, 1.0, (12, 7))
    a, b = np.zeros((30, 30)), np.zeros((30, 30))
    a[2:14, 3:10] = blob
    b[15:27, 20:27] = blob  # the same digit elsewhere in the picture
    np.testing.assert_allclose(digits.mnist_frame(a), digits.mnist_frame(b))
    assert digits.mnist_frame(np.zeros((5, 9))).sum() == 0
    with pytest.raises(ValueError):
        digits.mnist_frame(np.zeros((2, 3, 3)))


def test_mnist_frame_leaves_an_mnist_digit_almost_unchanged():
    # A 20x20 digit already centred by mass in 28x28 is put back where it was.
    rng = np.random.default_rng(1)
    digit = np.zeros((28, 28))
    digit[4:24, 4:24] = rng.uniform(0.0, 1.0, (20, 20)) * (rng.uniform(size=(20, 20)) > 0.3)
    digit[4, 4] = digit[23, 23] = digit[4, 23] = digit[23, 4] = 1.0  # a full 20x20 box
    r, c = _centre_of_mass(digit)
    out = digits.mnist_frame(digit)
    assert abs(_centre_of_mass(out)[0] - r) <= 0.5 + abs(r - 13.5)
    np.testing.assert_allclose(out.sum(), digit.sum(), rtol=0.05)


# ------------------------------------------------------------------ preprocess_digit
def test_preprocess_dark_ink_on_white_is_inverted(tmp_path):
    path = tmp_path / "seven.png"
    digit_image(dark_ink_on_light=True).save(path)
    x = digits.preprocess_digit(path)
    assert x.shape == (1, 1, 28, 28) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1
    assert x.max() > 0.9  # the ink became bright ...
    assert x[0, 0, :2].sum() == 0 and x[0, 0, :, :2].sum() == 0  # ... and the background black
    rows, cols = torch.nonzero(x[0, 0] > 0, as_tuple=True)
    assert rows.max() - rows.min() + 1 <= 21 and cols.max() - cols.min() + 1 <= 21
    r, c = _centre_of_mass(x[0, 0].numpy())
    assert abs(r - 13.5) < 1 and abs(c - 13.5) < 1


def test_preprocess_same_result_for_either_polarity_and_rgba(tmp_path):
    dark, light, rgba = tmp_path / "dark.png", tmp_path / "light.png", tmp_path / "rgba.png"
    img = digit_image(dark_ink_on_light=True)
    img.save(dark)
    Image.fromarray(255 - np.asarray(img)).save(light)  # white ink on black, as in MNIST
    # a transparent PNG: black ink whose alpha is the stroke, nothing elsewhere
    mask = np.asarray(digit_image(dark_ink_on_light=False))
    rgba_array = np.zeros((*mask.shape, 4), dtype=np.uint8)
    rgba_array[..., 3] = mask
    Image.fromarray(rgba_array).save(rgba)
    x_dark = digits.preprocess_digit(dark)
    torch.testing.assert_close(digits.preprocess_digit(light), x_dark, atol=1e-5, rtol=0)
    torch.testing.assert_close(digits.preprocess_digit(rgba), x_dark, atol=1e-5, rtol=0)


def test_preprocess_blank_image(tmp_path):
    path = tmp_path / "blank.png"
    Image.new("L", (40, 30), 255).save(path)
    x = digits.preprocess_digit(path)
    assert x.shape == (1, 1, 28, 28) and x.abs().sum() == 0


def test_preprocess_of_the_drawn_two(tmp_path):
    photo = digits.draw_two(seed=3)
    assert photo.mode == "L" and photo.size == (180, 220)
    a = np.asarray(photo)
    assert np.median(a) > 180 and a.min() < 80  # light paper, dark ink
    path = tmp_path / "two.png"
    photo.save(path)
    x = digits.preprocess_digit(path)
    assert x[0, 0, 0].sum() == 0 and x.max() > 0.9
    assert 0.05 < (x > 0.5).float().mean() < 0.4  # strokes, not a blob or nothing


# ------------------------------------------------------------------- UCI digits
def test_load_uci_digits_is_mnist_like():
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits

    images, labels = digits.load_uci_digits()
    assert images.shape == (1797, 1, 28, 28) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and labels.tolist() == load_digits().target.tolist()
    assert torch.bincount(labels).min() > 150  # about 180 of each digit
    assert images.min() >= 0 and images.max() <= 1
    empty_top_row = (images[:, 0, 0].sum(dim=-1) == 0).float().mean()
    assert empty_top_row > 0.95  # an empty border, as in MNIST
    frames = images[:50, 0].numpy()
    for f in frames:
        r, c = _centre_of_mass(f)
        assert abs(r - 13.5) <= 0.5 and abs(c - 13.5) <= 0.5
    # the first image is the same digit as scikit-learn's, framed
    np.testing.assert_allclose(
        images[0, 0].numpy(), digits.mnist_frame(load_digits().images[0] / 16), atol=1e-6
    )


def test_plot_digit_prediction_draws_one_bar_per_class_and_model():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    x = torch.zeros(1, 1, 28, 28)
    probs = {"a": torch.full((10,), 0.1), "b": torch.linspace(0, 0.2, 10)}
    fig = digits.plot_digit_prediction(digits.draw_two(), x, probs)
    assert len(fig.axes[2].patches) == 20
    assert fig.axes[2].get_legend() is not None
    plt.close(fig)
