"""Lecture 04 (convolution): the notebook's from-scratch pieces against NumPy, SciPy and PyTorch."""

import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as F
from nbdefs import definitions
from torch import nn

from utils import sample_image


nb = definitions("04_conv2d")

# (image height, image width, kernel height, kernel width): square and non-square, kernels
# from 1 x 1 up to the full image, even and odd sizes.
SHAPES_2D = [(5, 5, 1, 1), (7, 9, 3, 3), (9, 7, 2, 4), (12, 10, 5, 3), (6, 6, 6, 6), (16, 20, 9, 9)]


def _nchw(a):
    return torch.from_numpy(np.array(a, dtype=np.float64, copy=True))[None, None]


@pytest.mark.parametrize("m, n", [(1, 1), (1, 5), (5, 1), (3, 2), (2, 3), (17, 4), (40, 40)])
def test_convolve1d_matches_numpy(m, n):
    rng = np.random.default_rng(100 * m + n)
    v, w = rng.normal(size=m), rng.normal(size=n)
    out = nb.convolve1d(v, w)
    assert out.shape == (m + n - 1,)
    np.testing.assert_allclose(out, np.convolve(v, w), rtol=0, atol=1e-10)


def test_convolve1d_polynomial_example():
    np.testing.assert_array_equal(nb.convolve1d([3, -2, 1], [-5, 4]), [-15, 22, -13, 4])


@pytest.mark.parametrize("h, w, kh, kw", SHAPES_2D)
def test_loop_and_vectorised_match_scipy_and_torch(h, w, kh, kw):
    rng = np.random.default_rng(h * 1000 + w * 100 + kh * 10 + kw)
    image, kernel = rng.normal(size=(h, w)), rng.normal(size=(kh, kw))  # kernel not symmetric
    expected = scipy.signal.convolve2d(image, kernel, mode="valid")
    torch_flipped = F.conv2d(_nchw(image), _nchw(np.flip(kernel)))[0, 0].numpy()
    for fn in (nb.conv2d_loop, nb.conv2d_vectorised):
        out = fn(image, kernel)
        assert out.shape == (h - kh + 1, w - kw + 1), fn.__name__
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-10, err_msg=fn.__name__)
        np.testing.assert_allclose(out, torch_flipped, rtol=0, atol=1e-10, err_msg=fn.__name__)


def test_convolution_is_not_cross_correlation():
    """A forgotten flip would make these equal; the Sobel kernel flips to its negative."""
    rng = np.random.default_rng(4)
    image = rng.normal(size=(10, 11))
    sobel = np.array([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    no_flip = F.conv2d(_nchw(image), _nchw(sobel))[0, 0].numpy()
    for fn in (nb.conv2d_loop, nb.conv2d_vectorised):
        np.testing.assert_allclose(fn(image, sobel), -no_flip, rtol=0, atol=1e-10)


def test_vectorised_on_a_real_image():
    grey = nb.rgb_to_grey(sample_image("grace_hopper"))[:120, :100]
    kernel = nb.gaussian_kernel(9, 2.0)
    np.testing.assert_allclose(
        nb.conv2d_vectorised(grey, kernel),
        scipy.signal.convolve2d(grey, kernel, mode="valid"),
        rtol=0,
        atol=1e-10,
    )


def test_per_channel_matches_scipy_per_channel():
    rng = np.random.default_rng(5)
    image, kernel = rng.random(size=(13, 11, 3)), rng.normal(size=(4, 3))
    out = nb.conv2d_per_channel(image, kernel)
    assert out.shape == (10, 9, 3)
    for c in range(3):
        np.testing.assert_allclose(
            out[..., c],
            scipy.signal.convolve2d(image[..., c], kernel, mode="valid"),
            rtol=0,
            atol=1e-10,
        )


@pytest.mark.parametrize(
    "n, c_in, c_out, h, w, kh, kw, stride, padding, use_bias",
    [
        (1, 1, 1, 6, 6, 3, 3, 1, 0, False),
        (2, 3, 4, 17, 12, 5, 3, 1, 2, True),
        (3, 2, 5, 9, 14, 3, 3, 2, 1, True),
        (1, 4, 2, 10, 10, 2, 4, 3, 0, True),
        (2, 3, 1, 8, 5, 1, 1, 2, 3, False),
    ],
)
def test_multichannel_matches_f_conv2d(n, c_in, c_out, h, w, kh, kw, stride, padding, use_bias):
    rng = np.random.default_rng(n + 10 * c_in + 100 * c_out + h)
    x = rng.normal(size=(n, c_in, h, w))
    weight = rng.normal(size=(c_out, c_in, kh, kw))
    bias = rng.normal(size=c_out) if use_bias else None
    out = nb.conv2d_multichannel(x, weight, bias, stride=stride, padding=padding)
    ref = F.conv2d(
        torch.from_numpy(x),
        torch.from_numpy(weight),
        None if bias is None else torch.from_numpy(bias),
        stride=stride,
        padding=padding,
    ).numpy()
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-10)


def test_multichannel_sums_over_input_channels():
    """Each input channel must get its own kernel: not the same kernel for all, not per channel."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(1, 2, 7, 7))
    weight = np.zeros((1, 2, 3, 3))
    weight[0, 1, 1, 1] = 1.0  # picks the centre of channel 1 only
    np.testing.assert_allclose(
        nb.conv2d_multichannel(x, weight)[0, 0], x[0, 1, 1:-1, 1:-1], atol=1e-12
    )


@pytest.mark.parametrize("h", [1, 5, 28, 33])
@pytest.mark.parametrize("k", [1, 2, 3, 7])
@pytest.mark.parametrize("p", [0, 1, 3])
@pytest.mark.parametrize("s", [1, 2, 3])
def test_output_size_matches_nn_conv2d(h, k, p, s):
    if h + 2 * p < k:
        with pytest.raises(ValueError):
            nb.conv_output_size(h, k, p, s)
        return
    layer = nn.Conv2d(1, 1, kernel_size=k, padding=p, stride=s, bias=False)
    with torch.no_grad():
        out = layer(torch.zeros(1, 1, h, h + 2))
    assert nb.conv_output_size(h, k, p, s) == out.shape[2]
    assert nb.conv_output_size(h + 2, k, p, s) == out.shape[3]


def test_grey_and_gaussian_helpers():
    rgb = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]]])
    np.testing.assert_allclose(nb.rgb_to_grey(rgb), [[0.299, 0.587, 0.114, 1.0]], atol=1e-12)
    kern = nb.gaussian_kernel(9, 2.1)
    assert kern.shape == (9, 9)
    np.testing.assert_allclose(kern.sum(), 1.0, atol=1e-12)
    np.testing.assert_allclose(kern, kern[::-1, ::-1], atol=1e-15)
    np.testing.assert_allclose(kern, kern.T, atol=1e-15)
    assert kern[4, 4] == kern.max()
