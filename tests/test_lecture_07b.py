"""Lecture 7b: batch and layer normalization, residual blocks, priors as penalties, weight decay
and dropout, from scratch against torch.nn, torch.optim and scikit-learn on fresh inputs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nbdefs import definitions

nb = definitions("07b_normalization_regularization")
F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    "layer_cls, shape, momentum",
    [
        (nn.BatchNorm1d, (7, 5), 0.1),
        (nn.BatchNorm1d, (3, 2), 0.5),
        (nn.BatchNorm2d, (4, 3, 6, 5), 0.1),
        (nn.BatchNorm2d, (2, 1, 2, 2), 0.25),
    ],
)
def test_batch_norm_matches_torch_in_both_modes_with_running_stats(layer_cls, shape, momentum):
    g = gen(1)
    C = shape[1]
    layer = layer_cls(C, momentum=momentum).double()
    with torch.no_grad():
        layer.weight.copy_(torch.rand(C, generator=g, dtype=F64) + 0.5)
        layer.bias.copy_(torch.randn(C, generator=g, dtype=F64))
    gamma, beta = layer.weight.detach().clone(), layer.bias.detach().clone()
    rm, rv = torch.zeros(C, dtype=F64), torch.ones(C, dtype=F64)
    layer.train()
    for _ in range(4):
        x = -1 + 4 * torch.randn(shape, generator=g, dtype=F64)
        y, rm, rv = nb.batch_norm(x, gamma, beta, rm, rv, True, momentum, layer.eps)
        torch.testing.assert_close(y, layer(x), rtol=0, atol=1e-10)
        torch.testing.assert_close(rm, layer.running_mean, rtol=0, atol=1e-10)
        torch.testing.assert_close(rv, layer.running_var, rtol=0, atol=1e-10)
    layer.eval()
    x = torch.randn(shape, generator=g, dtype=F64)
    y, rm2, rv2 = nb.batch_norm(x, gamma, beta, rm, rv, False, momentum, layer.eps)
    torch.testing.assert_close(y, layer(x), rtol=0, atol=1e-10)
    assert torch.equal(rm2, rm) and torch.equal(rv2, rv)


@pytest.mark.parametrize("shape, normalized", [((5, 8), (8,)), ((2, 3, 4, 5), (4, 5)), ((6, 7), (6, 7))])
def test_layer_norm_matches_torch(shape, normalized):
    g = gen(2)
    ln = nn.LayerNorm(normalized).double()
    with torch.no_grad():
        ln.weight.copy_(torch.randn(normalized, generator=g, dtype=F64))
        ln.bias.copy_(torch.randn(normalized, generator=g, dtype=F64))
    x = 3 + 2 * torch.randn(shape, generator=g, dtype=F64)
    torch.testing.assert_close(nb.layer_norm(x, normalized, ln.weight, ln.bias), ln(x), rtol=0, atol=1e-10)


@pytest.mark.parametrize("p", [0.0, 0.25, 0.6, 1.0])
def test_dropout_matches_nn_dropout_with_the_same_seed(p):
    x = torch.randn(40, 30, generator=gen(3), dtype=F64)
    torch.manual_seed(5)
    ours = nb.dropout(x, p, True)
    torch.manual_seed(5)
    ref = nn.Dropout(p).train()(x)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    assert torch.equal(nb.dropout(x, p, False), nn.Dropout(p).eval()(x))


def test_both_dropouts_have_the_test_time_output_as_expectation():
    x = torch.randn(10, generator=gen(4), dtype=F64)
    g = gen(5)
    keep = 0.6
    inv = torch.stack([nb.dropout(x, 1 - keep, True, g) for _ in range(20000)]).mean(0)
    notes = torch.stack([nb.dropout_notes(x, keep, True, g) for _ in range(20000)]).mean(0)
    se = x.abs() * math.sqrt(keep * (1 - keep)) / math.sqrt(20000)
    assert ((inv - x).abs() <= 5 * se / keep).all()
    assert ((notes - nb.dropout_notes(x, keep, False)).abs() <= 5 * se).all()


@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("lam", [0.0, 0.3])
def test_adam_step_matches_torch_adam_and_adamw(decoupled, lam):
    g = gen(6)
    A = torch.randn(5, 5, generator=g, dtype=F64)
    target = torch.randn(5, generator=g, dtype=F64)
    w_ref = torch.zeros(5, dtype=F64, requires_grad=True)
    opt = (torch.optim.AdamW if decoupled else torch.optim.Adam)([w_ref], lr=0.03, weight_decay=lam)
    w, state = torch.zeros(5, dtype=F64), {}
    for _ in range(30):
        grad = A.T @ (A @ w - target)
        w = nb.adam_step(w, grad, state, 0.03, weight_decay=lam, decoupled=decoupled)
        opt.zero_grad()
        (0.5 * ((A @ w_ref - target) ** 2).sum()).backward()
        opt.step()
    torch.testing.assert_close(w, w_ref.detach(), rtol=0, atol=1e-10)


def test_ridge_is_the_map_estimate_with_a_gaussian_prior():
    g = gen(7)
    X = torch.randn(30, 4, generator=g, dtype=F64)
    y = X @ torch.tensor([1.0, -2, 0, 0.5], dtype=F64) + torch.randn(30, generator=g, dtype=F64)
    sigma, tau = 0.8, 0.3
    torch.testing.assert_close(
        nb.ridge(X, y, sigma**2 / (30 * tau**2)), nb.map_gaussian_prior(X, y, sigma, tau),
        rtol=0, atol=1e-6,
    )


def test_lasso_ista_matches_sklearn_and_soft_threshold():
    from sklearn.linear_model import Lasso

    g = gen(8)
    X = torch.randn(50, 10, generator=g, dtype=F64)
    y = X[:, 0] * 2 - X[:, 1] + 0.5 * torch.randn(50, generator=g, dtype=F64)
    ours = nb.lasso_ista(X, y, 0.1)
    sk = Lasso(alpha=0.1, fit_intercept=False, tol=1e-12, max_iter=100_000).fit(X.numpy(), y.numpy())
    torch.testing.assert_close(ours, torch.from_numpy(sk.coef_), rtol=0, atol=1e-6)
    v = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.5], dtype=F64)
    torch.testing.assert_close(nb.soft_threshold(v, 0.5), torch.tensor([-1.5, 0, 0, 0, 1.0], dtype=F64))


def test_make_net_shapes_init_and_residual_identity():
    torch.manual_seed(0)
    net = nb.make_net(blocks=3, width=32, residual=True)
    assert net(torch.randn(4, 784)).shape == (4, 10)
    first = net[0].weight
    assert first.std().item() == pytest.approx(math.sqrt(2 / 784), rel=0.05)
    block = net[2]
    assert block.fc2.weight.std().item() == pytest.approx(math.sqrt(2 / 32) / math.sqrt(3), rel=0.2)
    with torch.no_grad():
        block.fc2.weight.zero_()
        block.fc2.bias.zero_()
    h = torch.rand(5, 32)  # non-negative: relu(h + 0) = h
    torch.testing.assert_close(block(h), h)
    bn_net = nb.make_net(blocks=2, width=16, batchnorm=True, dropout=0.5)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in bn_net.modules()) == 4
    assert sum(isinstance(m, nn.Dropout) for m in bn_net.modules()) == 2


def test_adamw_with_exact_gradients_ends_at_the_box_constrained_minimum():
    # With exact gradients AdamW's fixed points solve min L subject to |w_i| <= 1/lambda.
    curvature = torch.tensor([1.0, 10.0, 0.5], dtype=F64)
    target = torch.tensor([0.8, -3.0, 2.5], dtype=F64)
    lam = 0.5  # box |w_i| <= 2: the first coordinate is free, the other two hit the edge
    w, state = torch.zeros(3, dtype=F64), {}
    for _ in range(20_000):  # the approach is slow: about 1/steps
        w = nb.adam_step(w, curvature * (w - target), state, 0.01, weight_decay=lam, decoupled=True)
    torch.testing.assert_close(w, torch.tensor([0.8, -2.0, 2.0], dtype=F64), rtol=0, atol=1e-2)
