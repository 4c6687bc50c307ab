"""Self-checks of assignment 4 (a CNN for MNIST): ``solutions/04_mnist_cnn.ipynb``.

The checks never touch the global random state (their data come from local generators,
their modules are initialised inside ``torch.random.fork_rng``) and run on the CPU in well
under a second each.
"""

from __future__ import annotations

import copy
import math
import numbers
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_close, check_shape, check_true
from . import exercise

__all__ = [
    "check_accuracy",
    "check_model",
    "check_predict_shapes",
    "check_preprocess_digit",
    "check_train_one_epoch",
]

N_PARAMETERS = 20 * 1 * 5 * 5 + 20 + 720 * 10 + 10  # 7,730
_LAYERS = ("conv1", "relu", "pool1", "flatten", "fc1")


def _module(build, seed: int):
    """Build a module with a fixed seed, leaving the global random state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


# ------------------------------------------------------------------------- shapes
def _true_shapes(n: int, h: int, w: int) -> dict[str, tuple[int, ...]]:
    x = torch.zeros(n, 1, h, w)
    conv = F.conv2d(x, torch.zeros(20, 1, 5, 5), stride=2)
    pool = F.max_pool2d(F.relu(conv), kernel_size=2)
    flat = torch.flatten(pool, start_dim=1)
    return {
        "conv1": tuple(conv.shape),
        "relu": tuple(conv.shape),
        "pool1": tuple(pool.shape),
        "flatten": tuple(flat.shape),
        "fc1": (n, 10),
    }


def check_predict_shapes(predict_shapes) -> None:
    """Predicted layer output shapes against the real layers, for several batch and image sizes."""
    with exercise("predict_shapes"):
        cases = [(6, 28, 28), (1, 28, 28), (4, 32, 32), (2, 29, 40), (3, 36, 21)]
        for_mnist = predict_shapes(6, 28, 28)
        for n, h, w in cases:
            got = predict_shapes(n, h, w)
            label = f"predict_shapes(n={n}, height={h}, width={w})"
            if not isinstance(got, dict) or set(got) != set(_LAYERS):
                keys = sorted(got) if isinstance(got, dict) else type(got).__name__
                check_true(
                    label,
                    False,
                    f"returned {keys}",
                    hint=f"return a dict with the keys {', '.join(_LAYERS)}",
                )
            expected = _true_shapes(n, h, w)
            for layer in _LAYERS:
                shape = tuple(int(v) for v in got[layer])
                if shape != expected[layer]:
                    if (n, h, w) != (6, 28, 28) and got == for_mnist:
                        hint = (
                            "the shapes do not change with the input: compute them from n, "
                            "height and width instead of writing down the numbers for 6 images "
                            "of 28 x 28"
                        )
                    else:
                        hint = {
                            "conv1": "a 5x5 kernel with stride 2 and no padding: "
                            "floor((H - 5) / 2) + 1 rows, 20 channels",
                            "relu": "ReLU works elementwise: it does not change the shape",
                            "pool1": "2x2 max-pooling halves height and width, rounding down",
                            "flatten": "flatten keeps the batch dimension and multiplies the rest: "
                            "channels * height * width",
                            "fc1": "the linear layer outputs one logit per class",
                        }[layer]
                    check_true(
                        f"{label}['{layer}']",
                        False,
                        f"{shape}, but the layer gives {expected[layer]}",
                        hint=hint,
                    )
        check_true(
            "predict_shapes = the real layers",
            True,
            f"{len(cases)} batch/image sizes, {len(_LAYERS)} layers each",
        )


# -------------------------------------------------------------------------- model
def check_model(model_class) -> None:
    """The course CNN: an nn.Module with 7,730 parameters whose forward is conv→ReLU→pool→linear."""
    with exercise("CourseCNN"):
        model = _module(model_class, seed=4002)
        check_true(
            "CourseCNN is an nn.Module",
            isinstance(model, nn.Module),
            f"an instance of {type(model).__name__}",
            hint="class CourseCNN(nn.Module) and call super().__init__() first",
        )
        count = sum(p.numel() for p in model.parameters())
        check_true(
            "CourseCNN parameters",
            count == N_PARAMETERS,
            f"{count:,} parameters (conv 20*1*5*5 + 20, linear 720*10 + 10 = {N_PARAMETERS:,})",
            hint="nn.Conv2d(1, 20, kernel_size=5, stride=2), nn.MaxPool2d(2), nn.Linear(720, 10), "
            "all created in __init__ and stored as attributes (self.conv1 = ...)",
        )
        g = torch.Generator().manual_seed(4002)
        x = torch.rand(6, 1, 28, 28, generator=g)
        with torch.no_grad():
            check_shape(
                "CourseCNN output on a batch of 6",
                model(x),
                (6, 10),
                hint="forward must return one row of 10 logits per image",
            )
            check_shape(
                "CourseCNN output on a batch of 1",
                model(x[:1]),
                (1, 10),
                hint="flatten with torch.flatten(x, start_dim=1): keep the batch dimension",
            )

        model64 = copy.deepcopy(model).double()
        params = {tuple(p.shape): p for p in model64.parameters()}
        w_conv, b_conv = params[(20, 1, 5, 5)], params[(20,)]
        w_fc, b_fc = params[(10, 720)], params[(10,)]
        x64 = x.double()
        with torch.no_grad():
            out = model64(x64)
            conv = F.conv2d(x64, w_conv, b_conv, stride=2)
            ref = F.linear(torch.flatten(F.max_pool2d(F.relu(conv), 2), 1), w_fc, b_fc)
            no_relu = F.linear(torch.flatten(F.max_pool2d(conv, 2), 1), w_fc, b_fc)
        if torch.allclose(out, torch.softmax(ref, dim=1), atol=1e-8):
            hint = (
                "forward returns probabilities: return the logits and leave the softmax to "
                "F.cross_entropy (and to torch.softmax when you need probabilities)"
            )
        elif torch.allclose(out, torch.log_softmax(ref, dim=1), atol=1e-8):
            hint = "forward returns log-probabilities: return the logits (no log_softmax)"
        elif torch.allclose(out, no_relu, atol=1e-8):
            hint = "the ReLU is missing between the convolution and the pooling"
        else:
            hint = "conv1 (stride 2) -> ReLU -> max-pool 2x2 -> flatten -> fc1; nothing after fc1"
        check_close(
            "CourseCNN forward = conv -> ReLU -> max-pool -> linear (same weights, float64)",
            out,
            ref,
            atol=1e-10,
            hint=hint,
        )


# ----------------------------------------------------------------------- training
class _GradientRecorder(torch.optim.Optimizer):
    """An 'optimizer' that never moves the parameters and records their gradients at each step."""

    def __init__(self, params):
        super().__init__(params, {})
        self.recorded: list[torch.Tensor] = []

    @torch.no_grad()
    def step(self, closure=None):
        grads = [
            torch.zeros_like(p) if p.grad is None else p.grad.detach().clone()
            for group in self.param_groups
            for p in group["params"]
        ]
        self.recorded.append(torch.cat([gr.flatten() for gr in grads]))


def _tiny_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)
    ).double()


def _record_epoch(train_one_epoch, model, X, y, batch_size, seed):
    """Run one epoch with a gradient recorder; return (losses, batches seen, gradients)."""
    seen: list[torch.Tensor] = []

    def hook(module, inputs, output):
        if torch.is_grad_enabled():
            seen.append(inputs[0].detach().clone())

    handle = model.register_forward_hook(hook)
    recorder = _GradientRecorder(model.parameters())
    try:
        losses = train_one_epoch(
            model, recorder, X, y, batch_size, torch.Generator().manual_seed(seed)
        )
    finally:
        handle.remove()
    return losses, seen, recorder.recorded


def _indices(X: torch.Tensor, batch: torch.Tensor) -> torch.Tensor | None:
    """Row numbers of X that the images of ``batch`` are (None if one is not in X)."""
    match = (batch.flatten(1)[:, None, :] == X.flatten(1)[None, :, :]).all(dim=2)
    if batch.shape[1:] != X.shape[1:] or not bool(match.any(dim=1).all()):
        return None
    return match.float().argmax(dim=1)


def check_train_one_epoch(train_one_epoch) -> None:
    """One epoch of mini-batch training: every image once, shuffled, zero_grad, mean loss, a step per batch."""
    with exercise("train_one_epoch"):
        g = torch.Generator().manual_seed(4003)
        n, batch_size = 50, 16
        n_steps = math.ceil(n / batch_size)
        X = torch.randn(n, 1, 6, 6, generator=g, dtype=torch.float64)
        y = torch.randint(0, 3, (n,), generator=g)
        model = _module(_tiny_cnn, seed=4003)

        losses, seen, grads = _record_epoch(train_one_epoch, model, X, y, batch_size, seed=0)
        if not isinstance(losses, (list, tuple)) or len(losses) != n_steps:
            got = (
                f"{len(losses)} values"
                if isinstance(losses, (list, tuple))
                else type(losses).__name__
            )
            check_true(
                "train_one_epoch returns one loss per mini-batch",
                False,
                f"{got} for {n} images in mini-batches of {batch_size} ({n_steps} batches)",
                hint="return a list with the loss of every mini-batch; the last batch may "
                "be smaller (here 2 images) and still counts",
            )
        if not all(isinstance(v, numbers.Real) for v in losses):
            check_true(
                "train_one_epoch returns Python floats",
                False,
                f"the list holds {type(losses[0]).__name__}",
                hint="append loss.item(): a tensor would keep its whole computation graph alive",
            )
        check_true(
            "one loss per mini-batch",
            True,
            f"{n_steps} batches for {n} images, batch size {batch_size}",
        )
        if len(grads) != n_steps or len(seen) != n_steps:
            check_true(
                "one forward pass and one optimizer step per mini-batch",
                False,
                f"{len(seen)} forward passes and {len(grads)} calls of optimizer.step() "
                f"for {n_steps} mini-batches",
                hint="per mini-batch: forward, loss, zero_grad, backward, optimizer.step()",
            )

        idx = [_indices(X, xb) for xb in seen]
        if any(i is None for i in idx):
            check_true(
                "the model sees the training images",
                False,
                "an input batch is not made of rows of X",
                hint="pass X[batch_indices] to the model unchanged",
            )
        order = torch.cat(idx)
        check_true(
            "every image exactly once per epoch",
            torch.equal(order.sort().values, torch.arange(n)),
            f"{len(order)} images seen, {len(order.unique())} different, of {n}",
            hint="slice a permutation: order[start:start + batch_size] for start in "
            "range(0, n, batch_size)",
        )
        check_true(
            "the images are shuffled",
            not torch.equal(order, torch.arange(n)),
            "a new random order each epoch",
            hint="order = torch.randperm(n, generator=generator), then take the batches from it",
        )

        ref_grads, ref_losses = [], []
        for i in idx:
            loss = F.cross_entropy(model(X[i]), y[i])
            ref_losses.append(loss.item())
            ref_grads.append(
                torch.cat(
                    [gr.flatten() for gr in torch.autograd.grad(loss, list(model.parameters()))]
                )
            )
        got, ref = torch.stack(grads), torch.stack(ref_grads)
        if not got.abs().max() > 0:
            hint = (
                "the gradients are zero when optimizer.step() runs: call zero_grad() BEFORE "
                "loss.backward(), not between backward() and step()"
            )
        elif torch.allclose(got, ref.cumsum(dim=0), atol=1e-10):
            hint = (
                "the gradient at each step is the SUM of all gradients so far: call "
                "optimizer.zero_grad() before loss.backward() in every step"
            )
        elif torch.allclose(
            got, ref * torch.tensor([len(i) for i in idx], dtype=ref.dtype)[:, None], atol=1e-10
        ):
            hint = "use the MEAN loss over the mini-batch (F.cross_entropy's default), not the sum"
        else:
            hint = "loss = F.cross_entropy(model(xb), yb) with the labels of the same images"
        check_close(
            "gradients do not accumulate: each step uses its own batch's gradient",
            got,
            ref,
            atol=1e-10,
            hint=hint,
        )
        check_close(
            "returned losses = mean cross-entropy of each mini-batch",
            torch.tensor(losses, dtype=torch.float64),
            torch.tensor(ref_losses, dtype=torch.float64),
            atol=1e-10,
            hint="append loss.item() of each batch, in the order of the steps",
        )

        model2 = _module(_tiny_cnn, seed=4003)
        _, seen2, _ = _record_epoch(train_one_epoch, model2, X, y, batch_size, seed=0)
        idx2 = [_indices(X, xb) for xb in seen2]
        same = len(idx2) == len(idx) and all(
            a is not None and torch.equal(a, b) for a, b in zip(idx2, idx)
        )
        check_true(
            "shuffling uses the generator argument",
            same,
            "the same generator seed gives the same batches"
            if same
            else "two runs with equally seeded generators gave different batches",
            hint="draw the order with torch.randperm(n, generator=generator), not with "
            "np.random or the global torch random state, so that runs are reproducible",
        )

        # A learnable problem: labels from a linear "teacher"; five epochs of Adam must help.
        Xs = torch.randn(240, 1, 6, 6, generator=g)
        ys = (Xs.flatten(1) @ torch.randn(36, 3, generator=g)).argmax(dim=1)
        student = _module(lambda: nn.Sequential(nn.Flatten(), nn.Linear(36, 3)), seed=4004)
        optimizer = torch.optim.Adam(student.parameters(), lr=0.02)
        with torch.no_grad():
            before = F.cross_entropy(student(Xs), ys).item()
        epoch_means = []
        for epoch in range(5):
            epoch_losses = train_one_epoch(
                student, optimizer, Xs, ys, 24, torch.Generator().manual_seed(epoch)
            )
            epoch_means.append(float(np.mean(epoch_losses)))
        with torch.no_grad():
            after = F.cross_entropy(student(Xs), ys).item()
        check_true(
            "the loss decreases with Adam on a small problem",
            after < 0.5 * before,
            f"loss {before:.3f} -> {after:.3f} in 5 epochs",
            hint="call optimizer.step() after loss.backward() in every step",
        )


# ----------------------------------------------------------------------- accuracy
def check_accuracy(accuracy_from_logits) -> None:
    """Fraction of rows whose arg-max equals the label, against a reference on random logits."""
    with exercise("accuracy_from_logits"):
        g = torch.Generator().manual_seed(4005)
        got, ref = [], []
        for n in (1, 37, 500, 40):
            logits = torch.randn(n, 10, generator=g)
            y = torch.randint(0, 10, (n,), generator=g)
            if n == 40:  # exactly 28 of 40 right
                y = logits.argmax(dim=1)
                y[:12] = (y[:12] + 1 + torch.randint(0, 9, (12,), generator=g)) % 10
            value = accuracy_from_logits(logits, y)
            expected = (logits.argmax(dim=1) == y).double().mean().item()
            if not isinstance(value, float):
                check_true(
                    "accuracy_from_logits returns a Python float",
                    False,
                    f"returned {type(value).__name__}",
                    hint="turn a one-element tensor into a number with .item()",
                )
            got.append(value)
            ref.append(expected)
            if abs(value - expected) > 1e-6:
                correct = round(expected * n)
                if abs(value - correct) < 1e-6 and n > 1:
                    hint = "that is the number of correct predictions: divide by the number of examples"
                elif abs(value - 100 * expected) < 1e-4:
                    hint = "return a fraction in [0, 1], not a percentage"
                elif abs(value - (1 - expected)) < 1e-6:
                    hint = "that is the error rate: count predictions EQUAL to the label"
                else:
                    hint = "predicted class = logits.argmax(dim=1) (one per row); compare with y, average"
                check_close(
                    f"accuracy_from_logits on {n} random rows",
                    value,
                    expected,
                    atol=1e-6,
                    hint=hint,
                )
        check_close(
            "accuracy_from_logits = mean(argmax(logits, dim=1) == y) on random logits",
            got,
            ref,
            atol=1e-6,
        )


# ---------------------------------------------------------------------- preprocess
def _reference_preprocess(path) -> torch.Tensor:
    from PIL import Image

    a = np.asarray(Image.open(path).convert("L").resize((28, 28)), dtype=np.float64) / 255.0
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    if border.mean() > 0.5:
        a = 1.0 - a
    return torch.tensor(a, dtype=torch.float32).view(1, 1, 28, 28)


def _test_images(folder: Path, g: torch.Generator) -> list[tuple[Path, str]]:
    """Two digit-like images: dark ink on white paper (colour, not square) and light on dark."""
    from PIL import Image, ImageDraw

    paper = Image.new("RGB", (96, 120), (246, 244, 238))
    pen = ImageDraw.Draw(paper)
    pen.ellipse((22, 18, 74, 102), outline=(25, 35, 95), width=13)  # a "0" in blue ink
    noise = torch.randint(-6, 7, (120, 96, 1), generator=g).numpy()
    paper = Image.fromarray(
        np.clip(np.asarray(paper, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    )
    white = folder / "on_white_paper.png"
    paper.save(white)

    board = Image.new("L", (84, 84), 0)
    pen = ImageDraw.Draw(board)
    pen.line([(42, 12), (42, 72)], fill=255, width=10)  # a "1" with a flag, white on black
    pen.line([(42, 12), (28, 26)], fill=255, width=10)
    dark = folder / "on_dark_background.png"
    board.save(dark)
    return [
        (white, "dark ink on white paper (RGB, 96x120)"),
        (dark, "white ink on black (grey, 84x84)"),
    ]


def check_preprocess_digit(preprocess_digit) -> None:
    """An image file → float32 tensor [1, 1, 28, 28] in [0, 1], white digit on black."""
    with exercise("preprocess_digit"):
        g = torch.Generator().manual_seed(4006)
        with tempfile.TemporaryDirectory() as folder:
            for path, what in _test_images(Path(folder), g):
                x = preprocess_digit(str(path))
                ref = _reference_preprocess(path)
                label = f"preprocess_digit, {what}"
                if not isinstance(x, torch.Tensor):
                    check_true(
                        label,
                        False,
                        f"returned {type(x).__name__}",
                        hint="return a torch tensor: torch.tensor(array, dtype=torch.float32)",
                    )
                if tuple(x.shape) != (1, 1, 28, 28):
                    if x.numel() == 28 * 28:
                        hint = "add the batch and channel dimensions: x.view(1, 1, 28, 28)"
                    else:
                        hint = (
                            "resize to exactly 28 x 28 with img.resize((28, 28)); thumbnail() "
                            "keeps the aspect ratio, so a photo that is not square does not "
                            "come out as 28 x 28"
                        )
                    check_shape(label, x, (1, 1, 28, 28), hint=hint)
                if x.dtype != torch.float32:
                    check_true(
                        label,
                        False,
                        f"dtype {x.dtype}",
                        hint="the model's weights are float32: use dtype=torch.float32",
                    )
                if not (0.0 <= x.min().item() and x.max().item() <= 1.0):
                    check_true(
                        label,
                        False,
                        f"values in [{x.min().item():.3g}, {x.max().item():.3g}]",
                        hint="divide the 0..255 grey values by 255",
                    )
                border = (
                    torch.cat([x[0, 0, 0], x[0, 0, -1], x[0, 0, :, 0], x[0, 0, :, -1]])
                    .mean()
                    .item()
                )
                if border > 0.25:
                    hint = (
                        "MNIST digits are white on black: invert (x -> 1 - x) when the background "
                        "is light, e.g. when the mean of the border pixels is above 0.5"
                        if "white paper" in what
                        else "this image already has a dark background: invert only when the "
                        "background is light (e.g. mean of the border pixels above 0.5)"
                    )
                    check_true(
                        label,
                        False,
                        f"the background came out light (border mean {border:.2f})",
                        hint=hint,
                    )
                diff = (x - ref).abs().mean().item()
                if diff > 0.08:
                    check_true(
                        label,
                        False,
                        f"mean |difference| {diff:.3f} from convert('L') + resize((28, 28)) + /255",
                        hint="grey, resize the whole image to 28 x 28, scale, invert a light "
                        "background; don't crop, pad or blur",
                    )
        check_true(
            "preprocess_digit",
            True,
            "grey, 28 x 28, in [0, 1], white digit on black, shape [1, 1, 28, 28] (2 test images)",
        )
