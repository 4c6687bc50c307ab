"""Assignment 03 (convolution): the checks pass the solution, fail plausible mistakes, flag stubs."""

import numpy as np
import pytest
from nbdefs import definitions
from numpy.lib.stride_tricks import sliding_window_view
from selfchecks import assert_fails, assert_passes, assert_stub_gets_todo, stub

from utils.exercises import conv2d as checks

sol = definitions("03_conv2d", folder="solutions")


# ------------------------------------------------------------------ wrong answers
def correlation_single(image, kernel):
    """No flip: what F.conv2d computes."""
    windows = sliding_window_view(np.asarray(image, dtype=np.float64), np.shape(kernel))
    return np.einsum("ijab,ab->ij", windows, np.asarray(kernel, dtype=np.float64))


def flip_rows_only(image, kernel):
    return correlation_single(image, np.asarray(kernel)[::-1, :])


def float32_single(image, kernel):
    return sol.conv2d_single(np.asarray(image, np.float32), np.asarray(kernel, np.float32)).astype(
        np.float32
    )


def same_mode_single(image, kernel):
    """Pads to keep the image size: the output is too large for 'valid' mode."""
    kh, kw = np.shape(kernel)
    padded = np.pad(
        np.asarray(image, dtype=np.float64), ((kh // 2, (kh - 1) // 2), (kw // 2, (kw - 1) // 2))
    )
    return sol.conv2d_single(padded, kernel)


def pixel_loop_single(image, kernel):
    """Correct values, but one Python iteration per output pixel."""
    image = np.asarray(image, dtype=np.float64)
    turned = np.asarray(kernel, dtype=np.float64)[::-1, ::-1]
    kh, kw = turned.shape
    out = np.zeros((image.shape[0] - kh + 1, image.shape[1] - kw + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = np.sum(image[i : i + kh, j : j + kw] * turned)
    return out


def flips_in_place(image, kernel):
    kernel[:] = kernel[::-1, ::-1].copy()  # changes the caller's array
    return correlation_single(image, kernel)


def row_loop_single(image, kernel):
    """A loop over rows only (one line per row, vectorised inside): allowed."""
    turned = np.asarray(kernel, dtype=np.float64)[::-1, ::-1]
    windows = sliding_window_view(np.asarray(image, dtype=np.float64), turned.shape)
    return np.stack([np.einsum("jab,ab->j", row, turned) for row in windows])


def flip_all_axes_multi(x, weight, bias=None):
    """np.flip without axes also reverses the channel axes."""
    return sol.conv2d_multi(x, np.flip(weight).copy()[:, :, ::-1, ::-1], bias)


def correlation_multi(x, weight, bias=None):
    return sol.conv2d_multi(x, np.asarray(weight)[:, :, ::-1, ::-1], bias)


def mean_over_channels_multi(x, weight, bias=None):
    return sol.conv2d_multi(x, np.asarray(weight) / np.shape(weight)[1], bias)


def ignores_bias_multi(x, weight, bias=None):
    return sol.conv2d_multi(x, weight)


def first_channel_only_multi(x, weight, bias=None):
    return sol.conv2d_multi(np.asarray(x)[:1], np.asarray(weight)[:, :1], bias)


def channel_loop_multi(x, weight, bias=None):
    """Loops over channel pairs calling the single-channel version: allowed."""
    out = np.stack(
        [
            sum(sol.conv2d_single(x[c], weight[o, c]) for c in range(len(x)))
            for o in range(len(weight))
        ]
    )
    return out if bias is None else out + np.asarray(bias)[:, None, None]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def ceil_shape(h, w, kernel_size, padding=0, stride=1):
    (kh, kw), (ph, pw), (sh, sw) = _pair(kernel_size), _pair(padding), _pair(stride)
    if h + 2 * ph < kh or w + 2 * pw < kw:
        raise ValueError
    return -(-(h + 2 * ph - kh) // sh) + 1, -(-(w + 2 * pw - kw) // sw) + 1


def padding_once_shape(h, w, kernel_size, padding=0, stride=1):
    (kh, kw), (ph, pw), (sh, sw) = _pair(kernel_size), _pair(padding), _pair(stride)
    if h + 2 * ph < kh or w + 2 * pw < kw:
        raise ValueError
    return (h + ph - kh) // sh + 1, (w + pw - kw) // sw + 1


def float_division_shape(h, w, kernel_size, padding=0, stride=1):
    (kh, kw), (ph, pw), (sh, sw) = _pair(kernel_size), _pair(padding), _pair(stride)
    if h + 2 * ph < kh or w + 2 * pw < kw:
        raise ValueError
    return (h + 2 * ph - kh) / sh + 1, (w + 2 * pw - kw) / sw + 1


def int_only_shape(h, w, kernel_size, padding=0, stride=1):
    """Treats every argument as an int: breaks on pairs."""
    if h + 2 * padding < kernel_size:
        raise ValueError
    return (h + 2 * padding - kernel_size) // stride + 1, (
        w + 2 * padding - kernel_size
    ) // stride + 1


def never_refuses_shape(h, w, kernel_size, padding=0, stride=1):
    (kh, kw), (ph, pw), (sh, sw) = _pair(kernel_size), _pair(padding), _pair(stride)
    return (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1


# -------------------------------------------------------------------------- tests
@pytest.mark.parametrize(
    "check, solution",
    [
        (checks.check_conv2d_single, sol.conv2d_single),
        (checks.check_conv2d_single, row_loop_single),
        (checks.check_conv2d_multi, sol.conv2d_multi),
        (checks.check_conv2d_multi, channel_loop_multi),
        (checks.check_conv_output_shape, sol.conv_output_shape),
    ],
)
def test_checks_pass_correct_answers(check, solution, capsys):
    assert_passes(capsys, check, solution)


@pytest.mark.parametrize(
    "check, wrong, hint",
    [
        (checks.check_conv2d_single, correlation_single, "cross-correlation"),
        (checks.check_conv2d_single, flip_rows_only, "BOTH axes"),
        (checks.check_conv2d_single, float32_single, "float64"),
        (checks.check_conv2d_single, same_mode_single, "'valid' mode"),
        (checks.check_conv2d_single, pixel_loop_single, "no Python loop over pixels"),
        (checks.check_conv2d_single, flips_in_place, "in place"),
        (checks.check_conv2d_multi, flip_all_axes_multi, "ALL four axes"),
        (checks.check_conv2d_multi, correlation_multi, "cross-correlation"),
        (checks.check_conv2d_multi, mean_over_channels_multi, "don't average"),
        (checks.check_conv2d_multi, ignores_bias_multi, "bias"),
        (checks.check_conv2d_multi, first_channel_only_multi, "input channel c must be summed"),
        (checks.check_conv_output_shape, ceil_shape, "floor"),
        (checks.check_conv_output_shape, padding_once_shape, "BOTH"),
        (checks.check_conv_output_shape, float_division_shape, "floor division"),
        (checks.check_conv_output_shape, int_only_shape, "pair (height, width)"),
        (checks.check_conv_output_shape, never_refuses_shape, "ValueError"),
    ],
)
def test_checks_fail_plausible_mistakes(check, wrong, hint, capsys):
    assert_fails(capsys, check, wrong, says=hint)


@pytest.mark.parametrize(
    "check", [checks.check_conv2d_single, checks.check_conv2d_multi, checks.check_conv_output_shape]
)
def test_checks_flag_stubs(check, capsys):
    assert_stub_gets_todo(capsys, check, stub)


def test_pixel_loop_counter_counts_only_the_students_lines():
    image, kernel = np.ones((30, 40)), np.ones((3, 3))
    _, vectorised = checks._count_python_lines(sol.conv2d_single, image, kernel)
    _, looped = checks._count_python_lines(pixel_loop_single, image, kernel)
    assert vectorised < 10  # NumPy's own Python code is not counted
    assert looped > 28 * 38  # at least one line per output pixel


def test_checks_leave_the_global_random_state_alone():
    import torch

    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    checks.check_conv2d_single(sol.conv2d_single)
    checks.check_conv2d_multi(sol.conv2d_multi)
    checks.check_conv_output_shape(sol.conv_output_shape)
    assert torch.equal(torch_state, torch.get_rng_state())
    assert all(np.array_equal(a, b) for a, b in zip(numpy_state, np.random.get_state()))
