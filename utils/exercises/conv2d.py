"""Self-checks of assignment 3 (2-D convolution from scratch): ``solutions/03_conv2d.ipynb``.

Each check compares a student's NumPy function with ``scipy.signal.convolve2d`` and with
``torch.nn.functional.conv2d`` (whose "convolution" is a cross-correlation, so the kernel
is flipped for it), in float64 to 1e-10, on random non-symmetric kernels of several shapes.
The vectorised functions are also run under a line counter: a Python loop over the output
pixels runs thousands of lines of Python and is reported.
"""

from __future__ import annotations

import os
import sys
import sysconfig

import numpy as np
import scipy.signal
import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_close, check_shape, check_true
from . import exercise

__all__ = ["check_conv2d_multi", "check_conv2d_single", "check_conv_output_shape"]

TOL = 1e-10

# (image height, image width, kernel height, kernel width): square and non-square, even and
# odd kernels, 1 x 1 and a kernel as large as the image.
_SINGLE_SHAPES = [
    (5, 5, 1, 1),
    (7, 9, 3, 3),
    (9, 7, 2, 4),
    (12, 10, 5, 3),
    (6, 6, 6, 6),
    (16, 21, 9, 9),
]
# (C_in, C_out, H, W, kh, kw)
_MULTI_SHAPES = [(1, 1, 6, 7, 2, 3), (3, 4, 11, 9, 3, 2), (2, 5, 8, 8, 1, 1), (3, 2, 10, 12, 5, 4)]


# --------------------------------------------------------------------------- helpers
def _normal(g: torch.Generator, *shape: int) -> np.ndarray:
    """Standard normal float64 NumPy array from a local generator (global RNG untouched)."""
    return torch.randn(*shape, generator=g, dtype=torch.float64).numpy()


def _nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float64, copy=True))


def _as_float64(name: str, out) -> np.ndarray:
    if isinstance(out, torch.Tensor):
        out = out.detach().cpu().numpy()
    try:
        return np.asarray(out, dtype=np.float64)
    except (TypeError, ValueError):
        pass
    check_true(
        name,
        False,
        f"returned {type(out).__name__}, not an array of numbers",
        hint="return a NumPy array of the output values",
    )


def _lib_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths.get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    dirs.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # utils/ itself
    return tuple(os.path.realpath(d) + os.sep for d in dirs if d)


_LIBS = _lib_dirs()
_is_user: dict[str, bool] = {}


def _user_code(filename: str) -> bool:
    """True for the student's code (notebook cells), False for libraries and the stdlib."""
    known = _is_user.get(filename)
    if known is None:
        if (
            filename.startswith("<frozen")
            or "site-packages" in filename
            or "dist-packages" in filename
        ):
            known = False
        else:
            known = not os.path.realpath(filename).startswith(_LIBS)
        _is_user[filename] = known
    return known


def _count_python_lines(fn, *args):
    """Call ``fn(*args)``; return its result and how many lines of the student's Python ran.

    Library code (NumPy, PyTorch, SciPy, the standard library) is not counted: a vectorised
    function runs a handful of lines, a loop over pixels runs at least one line per pixel.
    """
    count = 0

    def local(frame, event, arg):
        nonlocal count
        if event == "line":
            count += 1
        return local

    def calls(frame, event, arg):
        return local if _user_code(frame.f_code.co_filename) else None

    previous = sys.gettrace()
    sys.settrace(calls)
    try:
        result = fn(*args)
    finally:
        sys.settrace(previous)
    return result, count


def _check_no_pixel_loop(name: str, fn, args, n_pixels: int) -> None:
    _, lines = _count_python_lines(fn, *args)
    check_true(
        f"{name}: no Python loop over pixels",
        lines <= n_pixels // 4,
        f"{lines} lines of your Python ran for {n_pixels} output pixels",
        hint="let NumPy do the loop: numpy.lib.stride_tricks.sliding_window_view gives all "
        "windows at once, and np.einsum (or im2col + one matrix product) sums them. A loop over "
        "the few kernel entries or channels is fine; a loop over output pixels is not.",
    )


def _closest(out: np.ndarray, candidates: dict[str, np.ndarray]) -> str | None:
    """The name of the wrong-but-plausible answer that ``out`` equals, if any."""
    for name, value in candidates.items():
        if value.shape == out.shape and np.allclose(out, value, rtol=0, atol=1e-8):
            return name
    return None


# ----------------------------------------------------------------- single channel
def _single_hint(image, kernel, out) -> str:
    # Only true convolutions are the same under a 180-degree turn of the kernel; try the
    # usual slips one by one and name the first that explains the result.
    diagnosis = _closest(
        out,
        {
            "correlation": scipy.signal.correlate2d(image, kernel, mode="valid"),
            "rows": scipy.signal.correlate2d(image, kernel[::-1, :], mode="valid"),
            "cols": scipy.signal.correlate2d(image, kernel[:, ::-1], mode="valid"),
            "transposed": scipy.signal.convolve2d(image, kernel.T, mode="valid")
            if kernel.shape[0] == kernel.shape[1]
            else np.zeros(0),
        },
    )
    if diagnosis == "correlation":
        return (
            "you computed the cross-correlation (what F.conv2d does): a convolution flips "
            "the kernel in both directions first, kernel[::-1, ::-1]"
        )
    if diagnosis in ("rows", "cols"):
        return "the kernel must be flipped along BOTH axes (rows and columns), not just one"
    if diagnosis == "transposed":
        return "the kernel looks transposed: K[a, b] pairs with image[i + a, j + b]"
    rel = np.abs(out - scipy.signal.convolve2d(image, kernel, mode="valid")).max()
    if 1e-10 < rel < 1e-4:
        return "tiny errors only: compute in float64 (np.asarray(x, dtype=np.float64)), not float32"
    return (
        "out[i, j] = sum over a, b of image[i + a, j + b] * K[kh-1-a, kw-1-b]; check the "
        "flip and which window goes with which output pixel"
    )


def check_conv2d_single(conv2d_single) -> None:
    """Valid-mode 2-D convolution of one channel: shapes, values (SciPy and F.conv2d), no pixel loop."""
    with exercise("conv2d_single"):
        g = torch.Generator().manual_seed(3001)
        outs, scipy_refs, torch_refs = [], [], []
        for h, w, kh, kw in _SINGLE_SHAPES:
            image, kernel = _normal(g, h, w), _normal(g, kh, kw)
            image_copy, kernel_copy = image.copy(), kernel.copy()
            out = _as_float64("conv2d_single", conv2d_single(image, kernel))
            expected_shape = (h - kh + 1, w - kw + 1)
            if out.shape != expected_shape:
                check_shape(
                    f"conv2d_single, image {h}x{w}, kernel {kh}x{kw}",
                    out,
                    expected_shape,
                    hint="'valid' mode keeps only positions where the kernel lies inside the "
                    "image: (H - kh + 1) x (W - kw + 1), no padding",
                )
            if not (np.array_equal(image, image_copy) and np.array_equal(kernel, kernel_copy)):
                check_true(
                    "conv2d_single leaves its inputs alone",
                    False,
                    "the image or the kernel was changed in place",
                    hint="flip a copy (kernel[::-1, ::-1] is a view; don't assign into it)",
                )
            scipy_ref = scipy.signal.convolve2d(image, kernel, mode="valid")
            if not np.allclose(out, scipy_ref, rtol=0, atol=TOL):
                check_close(
                    f"conv2d_single, image {h}x{w}, kernel {kh}x{kw} = scipy.signal.convolve2d",
                    out,
                    scipy_ref,
                    atol=TOL,
                    hint=_single_hint(image, kernel, out),
                )
            flipped = np.flip(kernel, axis=(0, 1))
            torch_ref = F.conv2d(_nchw(image)[None, None], _nchw(flipped)[None, None])[0, 0]
            outs.append(out.ravel())
            scipy_refs.append(scipy_ref.ravel())
            torch_refs.append(torch_ref.numpy().ravel())
        check_true(
            "conv2d_single output shapes",
            True,
            f"(H - kh + 1, W - kw + 1) for all {len(_SINGLE_SHAPES)} image/kernel sizes",
        )
        all_out = np.concatenate(outs)
        check_close(
            f"conv2d_single = scipy.signal.convolve2d ({len(_SINGLE_SHAPES)} sizes)",
            all_out,
            np.concatenate(scipy_refs),
            atol=TOL,
        )
        check_close(
            "conv2d_single = F.conv2d with the flipped kernel",
            all_out,
            np.concatenate(torch_refs),
            atol=TOL,
            hint="F.conv2d computes a cross-correlation; with the kernel flipped it must "
            "agree with a true convolution",
        )
        image, kernel = _normal(g, 40, 48), _normal(g, 4, 3)
        _check_no_pixel_loop("conv2d_single", conv2d_single, (image, kernel), 37 * 46)


# ------------------------------------------------------------------ multi channel
def _multi_reference(x, weight, bias=None) -> np.ndarray:
    c_out, c_in = weight.shape[:2]
    out = np.stack(
        [
            sum(scipy.signal.convolve2d(x[c], weight[o, c], mode="valid") for c in range(c_in))
            for o in range(c_out)
        ]
    )
    if bias is not None:
        out = out + bias[:, None, None]
    return out


def _multi_hint(x, weight, bias, out) -> str:
    candidates = {
        "all axes": _multi_reference(x, weight[::-1, ::-1], bias),
        "correlation": F.conv2d(
            _nchw(x)[None], _nchw(weight), None if bias is None else _nchw(bias)
        )[0].numpy(),
        "mean": _multi_reference(x, weight / weight.shape[1], bias),
    }
    if bias is not None:
        candidates["no bias"] = _multi_reference(x, weight)
    diagnosis = _closest(out, candidates)
    if diagnosis == "all axes":
        return (
            "np.flip(weight) flips ALL four axes, so it also reverses the order of the "
            "output and input channels: flip only the two spatial axes, weight[..., ::-1, ::-1]"
        )
    if diagnosis == "correlation":
        return "that is the cross-correlation (F.conv2d); a convolution flips each kernel first"
    if diagnosis == "mean":
        return "sum over the input channels, don't average them"
    if diagnosis == "no bias":
        return "add bias[o] to every pixel of output channel o"
    return (
        "out[o] = sum over c of conv2d(x[c], weight[o, c]) (+ bias[o]); check the einsum "
        "indices: the input channel c must be summed, the output channel o kept"
    )


def check_conv2d_multi(conv2d_multi) -> None:
    """Multi-channel convolution: C_in summed, one kernel per (output, input) channel, bias."""
    with exercise("conv2d_multi"):
        g = torch.Generator().manual_seed(3002)
        outs, scipy_refs, torch_refs = [], [], []
        for k, (c_in, c_out, h, w, kh, kw) in enumerate(_MULTI_SHAPES):
            x, weight = _normal(g, c_in, h, w), _normal(g, c_out, c_in, kh, kw)
            bias = _normal(g, c_out) if k % 2 else None
            args = (x, weight) if bias is None else (x, weight, bias)
            out = _as_float64("conv2d_multi", conv2d_multi(*args))
            label = f"C_in={c_in}, C_out={c_out}, image {h}x{w}, kernel {kh}x{kw}"
            expected_shape = (c_out, h - kh + 1, w - kw + 1)
            if out.shape != expected_shape:
                check_shape(
                    f"conv2d_multi, {label}",
                    out,
                    expected_shape,
                    hint="the output has one channel per kernel: [C_out, H - kh + 1, W - kw + 1]",
                )
            scipy_ref = _multi_reference(x, weight, bias)
            if not np.allclose(out, scipy_ref, rtol=0, atol=TOL):
                check_close(
                    f"conv2d_multi, {label}" + (", with bias" if bias is not None else ""),
                    out,
                    scipy_ref,
                    atol=TOL,
                    hint=_multi_hint(x, weight, bias, out),
                )
            torch_ref = F.conv2d(
                _nchw(x)[None],
                _nchw(np.flip(weight, axis=(2, 3))),
                None if bias is None else _nchw(bias),
            )[0]
            outs.append(out.ravel())
            scipy_refs.append(scipy_ref.ravel())
            torch_refs.append(torch_ref.numpy().ravel())
        check_true(
            "conv2d_multi output shapes",
            True,
            f"[C_out, H - kh + 1, W - kw + 1] for all {len(_MULTI_SHAPES)} settings",
        )
        all_out = np.concatenate(outs)
        check_close(
            "conv2d_multi = sum over C_in of scipy.signal.convolve2d (+ bias)",
            all_out,
            np.concatenate(scipy_refs),
            atol=TOL,
        )
        check_close(
            "conv2d_multi = F.conv2d with the flipped kernels",
            all_out,
            np.concatenate(torch_refs),
            atol=TOL,
        )
        x, weight = _normal(g, 3, 40, 48), _normal(g, 4, 3, 4, 3)
        _check_no_pixel_loop("conv2d_multi", conv2d_multi, (x, weight), 37 * 46)


# -------------------------------------------------------------------- output shape
def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


_SHAPE_GRID = [
    (h, w, k, p, s)
    for h, w in [(5, 5), (7, 12), (28, 28), (32, 17)]
    for k in [1, 2, 3, (5, 3)]
    for p in [0, 1, (2, 0)]
    for s in [1, 2, (3, 1)]
]


def _nn_conv2d_shapes() -> dict:
    """What nn.Conv2d gives for every setting of the grid that fits."""
    shapes = {}
    with torch.random.fork_rng(devices=[]), torch.no_grad():  # layer initialisation draws numbers
        for h, w, k, p, s in _SHAPE_GRID:
            (kh, kw), (ph, pw) = _pair(k), _pair(p)
            if h + 2 * ph >= kh and w + 2 * pw >= kw:
                layer = nn.Conv2d(1, 1, kernel_size=k, padding=p, stride=s)
                shapes[(h, w, k, p, s)] = tuple(layer(torch.zeros(1, 1, h, w)).shape[2:])
    return shapes


def check_conv_output_shape(conv_output_shape) -> None:
    """(H_out, W_out) for kernel size, padding and stride (ints or pairs) against nn.Conv2d."""
    with exercise("conv_output_shape"):
        _torch_shapes = _nn_conv2d_shapes()
        checked = 0
        for h, w, k, p, s in _SHAPE_GRID:
            (kh, kw), (ph, pw) = _pair(k), _pair(p)
            if h + 2 * ph < kh or w + 2 * pw < kw:
                continue
            expected = _torch_shapes[(h, w, k, p, s)]
            label = f"conv_output_shape(H={h}, W={w}, kernel_size={k}, padding={p}, stride={s})"
            try:
                got = conv_output_shape(h, w, k, padding=p, stride=s)
            except NotImplementedError:
                raise
            except Exception as e:  # noqa: BLE001 - any error is the student's to see
                pairs = any(not isinstance(v, int) for v in (k, p, s))
                check_true(
                    label,
                    False,
                    f"raised {type(e).__name__}: {e}",
                    hint="kernel_size, padding and stride may each be an int or a pair (height, "
                    "width): turn each into a pair first"
                    if pairs
                    else "this kernel fits into the padded input: only raise when H + 2p < k",
                )
            if not (isinstance(got, (tuple, list)) and len(got) == 2):
                check_true(label, False, f"returned {got!r}", hint="return a pair (H_out, W_out)")
            if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in got):
                check_true(
                    label,
                    False,
                    f"returned {got!r}: not integers",
                    hint="sizes are whole numbers: use floor division //, not /",
                )
            if tuple(int(v) for v in got) != expected:
                check_true(
                    label,
                    False,
                    f"returned {tuple(got)}, nn.Conv2d gives {expected}",
                    hint="H_out = floor((H + 2 p - k) / s) + 1, with the padding added on BOTH "
                    "sides; kernel_size, padding and stride may each be an int or a pair "
                    "(height, width)",
                )
            checked += 1
        check_true(
            "conv_output_shape = nn.Conv2d",
            True,
            f"{checked} settings of (H, W, kernel size, padding, stride) agree",
        )
        try:
            conv_output_shape(4, 10, 5)
        except ValueError:
            check_true(
                "conv_output_shape refuses a kernel that does not fit",
                True,
                "ValueError for a 5x5 kernel on a 4x10 input",
            )
        else:
            check_true(
                "conv_output_shape refuses a kernel that does not fit",
                False,
                "no ValueError for a 5x5 kernel on a 4x10 input",
                hint="raise ValueError(...) when H + 2p < kh or W + 2p < kw",
            )
