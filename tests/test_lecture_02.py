"""Lecture 02 (losses from maximum likelihood): the notebook's from-scratch losses vs torch.

Each test draws fresh random inputs and compares a hand-written function of
notebooks/02_losses.ipynb with its torch.nn / torch.distributions reference, including
extreme logits (|z| up to thousands) for the numerically stable versions.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributions as D
import torch.nn.functional as F
from nbdefs import definitions
from torch import nn


nb = definitions("02_losses")

DTYPES = (torch.float32, torch.float64)


def close(actual, expected, *, atol, rtol=0.0):
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol, check_dtype=False)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(2024)


def test_notebook_defines_the_losses():
    for name in (
        "mse_loss", "loss_fn_reg", "gaussian_nll", "l1_loss", "laplace_nll", "sigmoid_naive",
        "sigmoid", "bce_loss", "bce_with_logits", "loss_fn_logistic", "one_hot", "softmax_naive",
        "cross_entropy_probs", "loss_fn_softmax", "logsumexp", "softmax", "log_softmax",
        "cross_entropy", "entropy", "kl_divergence", "gradient_descent", "logistic_mle_newton",
    ):  # fmt: skip
        assert callable(getattr(nb, name, None)), f"the notebook no longer defines {name}"


# ------------------------------------------------------------------ regression losses
def test_mse_and_loss_fn_reg(gen):
    x = torch.randn(73, 6, generator=gen, dtype=torch.float64)
    b = torch.randn(6, generator=gen, dtype=torch.float64)
    y = torch.randn(73, generator=gen, dtype=torch.float64)
    close(nb.mse_loss(x @ b, y), nn.MSELoss()(x @ b, y), atol=1e-12)
    close(nb.loss_fn_reg(b, x, y), nn.MSELoss()(x @ b, y), atol=1e-12)


def test_gaussian_nll(gen):
    y = torch.randn(50, generator=gen, dtype=torch.float64) * 3
    mean = torch.randn(50, generator=gen, dtype=torch.float64)
    for sigma in (0.1, 1.0, 4.0):
        close(
            nb.gaussian_nll(y, mean, sigma), -D.Normal(mean, sigma).log_prob(y).mean(), atol=1e-12
        )


def test_l1_and_laplace(gen):
    y = torch.randn(64, generator=gen, dtype=torch.float64) * 2
    y_hat = torch.randn(64, generator=gen, dtype=torch.float64)
    close(nb.l1_loss(y_hat, y), nn.L1Loss()(y_hat, y), atol=1e-12)
    for b in (0.2, 1.0, 3.0):
        close(nb.laplace_nll(y, y_hat, b), -D.Laplace(y_hat, b).log_prob(y).mean(), atol=1e-12)


# ------------------------------------------------------------------ binary
def test_sigmoid_stable_and_naive(gen):
    z = torch.randn(200, generator=gen, dtype=torch.float64) * 10
    close(nb.sigmoid(z), torch.sigmoid(z), atol=1e-15)
    close(nb.sigmoid_naive(z), torch.sigmoid(z), atol=1e-14)
    big = torch.tensor([-5000.0, -100.0, 100.0, 5000.0])
    close(nb.sigmoid(big), torch.sigmoid(big), atol=1e-30)  # torch flushes e^-100 to 0 in float32
    assert torch.isnan(nb.sigmoid_naive(big)[-1]), "the naive formula should overflow (as shown)"


def test_bce_from_probabilities(gen):
    prob = torch.rand(300, generator=gen, dtype=torch.float64) * 0.98 + 0.01
    y = torch.randint(0, 2, (300,), generator=gen).double()
    close(nb.bce_loss(prob, y), nn.BCELoss()(prob, y), atol=1e-12)
    close(nb.bce_loss(prob, y, reduction="none"), nn.BCELoss(reduction="none")(prob, y), atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1.0, 30.0, 3000.0])
def test_bce_with_logits_incl_extreme(gen, dtype, scale):
    z = (torch.randn(500, generator=gen, dtype=torch.float64) * scale).to(dtype)
    y = torch.randint(0, 2, (500,), generator=gen).to(dtype)
    ours = nb.bce_with_logits(z, y, reduction="none")
    assert torch.isfinite(ours).all()
    close(ours, nn.BCEWithLogitsLoss(reduction="none")(z, y), atol=1e-5, rtol=1e-6)
    close(nb.bce_with_logits(z, y), nn.BCEWithLogitsLoss()(z, y), atol=1e-5, rtol=1e-6)


def test_bce_with_logits_soft_targets(gen):
    z = torch.randn(100, generator=gen, dtype=torch.float64) * 50
    y = torch.rand(100, generator=gen, dtype=torch.float64)  # targets in [0, 1], not just 0/1
    close(nb.bce_with_logits(z, y), nn.BCEWithLogitsLoss()(z, y), atol=1e-10)


def test_loss_fn_logistic(gen):
    x = torch.randn(120, 4, generator=gen, dtype=torch.float64) * 20  # large logits
    b = torch.randn(4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 2, (120,), generator=gen).double()
    close(nb.loss_fn_logistic(b, x, y), nn.BCEWithLogitsLoss()(x @ b, y), atol=1e-10)


# ------------------------------------------------------------------ multi-class
def test_one_hot(gen):
    labels = torch.randint(0, 7, (40,), generator=gen)
    out = nb.one_hot(labels, 7)
    assert out.dtype == torch.int64
    assert torch.equal(out, F.one_hot(labels, 7))
    # k larger than the largest label present
    assert torch.equal(nb.one_hot(torch.tensor([0, 1]), 5), F.one_hot(torch.tensor([0, 1]), 5))


def test_softmax_naive_rows(gen):
    u = torch.randn(9, 4, generator=gen, dtype=torch.float64) * 3  # not square: catches dim=0
    p = nb.softmax_naive(u)
    close(p, torch.softmax(u, dim=1), atol=1e-14)
    close(p.sum(dim=1), torch.ones(9, dtype=torch.float64), atol=1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
def test_stable_softmax_logsumexp_extreme(gen, dtype):
    u = (torch.randn(32, 5, generator=gen, dtype=torch.float64) * 1000 + 500).to(dtype)
    u[0] = torch.tensor([1000.0, 1001.0, 1002.0, -1000.0, 0.0], dtype=dtype)
    u[1] = -1000.0  # every exp underflows in the naive version
    p = nb.softmax(u)
    assert torch.isfinite(p).all()
    close(p, torch.softmax(u, dim=1), atol=1e-6)
    close(nb.logsumexp(u), torch.logsumexp(u, dim=1), atol=1e-3, rtol=1e-6)
    close(nb.log_softmax(u), F.log_softmax(u, dim=1), atol=1e-3, rtol=1e-6)


def test_logsumexp_with_minus_inf_entries():
    u = torch.tensor([[0.0, -math.inf, 2.0], [-math.inf, 5.0, 5.0]], dtype=torch.float64)
    close(nb.logsumexp(u), torch.logsumexp(u, dim=1), atol=1e-12)


def test_cross_entropy_probs_and_loss_fn_softmax(gen):
    x = torch.randn(80, 6, generator=gen, dtype=torch.float64)
    w = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 4, (80,), generator=gen)
    u = x @ w.T
    reference = nn.CrossEntropyLoss()(u, labels)
    y = F.one_hot(labels, 4)
    close(nb.cross_entropy_probs(torch.softmax(u, dim=1), y), reference, atol=1e-12)
    close(nb.loss_fn_softmax(w, x, y), reference, atol=1e-12)
    close(nb.loss_fn_softmax(w * 1000, x, y), nn.CrossEntropyLoss()(u * 1000, labels), atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1.0, 100.0, 5000.0])
def test_cross_entropy_from_logits_incl_extreme(gen, dtype, scale):
    u = (torch.randn(64, 10, generator=gen, dtype=torch.float64) * scale).to(dtype)
    labels = torch.randint(0, 10, (64,), generator=gen)
    ours = nb.cross_entropy(u, labels)
    assert torch.isfinite(ours)
    close(ours, nn.CrossEntropyLoss()(u, labels), atol=1e-4, rtol=1e-6)


def test_cross_entropy_is_not_fooled_by_label_order(gen):
    # a plausible bug: ignoring the labels (e.g. always taking column 0) or the wrong dim
    u = torch.randn(30, 3, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 3, (30,), generator=gen)
    shuffled = (labels + 1) % 3
    assert not torch.allclose(nb.cross_entropy(u, labels), nb.cross_entropy(u, shuffled))
    close(nb.cross_entropy(u, shuffled), nn.CrossEntropyLoss()(u, shuffled), atol=1e-12)


# ------------------------------------------------------------------ KL
def test_entropy_and_kl(gen):
    q = torch.rand(8, 6, generator=gen, dtype=torch.float64)
    q[0, :2] = 0.0  # zero probabilities: 0 log 0 = 0
    q = q / q.sum(dim=1, keepdim=True)
    p = torch.softmax(torch.randn(8, 6, generator=gen, dtype=torch.float64), dim=1)
    close(nb.entropy(q), D.Categorical(probs=q).entropy(), atol=1e-12)
    close(
        nb.kl_divergence(q, p),
        D.kl_divergence(D.Categorical(probs=q), D.Categorical(probs=p)),
        atol=1e-12,
    )
    close(nb.kl_divergence(q, q), torch.zeros(8, dtype=torch.float64), atol=1e-12)
    assert torch.isinf(nb.kl_divergence(p[0], q[0]))  # p puts mass where q has none


# ------------------------------------------------------------------ training helper
def test_gradient_descent_reaches_least_squares(gen):
    x = torch.randn(100, 3, generator=gen, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.1 * torch.randn(
        100, generator=gen, dtype=torch.float64
    )
    b = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    losses = nb.gradient_descent(lambda: nb.loss_fn_reg(b, x, y), [b], lr=0.1, steps=300)
    assert len(losses) == 300 and losses[-1] < losses[0]
    ols = torch.linalg.lstsq(x, y.unsqueeze(1)).solution.squeeze(1)
    close(b.detach(), ols, atol=1e-8)


def test_gradient_descent_on_softmax_regression_reaches_the_centred_mle(gen):
    n, p, k = 300, 4, 3
    x = torch.randn(n, p, generator=gen, dtype=torch.float64)
    w_true = torch.randn(k, p, generator=gen, dtype=torch.float64)
    labels = torch.distributions.Categorical(logits=x @ w_true.T).sample()
    y = F.one_hot(labels, k)
    w = torch.zeros(k, p, dtype=torch.float64, requires_grad=True)
    nb.gradient_descent(lambda: nb.loss_fn_softmax(w, x, y), [w], lr=1.0, steps=3000)
    close(w.detach().sum(dim=0), torch.zeros(p, dtype=torch.float64), atol=1e-12)  # rows sum to 0
    # an independent MLE: the identifiable parametrisation with the last row fixed at 0
    free = torch.zeros(k - 1, p, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([free], max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.CrossEntropyLoss()(x @ torch.cat([free, torch.zeros(1, p, dtype=torch.float64)]).T, labels)
        loss.backward()
        return loss

    opt.step(closure)
    mle = torch.cat([free.detach(), torch.zeros(1, p, dtype=torch.float64)])
    close(w.detach(), mle - mle.mean(dim=0), atol=1e-5)


def test_logistic_mle_newton_matches_lbfgs_on_the_torch_loss(gen):
    n, p = 400, 4
    x = torch.randn(n, p, generator=gen, dtype=torch.float64) * math.sqrt(2.0)
    beta_true = torch.rand(p, generator=gen, dtype=torch.float64) * 2 - 1
    y = torch.bernoulli(torch.sigmoid(x @ beta_true), generator=gen)
    newton = nb.logistic_mle_newton(x, y)
    # the score equation holds at the MLE
    close(x.T @ (torch.sigmoid(x @ newton) - y) / n, torch.zeros(p, dtype=torch.float64), atol=1e-12)
    b = torch.zeros(p, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([b], max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.BCEWithLogitsLoss()(x @ b, y)
        loss.backward()
        return loss

    opt.step(closure)
    close(newton, b.detach(), atol=1e-6)


def test_gradient_descent_on_logistic_regression_reaches_the_newton_mle(gen):
    x = torch.randn(300, 3, generator=gen, dtype=torch.float64)
    y = torch.bernoulli(torch.sigmoid(x @ torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)), generator=gen)
    b = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    nb.gradient_descent(lambda: nb.loss_fn_logistic(b, x, y), [b], lr=1.0, steps=2000)
    close(b.detach(), nb.logistic_mle_newton(x, y), atol=1e-6)
