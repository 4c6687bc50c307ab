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


# ------------------------------------------------------------------ vanishing gradients
@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu"])
def test_layer_gradient_norms_match_autograd(act):
    gen = torch.Generator().manual_seed(21)
    sizes = [6, 9, 9, 9, 2]
    params = random_mlp(sizes, gen)
    X = torch.randn(17, 6, dtype=F64, generator=gen)
    Y = torch.randn(17, 2, dtype=F64, generator=gen)
    _, _, ref_grads, _ = autograd_mlp(X, Y, params, act)
    norms = nb.layer_gradient_norms(params, X, Y, act)
    assert len(norms) == len(params)
    close(torch.tensor(norms, dtype=F64), torch.stack([dW.norm() for dW, _ in ref_grads]), atol=1e-12)


def test_sigmoid_gradients_vanish_with_depth():
    gen = torch.Generator().manual_seed(5)
    params = nb.init_mlp([16] + [32] * 8 + [1], generator=gen)
    X = torch.randn(64, 16, dtype=F64, generator=gen)
    Y = torch.randn(64, 1, dtype=F64, generator=gen)
    sig = nb.layer_gradient_norms(params, X, Y, "sigmoid")
    relu = nb.layer_gradient_norms(params, X, Y, "relu")
    assert sig[0] / sig[-2] < 1e-3 < relu[0] / relu[-2]


# ------------------------------------------------------------------ nn.Module anatomy
def test_standardised_mlp_by_hand_matches_the_module_in_eval_mode():
    gen = torch.Generator().manual_seed(7)
    X = 3 + 2 * torch.randn(25, 5, dtype=F64, generator=gen)
    torch.manual_seed(3)
    model = nb.StandardisedMLP(X.mean(0), X.std(0), hidden=6, out=3).to(F64).eval()
    close(nb.standardised_mlp_by_hand(model.state_dict(), X), model(X), atol=1e-12)
    assert {"x_mean", "x_sd"} <= set(model.state_dict())
    assert "x_mean" not in dict(model.named_parameters())
    model.train()
    assert not torch.allclose(model(X), model(X))  # dropout is active in training mode


# ------------------------------------------------------------------ mini-batch SGD
def test_minibatch_sgd_by_hand_equals_a_torch_sgd_loop():
    gen = torch.Generator().manual_seed(12)
    n, p, batch, epochs, lr = 37, 3, 8, 4, 0.05  # n not a multiple of the batch size
    X = torch.randn(n, p, dtype=F64, generator=gen)
    y = X @ torch.randn(p, dtype=F64, generator=gen) + 0.1 * torch.randn(n, dtype=F64, generator=gen)
    losses, betas = nb.minibatch_sgd_linear(
        X, y, torch.zeros(p, dtype=F64), lr, batch, epochs, torch.Generator().manual_seed(0)
    )
    steps_per_epoch = -(-n // batch)
    assert losses.shape == (epochs,) and betas.shape == (1 + epochs * steps_per_epoch, p)
    # reference: a plain torch.optim.SGD loop written here
    beta = torch.nn.Parameter(torch.zeros(p, dtype=F64))
    opt = torch.optim.SGD([beta], lr=lr)
    order_gen = torch.Generator().manual_seed(0)
    ref = [beta.detach().clone()]
    for _ in range(epochs):
        order = torch.randperm(n, generator=order_gen)
        for start in range(0, n, batch):
            rows = order[start : start + batch]
            opt.zero_grad()
            torch.mean((y[rows] - X[rows] @ beta) ** 2).backward()
            opt.step()
            ref.append(beta.detach().clone())
    close(betas, torch.stack(ref), atol=1e-12)
    close(losses[-1], torch.mean((y - X @ ref[-1]) ** 2), atol=1e-12)
    traj = nb.train_minibatch(nb.LinearRegression(p), X, y, lr, batch, epochs, torch.Generator().manual_seed(0))
    close(traj, torch.stack(ref), atol=1e-12)


# ------------------------------------------------------------------ approximation and depth
def test_staircase_net_is_the_sum_of_steps():
    f = torch.cos
    m = 5
    net = nb.staircase_net(m, f, slope=50.0)
    t = torch.linspace(0, 1, m + 1, dtype=F64)
    x = torch.rand(300, 1, dtype=F64, generator=torch.Generator().manual_seed(1))
    expected = f(t[0]) + ((f(t[1:]) - f(t[:-1])) * torch.sigmoid(50.0 * m * (x - (t[1:] + t[:-1]) / 2))).sum(1, keepdim=True)
    with torch.no_grad():
        close(net(x), expected, atol=1e-12)


def test_least_squares_net_output_layer_is_the_least_squares_solution():
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(80, 1, dtype=F64, generator=gen)
    y = torch.sin(5 * x) + 0.1 * torch.randn(80, 1, dtype=F64, generator=gen)
    net = nb.least_squares_net(6, x, y)
    with torch.no_grad():
        H = torch.cat([net[1](net[0](x)), torch.ones(80, 1, dtype=F64)], dim=1)
        resid = y - net(x)
        close(H.T @ resid, torch.zeros(7, 1, dtype=F64), atol=1e-9)  # normal equations
        ref = torch.linalg.lstsq(H, y).solution
        close(torch.cat([net[2].weight.T, net[2].bias[:, None]]), ref, atol=1e-8)


@pytest.mark.parametrize("depth", [1, 3, 5])
def test_composed_tents_are_a_sawtooth_with_2_to_the_k_pieces(depth):
    x = torch.linspace(0, 1, 2**10 + 1, dtype=F64)[:, None]
    deep = torch.nn.Sequential(*[nb.tent_layer() for _ in range(depth)])
    with torch.no_grad():
        out = deep(x)
    close(out, 1 - ((2**depth * x) % 2 - 1).abs(), atol=1e-12)
    assert nb.count_linear_pieces(out, x) == 2**depth
    assert nb.count_linear_pieces(3 * x + 1, x) == 1
    assert nb.count_linear_pieces(x - 0.5 + (x - 0.25).clamp(min=0), x) == 2  # kink on the grid


def test_time_mlp_passes_times_each_run_and_leaves_the_parameters_alone():
    gen = torch.Generator().manual_seed(5)
    params = random_mlp([6, 5, 2], gen)
    before = [(W.clone(), b.clone()) for W, b in params]
    fwd, bwd = nb.time_mlp_passes(params, torch.randn(4, 6, dtype=F64, generator=gen), "tanh", repeats=3)
    assert fwd.shape == bwd.shape == (3,) and (fwd > 0).all() and (bwd > 0).all()
    for (W, b), (W0, b0) in zip(params, before):
        close(W, W0, atol=0)
        close(b, b0, atol=0)
