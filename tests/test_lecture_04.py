"""Lecture 04 (convolution): the notebook's from-scratch pieces against NumPy, SciPy and PyTorch."""

import numpy as np
import pytest
import scipy.signal
import scipy.stats
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


# --- the backward pass, learning a kernel, pooling, receptive fields, LeNet-5, KDE -------------


@pytest.mark.parametrize(
    "n, c_in, c_out, h, w, kh, kw, stride, padding",
    [
        (1, 1, 1, 5, 5, 1, 1, 1, 0),
        (2, 3, 4, 13, 11, 3, 3, 1, 1),
        (1, 2, 3, 10, 9, 3, 2, 2, 0),  # the floor drops the last input row
        (2, 1, 2, 12, 12, 4, 4, 3, 2),
        (3, 4, 2, 7, 16, 5, 3, 2, 3),  # padding wider than half the kernel
    ],
)
def test_conv2d_backward_matches_autograd(n, c_in, c_out, h, w, kh, kw, stride, padding):
    rng = np.random.default_rng(1000 + n * 100 + h * 10 + kw)
    x = torch.tensor(rng.normal(size=(n, c_in, h, w)), requires_grad=True)
    weight = torch.tensor(rng.normal(size=(c_out, c_in, kh, kw)), requires_grad=True)
    bias = torch.tensor(rng.normal(size=c_out), requires_grad=True)
    y = F.conv2d(x, weight, bias, stride=stride, padding=padding)
    upstream = torch.tensor(rng.normal(size=tuple(y.shape)))
    y.backward(upstream)
    grad_x, grad_w, grad_b = nb.conv2d_backward(
        x.detach().numpy(), weight.detach().numpy(), upstream.numpy(), stride, padding
    )
    assert grad_x.shape == x.shape and grad_w.shape == weight.shape and grad_b.shape == bias.shape
    np.testing.assert_allclose(grad_x, x.grad.numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(grad_w, weight.grad.numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(grad_b, bias.grad.numpy(), rtol=0, atol=1e-10)


def test_conv2d_backward_is_a_full_convolution_and_a_correlation():
    rng = np.random.default_rng(21)
    image, kernel = rng.normal(size=(9, 13)), rng.normal(size=(4, 3))
    upstream = rng.normal(size=(6, 11))
    grad_x, grad_w, _ = nb.conv2d_backward(
        image[None, None], kernel[None, None], upstream[None, None]
    )
    np.testing.assert_allclose(
        grad_x[0, 0], scipy.signal.convolve2d(upstream, kernel, mode="full"), atol=1e-10
    )
    np.testing.assert_allclose(
        grad_w[0, 0], scipy.signal.correlate2d(image, upstream, mode="valid"), atol=1e-10
    )


def test_mse_and_gradient_matches_autograd():
    rng = np.random.default_rng(22)
    x, y = rng.normal(size=(3, 1, 10, 12)), rng.normal(size=(3, 1, 8, 10))
    w = rng.normal(size=(1, 1, 3, 3))
    loss, grad = nb.mse_and_gradient(x, y, w)
    w_t = torch.tensor(w, requires_grad=True)
    loss_t = F.mse_loss(F.conv2d(torch.from_numpy(x), w_t), torch.from_numpy(y))
    loss_t.backward()
    assert abs(loss - loss_t.item()) < 1e-12
    np.testing.assert_allclose(grad, w_t.grad.numpy(), rtol=0, atol=1e-12)


def test_fit_kernel_recovers_a_kernel_from_noise_free_pairs():
    rng = np.random.default_rng(23)
    x = rng.normal(size=(4, 1, 16, 16))  # white noise: a well-conditioned regression
    true = rng.normal(size=(1, 1, 3, 3))
    y = F.conv2d(torch.from_numpy(x), torch.from_numpy(true)).numpy()
    learned, losses = nb.fit_kernel(x, y, steps=300, lr=0.5)  # plain gradient descent
    assert losses[-1] < 1e-3 * losses[0]
    np.testing.assert_allclose(learned, true[0, 0], atol=1e-3)


def test_random_crops_stay_in_their_rows():
    image = np.arange(60 * 50, dtype=np.float64).reshape(60, 50)
    crops = nb.random_crops(image, 20, 8, (30, 60), np.random.default_rng(0))
    assert crops.shape == (20, 1, 8, 8)
    rows = crops[:, 0] // 50  # the row index of every pixel
    assert rows.min() >= 30 and rows.max() <= 59


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("k, s", [(2, 2), (3, 3), (3, 2), (3, 1), (2, 3), (1, 1)])
def test_pooling_forward_and_backward_match_torch(mode, k, s):
    rng = np.random.default_rng(31 + 10 * k + s)
    x = torch.tensor(rng.normal(size=(2, 3, 9, 12)), requires_grad=True)
    y = (F.max_pool2d if mode == "max" else F.avg_pool2d)(x, k, s)
    upstream = torch.tensor(rng.normal(size=tuple(y.shape)))
    y.backward(upstream)
    out = nb.pool2d(x.detach().numpy(), k, s, mode)
    np.testing.assert_allclose(out, y.detach().numpy(), rtol=0, atol=1e-12)
    grad = nb.pool2d_backward(x.detach().numpy(), upstream.numpy(), k, s, mode)
    np.testing.assert_allclose(grad, x.grad.numpy(), rtol=0, atol=1e-12)


def test_max_pool_gradient_goes_to_the_arg_max_only():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 2] = 5.0  # the maximum of the top-right window
    x = x + np.arange(16).reshape(1, 1, 4, 4) * 1e-3  # no ties
    grad = nb.pool2d_backward(x, np.ones((1, 1, 2, 2)), 2)
    assert grad[0, 0, 1, 2] == 1.0
    assert grad.sum() == 4.0 and set(np.unique(grad)) == {0.0, 1.0}


@pytest.mark.parametrize(
    "layers",
    [
        [("conv", 3, 1)],
        [("conv", 5, 1), ("conv", 3, 1)],
        [("conv", 3, 2), ("pool", 2, 2), ("conv", 3, 1)],
        [("pool", 3, 2), ("conv", 2, 1), ("pool", 2, 2)],
        [("conv", 5, 1), ("pool", 2, 2), ("conv", 5, 1), ("pool", 2, 2), ("conv", 5, 1)],
    ],
)
def test_receptive_field_formula_matches_the_gradient(layers):
    size, _ = nb.receptive_field([(k, s) for _, k, s in layers])[-1]
    _, (rows, cols) = nb.gradient_footprint(layers, input_size=72)
    assert rows == cols == size


def test_receptive_field_by_hand():
    assert nb.receptive_field([(3, 1), (3, 1)]) == [(3, 1), (5, 1)]
    assert nb.receptive_field([(3, 2)] * 3) == [(3, 2), (7, 4), (15, 8)]


def test_lenet5_plan_matches_the_module():
    model = nb.lenet5()
    out, shapes = torch.zeros(2, 1, 32, 32), []
    for index, module in enumerate(model):
        out = module(out)
        if index in (0, 2, 3, 5, 6, 9, 11):
            shapes.append((tuple(out.shape[1:]), sum(p.numel() for p in module.parameters())))
    plan = nb.lenet5_plan()
    assert [(shape, params) for _, shape, params in plan] == shapes
    assert sum(params for _, _, params in plan) == sum(p.numel() for p in model.parameters())
    assert sum(params for _, _, params in plan) == 61_706


@pytest.mark.parametrize("bandwidth, step", [(0.3, 0.01), (0.5, 0.02), (1.0, 0.05)])
def test_kde_by_convolution_matches_scipy(bandwidth, step):
    rng = np.random.default_rng(int(100 * bandwidth))
    data = rng.standard_t(df=5, size=400)
    grid = np.arange(-12.0, 12.0 + step / 2, step)
    data = data[np.abs(data) < 11]  # every point inside the grid
    ours = nb.kde_by_convolution(data, bandwidth, grid)
    ref = scipy.stats.gaussian_kde(data, bw_method=bandwidth / data.std(ddof=1))(grid)
    # binning moves each point by at most step / 2: error <= max |phi'| * step / 2 (plus cut-off)
    bound = step / 2 / (bandwidth**2 * np.sqrt(2 * np.pi * np.e)) + 1e-4
    assert np.abs(ours - ref).max() < bound
    assert abs(ours.sum() * step - 1.0) < 1e-3


# --- integer multiplication, the exact gradient-descent curve, per-crop errors -----------------


def test_multiply_integers_matches_python():
    rng = np.random.default_rng(41)
    pairs = [(0, 0), (0, 7), (9, 9), (10, 10), (999, 999), (1234, 5678)]
    for _ in range(30):
        a, b = (int("".join(map(str, rng.integers(0, 10, size=rng.integers(1, 60)))))
                for _ in range(2))
        pairs.append((a, b))
    for a, b in pairs:
        assert nb.multiply_integers(a, b) == a * b, (a, b)


def test_gd_losses_exact_matches_the_iterates():
    rng = np.random.default_rng(42)
    x = rng.normal(size=(3, 1, 12, 12)) + 0.5 * rng.normal(size=(3, 1, 1, 1))  # some collinearity
    y = F.conv2d(torch.from_numpy(x), torch.from_numpy(rng.normal(size=(1, 1, 3, 3)))).numpy()
    y = y + 0.1 * rng.normal(size=y.shape)
    patches = np.lib.stride_tricks.sliding_window_view(x[:, 0], (3, 3), axis=(1, 2)).reshape(-1, 9)
    w_min = np.linalg.lstsq(patches, y.reshape(-1), rcond=None)[0]
    hessian = 2 * patches.T @ patches / len(patches)
    loss_min = nb.mse_and_gradient(x, y, w_min.reshape(1, 1, 3, 3))[0]
    eta = 1.5 / np.linalg.eigvalsh(hessian)[-1]
    path = []
    _, losses = nb.fit_kernel(x, y, steps=80, lr=eta, trajectory=path)
    exact = nb.gd_losses_exact(np.arange(80), eta, hessian, np.zeros(9), w_min, loss_min)
    np.testing.assert_allclose(exact, losses, rtol=1e-9, atol=1e-12)
    assert len(path) == 80 and np.all(path[0] == 0)
    assert losses[-1] < losses[0]


def test_per_crop_mse():
    rng = np.random.default_rng(43)
    x, w = rng.normal(size=(5, 1, 9, 8)), rng.normal(size=(3, 3))
    y = rng.normal(size=(5, 1, 7, 6))
    out = nb.per_crop_mse(w, x, y)
    ref = ((F.conv2d(torch.from_numpy(x), torch.from_numpy(w)[None, None]).numpy() - y) ** 2)
    np.testing.assert_allclose(out, ref.reshape(5, -1).mean(axis=1), rtol=1e-12)
