"""Lecture 03: the notebook's hand-written backpropagation and gradient descent.

The functions are loaded from notebooks/03_backprop.ipynb and compared with autograd
(and torch.optim.SGD) on fresh random inputs, in float64 to 1e-10.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from nbdefs import definitions

nb = definitions("03_backprop")

F64 = torch.float64
ACTIVATIONS = ["sigmoid", "tanh", "relu", "softplus"]
TORCH_ACT = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "softplus": F.softplus,
}
# (batch size, layer sizes [m0, m1, ..., mL]): a single example, width-1 bottlenecks, deep/wide
SHAPES = [
    (1, [3, 2]),
    (7, [4, 5, 1]),
    (33, [2, 16, 8, 3]),
    (64, [10, 1, 7, 2]),
    (5, [6, 3, 3, 3, 4]),
]


def close(actual, expected, atol=1e-10):
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


def random_mlp(sizes, gen):
    """Random parameters made here (independent of the notebook's init_mlp)."""
    return [
        (
            torch.randn(m_in, m_out, dtype=F64, generator=gen) / m_in**0.5,
            torch.randn(m_out, dtype=F64, generator=gen),
        )
        for m_in, m_out in itertools.pairwise(sizes)
    ]


def autograd_mlp(X, Y, params, act):
    """Reference: the same MLP from plain torch ops, differentiated by autograd."""
    X = X.clone().requires_grad_(True)
    leaves = [(W.clone().requires_grad_(True), b.clone().requires_grad_(True)) for W, b in params]
    A = X
    for l, (W, b) in enumerate(leaves):
        Z = A @ W + b
        A = TORCH_ACT[act](Z) if l < len(leaves) - 1 else Z
    loss = F.mse_loss(A, Y)
    loss.backward()
    return A.detach(), loss.detach(), [(W.grad, b.grad) for W, b in leaves], X.grad


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("n, sizes", SHAPES)
def test_mlp_forward_backward_match_autograd(n, sizes, act):
    gen = torch.Generator().manual_seed(1000 * n + 10 * len(sizes) + ACTIVATIONS.index(act))
    X = torch.randn(n, sizes[0], dtype=F64, generator=gen)
    Y = torch.randn(n, sizes[-1], dtype=F64, generator=gen)
    params = random_mlp(sizes, gen)

    Y_hat, cache = nb.mlp_forward(X, params, act)
    loss, dY = nb.mse_loss_and_grad(Y_hat, Y)
    grads, dX = nb.mlp_backward(dY, params, cache, act)

    ref_out, ref_loss, ref_grads, ref_dX = autograd_mlp(X, Y, params, act)
    close(Y_hat, ref_out)
    close(loss, ref_loss)
    assert len(grads) == len(params)
    for (dW, db), (rW, rb), (W, b) in zip(grads, ref_grads, params):
        assert dW.shape == W.shape and db.shape == b.shape  # rule 0
        close(dW, rW)
        close(db, rb)
    close(dX, ref_dX)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_activation_derivative_matches_autograd(act):
    Z = torch.randn(50, 4, dtype=F64, generator=torch.Generator().manual_seed(3)) * 3
    Zr = Z.clone().requires_grad_(True)
    TORCH_ACT[act](Zr).sum().backward()
    A = nb.activation(act, Z)
    close(A, TORCH_ACT[act](Z))
    close(nb.activation_derivative(act, Z, A), Zr.grad)


def test_batch_gradient_is_sum_of_per_example_gradients():
    """dW = A^T dZ must equal the sum over examples of each example's own gradient."""
    gen = torch.Generator().manual_seed(11)
    sizes, n = [3, 6, 2], 9
    params = random_mlp(sizes, gen)
    X = torch.randn(n, sizes[0], dtype=F64, generator=gen)
    G = torch.randn(n, sizes[-1], dtype=F64, generator=gen)  # an arbitrary upstream gradient
    _, cache = nb.mlp_forward(X, params, "tanh")
    batch, dX = nb.mlp_backward(G, params, cache, "tanh")
    per_example = []
    for i in range(n):
        _, cache_i = nb.mlp_forward(X[i : i + 1], params, "tanh")
        grads_i, dX_i = nb.mlp_backward(G[i : i + 1], params, cache_i, "tanh")
        per_example.append(grads_i)
        close(dX[i : i + 1], dX_i)  # activations are not shared: no sum
    for l, (dW, db) in enumerate(batch):
        close(dW, sum(g[l][0] for g in per_example))
        close(db, sum(g[l][1] for g in per_example))


def test_scalar_net_backward_matches_autograd():
    """Many independent draws at once: the scalar formulas work elementwise."""
    gen = torch.Generator().manual_seed(5)
    x, y, w1, b1, w2, b2 = (torch.randn(200, dtype=F64, generator=gen) for _ in range(6))
    theta = {
        k: v.clone().requires_grad_(True)
        for k, v in zip(["w1", "b1", "w2", "b2"], [w1, b1, w2, b2])
    }
    loss, cache = nb.scalar_net_forward(x, y, **theta)
    with torch.no_grad():
        hand = nb.scalar_net_backward(cache, theta["w2"])
    loss.sum().backward()  # draws are independent, so each gets its own gradient
    for name, param in theta.items():
        close(hand[name], param.grad)


def test_bce_with_logits_and_grad_matches_torch():
    gen = torch.Generator().manual_seed(8)
    Z = (3 * torch.randn(12, 1, dtype=F64, generator=gen)).requires_grad_(True)
    Y = (torch.rand(12, 1, dtype=F64, generator=gen) > 0.5).to(F64)
    ref = F.binary_cross_entropy_with_logits(Z, Y)
    ref.backward()
    loss, dZ = nb.bce_with_logits_and_grad(Z.detach(), Y)
    close(loss, ref.detach())
    close(dZ, Z.grad)


def test_linear_mse_grad_matches_autograd():
    gen = torch.Generator().manual_seed(2)
    X = torch.randn(40, 6, dtype=F64, generator=gen)
    y = torch.randn(40, dtype=F64, generator=gen)
    beta = torch.randn(6, dtype=F64, generator=gen).requires_grad_(True)
    torch.mean((y - X @ beta) ** 2).backward()
    close(nb.linear_mse_grad(beta.detach(), X, y), beta.grad)


@pytest.mark.parametrize("lr", [0.01, 0.3])
def test_gd_step_equals_torch_sgd_step(lr):
    gen = torch.Generator().manual_seed(4)
    X = torch.randn(30, 4, dtype=F64, generator=gen)
    y = torch.randn(30, dtype=F64, generator=gen)
    start = torch.randn(4, dtype=F64, generator=gen)

    param = torch.nn.Parameter(start.clone())
    opt = torch.optim.SGD([param], lr=lr)
    opt.zero_grad()
    torch.mean((y - X @ param) ** 2).backward()
    opt.step()

    hand = nb.gd_step(start, nb.linear_mse_grad(start, X, y), lr)
    close(hand, param.detach(), atol=1e-14)
    assert not torch.allclose(hand, start)  # a step was actually taken


def test_hand_gradient_descent_trajectory_equals_sgd_training():
    gen = torch.Generator().manual_seed(9)
    n, p = 50, 3
    X = torch.randn(n, p, dtype=F64, generator=gen)
    y = X @ torch.randn(p, dtype=F64, generator=gen) + 0.3 * torch.randn(
        n, dtype=F64, generator=gen
    )
    losses, betas = nb.gradient_descent_linear(X, y, torch.zeros(p, dtype=F64), 0.05, 60)
    assert losses.shape == (60,) and betas.shape == (61, p)
    losses_sgd, traj = nb.train_full_batch(nb.LinearRegression(p), X, y, lr=0.05, n_steps=60)
    close(losses, losses_sgd)
    close(betas, traj)
    assert losses[-1] < 0.5 * losses[0]
