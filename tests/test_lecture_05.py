"""Lecture 5 (MNIST CNN): the notebook's models, augmentation, confusion matrix and the
preprocessing of one's own handwriting, on synthetic inputs (no data download needed)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nbdefs import definitions
from PIL import Image, ImageDraw

nb = definitions("05_mnist_cnn")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _digit_image(dark_ink_on_light=True, size=(150, 210)):
    """A thick '7' on a non-square canvas, as a PIL greyscale image."""
    img = Image.new("L", size, 0)
    ImageDraw.Draw(img).line([(30, 40), (120, 40), (60, 190)], fill=255, width=14)
    a = np.asarray(img, dtype=np.float64)
    if dark_ink_on_light:
        a = 240 - a * (200 / 255)  # ink 40, paper 240
    return Image.fromarray(a.astype(np.uint8))


# ------------------------------------------------------------------------ models
def test_course_cnn_shapes_and_parameters():
    model = nb.CourseCNN()
    x = torch.rand(6, 1, 28, 28)
    h = model.pool1(torch.relu(model.conv1(x)))
    assert h.shape == (6, 20, 6, 6)
    assert model(x).shape == (6, 10)
    assert nb.n_parameters(model) == 20 * 25 + 20 + 720 * 10 + 10 == 7730


def test_course_cnn_returns_logits_not_probabilities():
    # The notebook's model must return logits (cross_entropy applies log-softmax itself).
    out = nb.CourseCNN()(torch.rand(5, 1, 28, 28))
    assert not torch.allclose(out.sum(dim=1), torch.ones(5), atol=1e-3)


def test_improved_cnn_shapes_train_and_eval():
    model = nb.ImprovedCNN()
    x = torch.rand(8, 1, 28, 28)
    assert model(x).shape == (8, 10)
    model.eval()
    with torch.no_grad():
        out = model(x)
        assert out.shape == (8, 10)
        # eval mode uses running statistics: one image gives the same answer alone or in a batch
        torch.testing.assert_close(model(x[:1]), out[:1], atol=1e-5, rtol=1e-5)
    assert nb.ImprovedCNN(c1=8, c2=16)(x).shape == (8, 10)


@pytest.mark.parametrize("name", ["CourseCNN", "ImprovedCNN"])
def test_a_few_training_steps_lower_the_loss(name):
    # Two classes that differ in where the ink is: a vertical vs a horizontal bar, plus noise.
    n = 64
    x = 0.1 * torch.rand(n, 1, 28, 28)
    y = torch.arange(n) % 2
    x[y == 0, :, 4:24, 12:16] += 0.9
    x[y == 1, :, 12:16, 4:24] += 0.9
    model = getattr(nb, name)()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


# ------------------------------------------------------------------ augmentation
def test_shift_images_matches_roll_and_zero_fills():
    x = torch.zeros(5, 1, 28, 28)
    x[:, :, 3:25, 3:25] = torch.rand(5, 1, 22, 22)
    shifts = torch.tensor([[0, 0], [2, -1], [-3, 3], [1, 2], [-2, -2]])
    out = nb.shift_images(x, shifts)
    for k, s in enumerate(shifts.tolist()):
        torch.testing.assert_close(out[k], torch.roll(x[k], tuple(s), dims=(1, 2)), atol=0, rtol=0)
    # a pixel that leaves the frame is gone, and zeros come in (no wrap-around)
    full = torch.ones(1, 2, 4, 4)
    moved = nb.shift_images(full, torch.tensor([[1, -1]]))
    assert moved[0, :, 0, :].sum() == 0 and moved[0, :, :, -1].sum() == 0
    assert moved.sum() == 2 * 9


def test_random_shift_keeps_shape_and_mass():
    x = torch.zeros(10, 1, 28, 28)
    x[:, :, 5:23, 5:23] = torch.rand(10, 1, 18, 18)
    g = torch.Generator().manual_seed(0)
    out = nb.random_shift(x, 2, g)
    assert out.shape == x.shape
    torch.testing.assert_close(out.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))
    assert not torch.equal(out, x)


# ------------------------------------------------------------- confusion matrix
def test_confusion_matrix_against_a_loop():
    y_true = torch.randint(0, 10, (500,))
    y_pred = torch.randint(0, 10, (500,))
    expected = np.zeros((10, 10), dtype=np.int64)
    np.add.at(expected, (y_true.numpy(), y_pred.numpy()), 1)
    cm = nb.confusion_matrix(y_true, y_pred)
    np.testing.assert_array_equal(cm.numpy(), expected)
    # rows are the true classes: an asymmetric example catches a transposed matrix
    cm2 = nb.confusion_matrix(torch.tensor([3, 3]), torch.tensor([5, 5]))
    assert cm2[3, 5] == 2 and cm2[5, 3] == 0


def test_worst_mistakes_orders_by_confidence():
    logits = torch.tensor([[5.0, 0, 0], [0, 9.0, 0], [0, 0, 1.0], [2.0, 0, 0]])
    y = torch.tensor([1, 0, 2, 0])  # wrong: 0 (conf high), 1 (conf highest); right: 2, 3
    idx, conf = nb.worst_mistakes(logits, y, k=5)
    assert idx.tolist() == [1, 0]
    assert conf[0] > conf[1]


# ----------------------------------------------------------------- preprocessing
def test_preprocess_dark_ink_on_white_is_inverted(tmp_path):
    path = tmp_path / "seven.png"
    _digit_image(dark_ink_on_light=True).save(path)
    x = nb.preprocess_digit(path)
    assert x.shape == (1, 1, 28, 28) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1
    assert x.max() > 0.9  # the ink became bright ...
    assert x[0, 0, :2].sum() == 0 and x[0, 0, :, :2].sum() == 0  # ... and the background black
    # fits in the 20x20 box and is centred by mass
    rows, cols = torch.nonzero(x[0, 0] > 0, as_tuple=True)
    assert rows.max() - rows.min() + 1 <= 21 and cols.max() - cols.min() + 1 <= 21
    r, c = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    m = x[0, 0]
    assert abs((r * m).sum() / m.sum() - 13.5) < 1 and abs((c * m).sum() / m.sum() - 13.5) < 1


def test_preprocess_same_result_for_either_polarity_and_rgba(tmp_path):
    dark = tmp_path / "dark.png"
    light = tmp_path / "light.png"
    rgba = tmp_path / "rgba.png"
    img = _digit_image(dark_ink_on_light=True)
    img.save(dark)
    Image.fromarray(255 - np.asarray(img)).save(light)  # white ink on black, as in MNIST
    # a transparent PNG: black ink whose alpha is the stroke, nothing elsewhere
    mask = np.asarray(_digit_image(dark_ink_on_light=False))
    rgba_array = np.zeros((*mask.shape, 4), dtype=np.uint8)
    rgba_array[..., 3] = mask
    Image.fromarray(rgba_array).save(rgba)
    x_dark, x_light = nb.preprocess_digit(dark), nb.preprocess_digit(light)
    torch.testing.assert_close(x_dark, x_light, atol=1e-5, rtol=0)
    torch.testing.assert_close(nb.preprocess_digit(rgba), x_dark, atol=1e-5, rtol=0)


def test_preprocess_blank_image(tmp_path):
    path = tmp_path / "blank.png"
    Image.new("L", (40, 30), 255).save(path)
    x = nb.preprocess_digit(path)
    assert x.shape == (1, 1, 28, 28) and x.abs().sum() == 0


def test_predict_digit_returns_probabilities(tmp_path):
    path = tmp_path / "seven.png"
    _digit_image().save(path)
    x, probs = nb.predict_digit(nb.CourseCNN(), path)
    assert x.shape == (1, 1, 28, 28) and probs.shape == (10,)
    torch.testing.assert_close(probs.sum(), torch.tensor(1.0))
