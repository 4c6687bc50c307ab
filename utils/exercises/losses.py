"""Self-checks of assignment 01: losses from maximum likelihood.

Exercises (lec3 sheet, problems 1-3; lecture notebooks/02_losses.ipynb):

1. ``simulate_regression`` and ``loss_fn_reg``   (linear regression, MSE)
2. ``sigmoid``, ``sample_labels`` and ``loss_fn_logistic``   (logistic regression, BCE)
3. ``one_hot``, ``softmax`` and ``loss_fn_softmax``   (softmax regression, cross-entropy)

Every check draws its own inputs from a local ``torch.Generator`` and compares the
student's function with ``torch.nn`` / ``torch.nn.functional``. The checks that call
functions which may sample from the global random number generator run inside
``torch.random.fork_rng``, so checking never changes the notebook's random numbers.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_close, check_shape, check_true
from . import call, exercise, generator, require, require_tensor

__all__ = [
    "check_loss_fn_logistic",
    "check_loss_fn_reg",
    "check_loss_fn_softmax",
    "check_one_hot",
    "check_sample_labels",
    "check_sigmoid",
    "check_simulate_regression",
    "check_softmax",
]

F64 = torch.float64


_CALL_HINT = "try your function on a small input and print the shapes of the intermediate results"


# ------------------------------------------------------------------------------ helpers
_gen = generator
_call = functools.partial(call, hint=_CALL_HINT)
_require = require


_SCALAR_HINT = (
    "return the loss as a 0-dimensional tensor (a mean over the observations), not a "
    "vector and not a Python float (.item() would cut it off from autograd)"
)
_AUTOGRAD_HINT = (
    "build the loss from torch operations only (no .item(), no NumPy, no float()), so "
    "that autograd can differentiate it"
)


def _scalar_loss(name: str, fn, *args, hint: str | None = None) -> torch.Tensor:
    loss = _call(name, fn, *args, hint=hint)
    require_tensor(name, loss, hint=_SCALAR_HINT)
    _require(loss.dim() == 0, name, f"returned shape {tuple(loss.shape)}", hint=_SCALAR_HINT)
    return loss


def _gradient(name: str, loss: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    _require(loss.requires_grad, name, "the loss is cut off from autograd", _AUTOGRAD_HINT)
    (grad,) = torch.autograd.grad(loss, param)
    return grad


# --------------------------------------------------------------- exercise 1: regression
def check_simulate_regression(simulate_regression) -> None:
    """Exercise 1a-d: ``simulate_regression(n, p, generator) -> (x, beta, y)``.

    x ~ N(0, 2) (variance 2), beta ~ Uniform(-1, 1), y = x beta + eps, eps ~ N(0, 0.1),
    in float64, every random number drawn from ``generator``. Checked on a large sample:
    shapes, dtype, reproducibility and the moments of x, beta and eps.
    """
    with exercise("simulate_regression"):
        n, p = 10_000, 50
        with torch.random.fork_rng(devices=[]):  # in case the global RNG is used
            out = _call("simulate_regression", simulate_regression, n, p, _gen(0))
            again = _call("simulate_regression", simulate_regression, n, p, _gen(0))
        _require(
            isinstance(out, tuple | list) and len(out) == 3,
            "simulate_regression",
            f"returned a {type(out).__name__}, not the three tensors (x, beta, y)",
            hint="end with `return x, beta, y`",
        )
        x, beta, y = out
        check_shape("x", x, (n, p))
        check_shape(
            "beta", beta, (p,), hint="beta is a vector of length p, e.g. torch.rand(p, ...)"
        )
        check_shape("y", y, (n,), hint="y = x @ beta + eps is a vector of length n")
        _require(
            x.dtype == beta.dtype == y.dtype == F64,
            "simulate_regression",
            f"dtypes {x.dtype}, {beta.dtype}, {y.dtype}",
            hint="pass dtype=torch.float64 to torch.randn / torch.rand",
        )
        check_true(
            "same generator seed gives the same data",
            all(torch.equal(a, b) for a, b in zip(out, again)),
            hint="draw every random number from `generator` (torch.randn(..., generator=generator))",
        )
        eps = y - x @ beta
        check_close("mean of x", x.mean(), 0.0, atol=0.01, hint="x should be centred: N(0, 2)")
        check_close(
            "variance of x",
            x.var(),
            2.0,
            atol=0.05,
            hint="N(0, 2) has VARIANCE 2, so the standard deviation is sqrt(2): "
            "torch.randn(...) * math.sqrt(2)",
        )
        check_true(
            "beta lies in (-1, 1) and fills it",
            bool((beta.abs() < 1).all()) and beta.min() < -0.5 and beta.max() > 0.5,
            f"min {beta.min():.3f}, max {beta.max():.3f}",
            hint="torch.rand draws from Uniform(0, 1); map it to (-1, 1) with 2 * u - 1",
        )
        check_close(
            "variance of the noise y - x beta",
            eps.var(),
            0.1,
            atol=0.01,
            hint="eps ~ N(0, 0.1) has variance 0.1, so its standard deviation is sqrt(0.1)",
        )
        check_close("mean of the noise", eps.mean(), 0.0, atol=0.01)


def check_loss_fn_reg(loss_fn_reg) -> None:
    """Exercise 1e: ``loss_fn_reg(bhat, x, y)`` = mean squared error of ``x @ bhat``."""
    with exercise("loss_fn_reg"):
        g = _gen(1)
        n, p = 37, 4
        x = torch.randn(n, p, generator=g, dtype=F64)
        y = torch.randn(n, generator=g, dtype=F64)
        bhat = torch.randn(p, generator=g, dtype=F64).requires_grad_(True)
        loss = _scalar_loss("loss_fn_reg", loss_fn_reg, bhat, x, y)
        check_close(
            "loss_fn_reg vs nn.MSELoss",
            loss,
            nn.MSELoss()(x @ bhat, y),
            atol=1e-12,
            hint="the MSE is (1/n) sum_i (y_i - x_i^T bhat)^2: average over the n "
            "observations (no square root, no sum)",
        )
        grad = _gradient("loss_fn_reg", loss, bhat)
        check_close(
            "gradient -(2/n) x^T (y - x bhat)",
            grad,
            -2.0 / n * x.T @ (y - x @ bhat.detach()),
            atol=1e-12,
        )


# ----------------------------------------------------------------- exercise 2: logistic
def check_sigmoid(sigmoid) -> None:
    """Exercise 2b: ``sigmoid(z)`` elementwise, also for |z| in the thousands."""
    with exercise("sigmoid"):
        g = _gen(2)
        extremes = [-1000.0, -100.0, -50.0, -20.0, 0.0, 20.0, 50.0, 100.0, 1000.0]
        for dtype, atol in ((F64, 1e-12), (torch.float32, 1e-6)):
            z = torch.cat([torch.randn(200, generator=g, dtype=F64) * 5, torch.tensor(extremes)])
            z = z.to(dtype)
            s = _call("sigmoid", sigmoid, z)
            require_tensor("sigmoid", s)
            check_shape(f"sigmoid, {dtype}", s, tuple(z.shape))
            check_close(
                f"sigmoid vs torch.sigmoid, {dtype}, z from -1000 to 1000",
                s,
                torch.sigmoid(z),
                atol=atol,
                hint="e^z / (1 + e^z) is inf / inf = nan once e^z overflows (z > 88 in "
                "float32); only ever exponentiate -|z|, e.g. with torch.where(z >= 0, ...)",
            )
        z = torch.randn(3, 4, generator=g, dtype=F64)
        check_close("sigmoid on a matrix", _call("sigmoid", sigmoid, z), torch.sigmoid(z))


def check_sample_labels(sample_labels) -> None:
    """Exercise 2c: ``sample_labels(x, beta)`` draws Y_i ~ Bernoulli(sigmoid(x_i^T beta)).

    With 60,000 draws, the share of ones among the observations of each decile of the
    success probability must match that decile's mean probability (calibration).
    """
    with exercise("sample_labels"):
        g = _gen(3)
        n = 60_000
        x = torch.randn(n, 3, generator=g, dtype=F64) * 2**0.5
        beta = torch.tensor([1.0, -0.5, 0.25], dtype=F64)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(3)
            y = _call("sample_labels", sample_labels, x, beta)
        require_tensor("sample_labels", y)
        check_shape("labels", y, (n,), hint="one label per row of x")
        _require(
            y.is_floating_point(),
            "labels are floats",
            f"dtype {y.dtype}",
            hint="BCE losses want float labels 0.0 / 1.0, as D.Bernoulli(...).sample() returns",
        )
        check_true(
            "labels are 0 or 1",
            bool(((y == 0) | (y == 1)).all()),
            f"{int(y.sum())} ones, {int((y == 0).sum())} zeros",
            hint="sample from torch.distributions.Bernoulli(probs=...)",
        )
        prob = torch.sigmoid(x @ beta)
        order = prob.argsort()
        rate = torch.stack([y[i].mean() for i in order.chunk(10)])
        expected = torch.stack([prob[i].mean() for i in order.chunk(10)])
        check_close(
            "share of ones per decile of sigmoid(x beta)",
            rate,
            expected,
            atol=0.03,
            hint="each label must be a random draw with success probability "
            "sigmoid(x_i^T beta) -- not a threshold of x_i^T beta, and not sigmoid(-x_i^T beta)",
        )


def check_loss_fn_logistic(loss_fn_logistic) -> None:
    """Exercise 2d: ``loss_fn_logistic(bhat, x, y)``: mean Bernoulli NLL, stable in the logits."""
    with exercise("loss_fn_logistic"):
        g = _gen(4)
        n, p = 50, 3
        x = torch.randn(n, p, generator=g, dtype=F64)
        y = torch.randint(0, 2, (n,), generator=g).to(F64)
        bhat = torch.randn(p, generator=g, dtype=F64).requires_grad_(True)
        loss = _scalar_loss("loss_fn_logistic", loss_fn_logistic, bhat, x, y)
        check_close(
            "loss_fn_logistic vs nn.BCEWithLogitsLoss",
            loss,
            nn.BCEWithLogitsLoss()(x @ bhat, y),
            atol=1e-12,
            hint="the NEGATIVE log-likelihood, averaged over the n observations: "
            "-(1/n) sum_i [y_i log rho_i + (1 - y_i) log(1 - rho_i)], rho_i = sigmoid(x_i^T bhat)",
        )
        grad = _gradient("loss_fn_logistic", loss, bhat)
        z = x @ bhat.detach()
        check_close(
            "gradient (1/n) x^T (sigmoid(x bhat) - y)",
            grad,
            x.T @ (torch.sigmoid(z) - y) / n,
            atol=1e-12,
        )
        for dtype in (F64, torch.float32):
            b_big = (bhat.detach() * 500).to(dtype)  # logits in the hundreds and thousands
            xd, yd = x.to(dtype), y.to(dtype)
            big = _call("loss_fn_logistic", loss_fn_logistic, b_big, xd, yd)
            check_close(
                f"huge logits (|z| up to {float((xd @ b_big).abs().max()):.0f}), {dtype}",
                big,
                nn.BCEWithLogitsLoss()(xd @ b_big, yd),
                atol=1e-4,
                rtol=1e-6,
                hint="log(sigmoid(z)) is log(0) = -inf once sigmoid(z) rounds to 0 or 1, and "
                "exp(z) overflows; write the loss in the logit z = x bhat: log(1 + e^z) - y z, "
                "with log(1 + e^z) = max(z, 0) + log1p(e^{-|z|}) (or torch.logaddexp)",
            )


# ------------------------------------------------------------------ exercise 3: softmax
def check_one_hot(one_hot) -> None:
    """Exercise 3a: ``one_hot(labels, k)`` -> n x k matrix of 0/1, like ``F.one_hot``."""
    with exercise("one_hot"):
        g = _gen(5)
        small = torch.tensor([2, 0, 1, 1, 0])
        for labels, k in ((small, 4), (torch.randint(0, 7, (100,), generator=g), 7)):
            out = _call("one_hot", one_hot, labels, k)
            require_tensor("one_hot", out)
            check_shape(
                f"one_hot(labels, k={k})",
                out,
                (labels.shape[0], k),
                hint="one row per label and k columns, even if the last class never occurs",
            )
            check_close(
                f"one_hot vs F.one_hot, k={k}",
                out,
                F.one_hot(labels, k),
                atol=0,
                hint="row i has a single 1, in column labels[i]",
            )


def check_softmax(softmax) -> None:
    """Exercise 3c: ``softmax(u)`` of each ROW of an n x k matrix, stable for huge logits."""
    with exercise("softmax"):
        g = _gen(6)
        u = torch.randn(6, 4, generator=g, dtype=F64) * 3
        P = _call("softmax", softmax, u)
        require_tensor("softmax", P)
        check_shape("softmax", P, (6, 4))
        check_close(
            "rows sum to 1",
            P.sum(dim=1),
            torch.ones(6, dtype=F64),
            atol=1e-12,
            hint="normalise within each row: sums over dim=1 with keepdim=True",
        )
        check_close("softmax vs torch.softmax(u, dim=1)", P, torch.softmax(u, dim=1), atol=1e-12)
        for dtype in (F64, torch.float32):
            u_big = (torch.randn(8, 5, generator=g, dtype=F64) * 1000).to(dtype)
            check_close(
                f"logits up to |u| = {float(u_big.abs().max()):.0f}, {dtype}",
                _call("softmax", softmax, u_big),
                torch.softmax(u_big, dim=1),
                atol=1e-6,
                hint="exp(1000) = inf: subtract each row's maximum before exponentiating "
                "(softmax does not change when a constant is added to a row)",
            )


def check_loss_fn_softmax(loss_fn_softmax) -> None:
    """Exercise 3d: ``loss_fn_softmax(w, x, y)``: mean multinomial NLL; w is k x p, y one-hot."""
    with exercise("loss_fn_softmax"):
        g = _gen(7)
        n, p, k = 40, 5, 3
        x = torch.randn(n, p, generator=g, dtype=F64)
        labels = torch.randint(0, k, (n,), generator=g)
        y = F.one_hot(labels, k).to(F64)
        w = torch.randn(k, p, generator=g, dtype=F64).requires_grad_(True)
        shape_hint = "w is k x p and row i of x is x_i, so the logits are U = x @ w.T (n x k)"
        loss = _scalar_loss("loss_fn_softmax", loss_fn_softmax, w, x, y, hint=shape_hint)
        check_close(
            "loss_fn_softmax vs nn.CrossEntropyLoss",
            loss,
            nn.CrossEntropyLoss()(x @ w.T, labels),
            atol=1e-12,
            hint="-(1/n) sum_i sum_j y_ij log p_ij: sum over the k classes, then average over "
            "the n observations (not over all n*k entries)",
        )
        grad = _gradient("loss_fn_softmax", loss, w)
        P = torch.softmax(x @ w.detach().T, dim=1)
        check_close("gradient (1/n) (P - Y)^T x", grad, (P - y).T @ x / n, atol=1e-12)
        y_int = F.one_hot(labels, k)  # int64, as F.one_hot returns it
        for dtype in (F64, torch.float32):
            w_big = (w.detach() * 500).to(dtype)
            xd = x.to(dtype)
            check_close(
                f"huge logits (|u| up to {float((xd @ w_big.T).abs().max()):.0f}), {dtype}, "
                "integer one-hot",
                _call("loss_fn_softmax", loss_fn_softmax, w_big, xd, y_int),
                nn.CrossEntropyLoss()(xd @ w_big.T, labels),
                atol=1e-4,
                rtol=1e-6,
                hint="log(softmax) is log(0) = -inf when a probability underflows: compute "
                "log p_ij = u_ij - m_i - log sum_l exp(u_il - m_i), m_i = max_l u_il",
            )
