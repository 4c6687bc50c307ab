"""Assignment 04 (MNIST CNN): the checks pass the solution, fail plausible mistakes, flag stubs."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nbdefs import definitions
from PIL import Image
from selfchecks import assert_fails, assert_passes, assert_stub_gets_todo, stub
from torch import nn

from utils import minibatches
from utils.exercises import mnist_cnn as checks

sol = definitions("04_mnist_cnn", folder="solutions")


class StubCNN(nn.Module):
    def __init__(self):
        super().__init__()
        raise NotImplementedError()


# ------------------------------------------------------------------- shapes
def hard_coded_shapes(n, height=28, width=28):
    return {
        "conv1": (6, 20, 12, 12),
        "relu": (6, 20, 12, 12),
        "pool1": (6, 20, 6, 6),
        "flatten": (6, 720),
        "fc1": (6, 10),
    }


def _shapes(n, h1, w1, h2, w2):
    return {
        "conv1": (n, 20, h1, w1),
        "relu": (n, 20, h1, w1),
        "pool1": (n, 20, h2, w2),
        "flatten": (n, 20 * h2 * w2),
        "fc1": (n, 10),
    }


def no_stride_shapes(n, height=28, width=28):
    h1, w1 = height - 5 + 1, width - 5 + 1
    return _shapes(n, h1, w1, h1 // 2, w1 // 2)


def ceil_pool_shapes(n, height=28, width=28):
    h1, w1 = (height - 5) // 2 + 1, (width - 5) // 2 + 1
    return _shapes(n, h1, w1, -(-h1 // 2), -(-w1 // 2))


def flatten_without_batch_shapes(n, height=28, width=28):
    shapes = sol.predict_shapes(n, height, width)
    shapes["flatten"] = (shapes["flatten"][1],)
    return shapes


# -------------------------------------------------------------------- models
class SequentialCNN(nn.Module):
    """Different attribute names and pool-before-ReLU (the same function): correct."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 20, 5, stride=2),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(720, 10),
        )

    def forward(self, x):
        return self.net(x)


class SoftmaxCNN(sol.CourseCNN):
    """The notes' model: softmax at the end of forward."""

    def forward(self, x):
        return torch.softmax(super().forward(x), dim=1)


class LogSoftmaxCNN(sol.CourseCNN):
    def forward(self, x):
        return torch.log_softmax(super().forward(x), dim=1)


class NoReluCNN(sol.CourseCNN):
    def forward(self, x):
        return self.fc1(torch.flatten(self.pool1(self.conv1(x)), start_dim=1))


class NoBiasCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5, stride=2, bias=False)
        self.fc1 = nn.Linear(720, 10)

    def forward(self, x):
        return self.fc1(torch.flatten(F.max_pool2d(torch.relu(self.conv1(x)), 2), start_dim=1))


# ------------------------------------------------------------------ training
def _step(model, optimizer, xb, yb, *, reduction="mean", zero=True):
    loss = F.cross_entropy(model(xb), yb, reduction=reduction)
    if zero:
        optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss


def with_utils_minibatches(model, optimizer, X, y, batch_size, generator):
    """utils.minibatches draws the same permutation: correct."""
    return [
        _step(model, optimizer, xb, yb).item()
        for xb, yb in minibatches(X, y, batch_size=batch_size, generator=generator)
    ]


def model_zero_grad(model, optimizer, X, y, batch_size, generator):
    """model.zero_grad() resets the same gradients: correct."""
    order, losses = torch.randperm(len(X), generator=generator), []
    for start in range(0, len(X), batch_size):
        idx = order[start : start + batch_size]
        loss = F.cross_entropy(model(X[idx]), y[idx])
        model.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def _loop(order_fn, **step_kwargs):
    def train(model, optimizer, X, y, batch_size, generator):
        order, losses = order_fn(len(X), generator), []
        for start in range(0, len(X), batch_size):
            idx = order[start : start + batch_size]
            losses.append(_step(model, optimizer, X[idx], y[idx], **step_kwargs).item())
        return losses

    return train


shuffled = lambda n, gen: torch.randperm(n, generator=gen)
no_zero_grad = _loop(shuffled, zero=False)
summed_loss = _loop(shuffled, reduction="sum")
no_shuffle = _loop(lambda n, gen: torch.arange(n))
global_rng_shuffle = _loop(lambda n, gen: torch.randperm(n))
numpy_shuffle = _loop(lambda n, gen: torch.from_numpy(np.random.permutation(n)))


def drops_last_batch(model, optimizer, X, y, batch_size, generator):
    order, losses = torch.randperm(len(X), generator=generator), []
    for start in range(0, len(X) - batch_size + 1, batch_size):
        idx = order[start : start + batch_size]
        losses.append(_step(model, optimizer, X[idx], y[idx]).item())
    return losses


def returns_tensors(model, optimizer, X, y, batch_size, generator):
    order, losses = torch.randperm(len(X), generator=generator), []
    for start in range(0, len(X), batch_size):
        idx = order[start : start + batch_size]
        losses.append(_step(model, optimizer, X[idx], y[idx]))
    return losses


def no_step(model, optimizer, X, y, batch_size, generator):
    order, losses = torch.randperm(len(X), generator=generator), []
    for start in range(0, len(X), batch_size):
        idx = order[start : start + batch_size]
        loss = F.cross_entropy(model(X[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        losses.append(loss.item())
    return losses


def zero_grad_after_backward(model, optimizer, X, y, batch_size, generator):
    order, losses = torch.randperm(len(X), generator=generator), []
    for start in range(0, len(X), batch_size):
        idx = order[start : start + batch_size]
        loss = F.cross_entropy(model(X[idx]), y[idx])
        loss.backward()
        optimizer.zero_grad()
        optimizer.step()
        losses.append(loss.item())
    return losses


# ------------------------------------------------------------------ accuracy
def count_correct(logits, y):
    return float((logits.argmax(dim=1) == y).sum().item())


def percent(logits, y):
    return 100 * sol.accuracy_from_logits(logits, y)


def error_rate(logits, y):
    return 1 - sol.accuracy_from_logits(logits, y)


def tensor_accuracy(logits, y):
    return (logits.argmax(dim=1) == y).float().mean()


# ---------------------------------------------------------------- preprocess
def _grey(path):
    return np.asarray(Image.open(path).convert("L"), dtype=np.float64) / 255.0


def _light_background(a):
    return np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]]).mean() > 0.5


def _finish(a):
    return torch.tensor(a, dtype=torch.float32).view(1, 1, 28, 28)


def bilinear_invert_first(path):
    """Invert by the mean of all pixels, then a bilinear resize: correct."""
    a = _grey(path)
    if a.mean() > 0.5:
        a = 1 - a
    small = Image.fromarray(np.uint8(np.round(a * 255))).resize((28, 28), Image.Resampling.BILINEAR)
    return _finish(np.asarray(small, dtype=np.float64) / 255.0)


def never_inverts(path):
    return _finish(
        np.asarray(Image.open(path).convert("L").resize((28, 28)), dtype=np.float64) / 255
    )


def always_inverts(path):
    return 1 - never_inverts(path)


def no_scaling(path):
    return never_inverts(path) * 255


def thumbnail(path):
    img = Image.open(path).convert("L")
    img.thumbnail((28, 28))
    a = np.asarray(img, dtype=np.float64) / 255.0
    a = 1 - a if _light_background(a) else a
    return torch.tensor(a, dtype=torch.float32)[None, None]


def no_batch_dims(path):
    return sol.preprocess_digit(path)[0, 0]


def float64_result(path):
    return sol.preprocess_digit(path).double()


def numpy_result(path):
    return sol.preprocess_digit(path).numpy()


def crops_to_the_ink(path):
    """The lecture's fuller pipeline crops and rescales: not what this exercise asks."""
    a = _grey(path)
    a = 1 - a if _light_background(a) else a
    rows, cols = np.nonzero(a > 0.5)
    a = a[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    small = Image.fromarray(np.uint8(np.round(a * 255))).resize((28, 28))
    return _finish(np.asarray(small, dtype=np.float64) / 255.0)


# -------------------------------------------------------------------------- tests
CORRECT = [
    (checks.check_predict_shapes, sol.predict_shapes),
    (checks.check_model, sol.CourseCNN),
    (checks.check_model, SequentialCNN),
    (checks.check_train_one_epoch, sol.train_one_epoch),
    (checks.check_train_one_epoch, with_utils_minibatches),
    (checks.check_train_one_epoch, model_zero_grad),
    (checks.check_accuracy, sol.accuracy_from_logits),
    (checks.check_preprocess_digit, sol.preprocess_digit),
    (checks.check_preprocess_digit, bilinear_invert_first),
]

WRONG = [
    (checks.check_predict_shapes, hard_coded_shapes, "do not change with the input"),
    (checks.check_predict_shapes, no_stride_shapes, "stride 2"),
    (checks.check_predict_shapes, ceil_pool_shapes, "rounding down"),
    (checks.check_predict_shapes, flatten_without_batch_shapes, "keeps the batch dimension"),
    (checks.check_model, SoftmaxCNN, "returns probabilities"),
    (checks.check_model, LogSoftmaxCNN, "log-probabilities"),
    (checks.check_model, NoReluCNN, "ReLU is missing"),
    (checks.check_model, NoBiasCNN, "7,730"),
    (checks.check_train_one_epoch, no_zero_grad, "optimizer.zero_grad()"),
    (checks.check_train_one_epoch, zero_grad_after_backward, "BEFORE"),
    (checks.check_train_one_epoch, summed_loss, "MEAN loss"),
    (checks.check_train_one_epoch, no_shuffle, "randperm"),
    (checks.check_train_one_epoch, global_rng_shuffle, "generator"),
    (checks.check_train_one_epoch, numpy_shuffle, "generator"),
    (checks.check_train_one_epoch, drops_last_batch, "last batch"),
    (checks.check_train_one_epoch, returns_tensors, "loss.item()"),
    (checks.check_train_one_epoch, no_step, "optimizer.step()"),
    (checks.check_accuracy, count_correct, "divide by the number"),
    (checks.check_accuracy, percent, "percentage"),
    (checks.check_accuracy, error_rate, "error rate"),
    (checks.check_accuracy, tensor_accuracy, ".item()"),
    (checks.check_preprocess_digit, never_inverts, "white on black"),
    (checks.check_preprocess_digit, always_inverts, "already has a dark background"),
    (checks.check_preprocess_digit, no_scaling, "255"),
    (checks.check_preprocess_digit, thumbnail, "thumbnail"),
    (checks.check_preprocess_digit, no_batch_dims, "batch and channel"),
    (checks.check_preprocess_digit, float64_result, "float32"),
    (checks.check_preprocess_digit, numpy_result, "torch tensor"),
    (checks.check_preprocess_digit, crops_to_the_ink, "don't crop"),
]


@pytest.mark.parametrize("check, solution", CORRECT, ids=lambda v: getattr(v, "__name__", None))
def test_checks_pass_correct_answers(check, solution, capsys):
    assert_passes(capsys, check, solution)


@pytest.mark.parametrize("check, wrong, hint", WRONG, ids=lambda v: getattr(v, "__name__", None))
def test_checks_fail_plausible_mistakes(check, wrong, hint, capsys):
    assert_fails(capsys, check, wrong, says=hint)


@pytest.mark.parametrize(
    "check, stubbed",
    [
        (checks.check_predict_shapes, stub),
        (checks.check_model, StubCNN),
        (checks.check_train_one_epoch, stub),
        (checks.check_accuracy, stub),
        (checks.check_preprocess_digit, stub),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_checks_flag_stubs(check, stubbed, capsys):
    assert_stub_gets_todo(capsys, check, stubbed)


def test_checks_leave_the_global_random_state_alone():
    state = torch.get_rng_state()
    checks.check_predict_shapes(sol.predict_shapes)
    checks.check_model(sol.CourseCNN)
    checks.check_train_one_epoch(sol.train_one_epoch)
    checks.check_accuracy(sol.accuracy_from_logits)
    checks.check_preprocess_digit(sol.preprocess_digit)
    assert torch.equal(state, torch.get_rng_state())


def test_solution_model_trains_on_a_small_mnist_subset():
    """Ten epochs of the solution's loop on 1,000 images: the loss falls and beats chance."""
    from utils import load_mnist

    X, y = load_mnist(train=True, n=1000)
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = sol.CourseCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    means = [np.mean(sol.train_one_epoch(model, optimizer, X, y, 200, gen)) for _ in range(10)]
    assert means[-1] < 0.5 * means[0]
    with torch.no_grad():
        assert sol.accuracy_from_logits(model(X), y) > 0.8


def test_solution_preprocessing_of_an_mnist_image_is_the_identity(tmp_path):
    """An MNIST digit saved as a 28x28 PNG comes back unchanged (up to 8-bit rounding)."""
    from utils import load_mnist

    X, _ = load_mnist(train=False)
    path = tmp_path / "mnist.png"
    Image.fromarray(np.uint8(np.round(X[0, 0].numpy() * 255))).save(path)
    torch.testing.assert_close(sol.preprocess_digit(path), X[:1], atol=1 / 255, rtol=0)
