"""Lecture 01 (autograd): the notebook's hand-derived derivatives against PyTorch autograd."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from nbdefs import definitions
from torch.autograd.functional import hessian, jacobian

D = torch.float64


@pytest.fixture(scope="module")
def nb():
    return definitions("01_autograd")


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(2024)


def _close(actual, expected, atol=1e-10):
    torch.testing.assert_close(
        torch.as_tensor(actual, dtype=D), torch.as_tensor(expected, dtype=D), atol=atol, rtol=0
    )


# ------------------------------------------------------------------- derivative as a limit
def test_forward_difference_of_a_square_is_off_by_exactly_dx(nb):
    for x, dx in [(3.0, 1.0), (3.0, 0.5), (-1.2, 0.01), (0.7, 1e-3)]:
        assert nb.forward_difference(nb.square, x, dx) == pytest.approx(2 * x + dx, abs=1e-9)


def test_central_difference_is_second_order(nb):
    x = np.linspace(-2, 2, 9)
    for h in [1e-2, 1e-3]:
        err = np.abs(nb.central_difference(np.exp, x, h) - np.exp(x))
        assert err.max() < np.exp(2) * h**2 / 6 * 1.05 + 1e-12
    # and the forward difference is only first order: 100 times worse at h = 1e-2
    fwd = np.abs(nb.forward_difference(np.exp, 0.0, 1e-2) - 1.0)
    assert fwd > 100 * abs(nb.central_difference(np.exp, 0.0, 1e-2) - 1.0)


@pytest.mark.parametrize("dx", [1.0, 0.5, 0.25, 0.01])
def test_riemann_table_is_a_left_sum(nb, dx):
    table = nb.riemann_table(nb.two_x, nb.square, dx, x_max=3.0)
    x = table["x"].to_numpy()
    assert x[0] == 0 and x[-1] == pytest.approx(3.0) and len(x) == round(3 / dx) + 1
    # closed form of the left sum of 2x: x^2 - x dx (a right sum would give x^2 + x dx)
    np.testing.assert_allclose(table["F̂(x)"], x**2 - x * dx, atol=1e-10)
    np.testing.assert_allclose(table["F(x)"], x**2)


def test_riemann_table_reproduces_the_notes(nb):
    ends = [
        nb.riemann_table(nb.two_x, nb.square, dx, 3.0)["F̂(x)"].iloc[-1] for dx in (1, 0.5, 0.01)
    ]
    np.testing.assert_allclose(ends, [6.0, 7.5, 8.97], atol=1e-10)


def test_riemann_table_converges_to_the_integral_of_another_function(nb):
    table = nb.riemann_table(np.cos, np.sin, 1e-3, x_max=1.5)
    assert abs(table["F̂(x)"].iloc[-1] - math.sin(1.5)) < 1e-3


# ------------------------------------------------------------------------- numerical gradient
def test_numerical_gradient_matches_autograd(nb, gen):
    def f(t):
        return (torch.sin(t) * t**2).sum() + t.prod()

    x = torch.randn(3, 4, generator=gen, dtype=D).requires_grad_()
    f(x).backward()
    num = nb.numerical_gradient(f, x)
    assert num.shape == x.shape
    _close(num, x.grad, atol=1e-7)


# --------------------------------------------------------------------------------- chain rule
def test_grad_z_by_hand_matches_autograd(nb, gen):
    x1 = (0.05 + 6 * torch.rand(1000, generator=gen, dtype=D)).requires_grad_()
    x2 = (0.05 + 6 * torch.rand(1000, generator=gen, dtype=D)).requires_grad_()
    nb.z_fn(x1, x2).sum().backward()
    d1, d2 = nb.grad_z_by_hand(x1.detach(), x2.detach())
    _close(d1, x1.grad, atol=1e-11)
    _close(d2, x2.grad, atol=1e-11)


def test_grad_z_by_hand_with_negative_inputs(nb):
    # log(x1 x2) is defined when both are negative too
    x1 = torch.tensor([-0.7, -2.0], dtype=D, requires_grad=True)
    x2 = torch.tensor([-1.3, -0.4], dtype=D, requires_grad=True)
    nb.z_fn(x1, x2).sum().backward()
    d1, d2 = nb.grad_z_by_hand(x1.detach(), x2.detach())
    _close(d1, x1.grad)
    _close(d2, x2.grad)


def test_f_xy_gradient_and_the_notes_values(nb, gen):
    x = (0.1 + 3 * torch.rand(500, generator=gen, dtype=D)).requires_grad_()
    y = (6 * torch.rand(500, generator=gen, dtype=D) - 3).requires_grad_()
    nb.f_xy(x, y).sum().backward()
    fx, fy = nb.grad_f_by_hand(x.detach(), y.detach())
    _close(fx, x.grad)
    _close(fy, y.grad)
    fx, fy = nb.grad_f_by_hand(torch.tensor(1.0, dtype=D), torch.tensor(2.0, dtype=D))
    assert round(fx.item(), 4) == 0.1677 and round(fy.item(), 4) == -0.4161


def test_hessian_f_by_hand_matches_autograd(nb, gen):
    for _ in range(5):
        v = torch.stack(
            [
                0.2 + 2 * torch.rand((), generator=gen, dtype=D),
                torch.randn((), generator=gen, dtype=D),
            ]
        )
        H = hessian(lambda t: nb.f_xy(t[0], t[1]), v)
        _close(nb.hessian_f_by_hand(v[0], v[1]), H)


# ---------------------------------------------------------------------- vectors and matrices
def test_grad_sum_of_squares(nb, gen):
    x = torch.randn(7, generator=gen, dtype=D, requires_grad=True)
    y = torch.randn(7, generator=gen, dtype=D, requires_grad=True)
    nb.sum_of_squares(x, y).backward()
    gx, gy = nb.grad_sum_of_squares_by_hand(x.detach(), y.detach())
    _close(gx, x.grad)
    _close(gy, y.grad)


@pytest.mark.parametrize("n", [2, 4, 5])
def test_grad_logdet_is_inverse_transpose(nb, gen, n):
    # non-symmetric, so a missing transpose fails; positive determinant for torch.logdet
    X = 2 * torch.eye(n, dtype=D) + torch.randn(n, n, generator=gen, dtype=D) / n**0.5
    if torch.linalg.det(X) < 0:
        X[0] = -X[0]
    assert (X - X.T).abs().max() > 1e-3
    X.requires_grad_()
    torch.logdet(X).backward()
    _close(nb.grad_logdet_by_hand(X.detach()), X.grad)


def test_grad_logdet_also_holds_for_log_abs_det(nb, gen):
    X = torch.randn(4, 4, generator=gen, dtype=D) + 2 * torch.eye(4, dtype=D)
    X[1] = -X[1] if torch.linalg.det(X) > 0 else X[1]  # make det X < 0
    X.requires_grad_()
    torch.linalg.slogdet(X).logabsdet.backward()
    _close(nb.grad_logdet_by_hand(X.detach()), X.grad)


def test_grad_sum_sigmoid_matmul_non_square(nb, gen):
    X = torch.randn(7, 3, generator=gen, dtype=D, requires_grad=True)
    W = torch.randn(3, 5, generator=gen, dtype=D, requires_grad=True)
    torch.sigmoid(X @ W).sum().backward()
    dX, dW = nb.grad_sum_sigmoid_matmul_by_hand(X.detach(), W.detach())
    assert dX.shape == X.shape and dW.shape == W.shape
    _close(dX, X.grad)
    _close(dW, W.grad)


# ------------------------------------------------------------------------------- Jacobians
def test_softmax_jacobian(nb, gen):
    u = 3 * torch.randn(6, generator=gen, dtype=D)
    J = jacobian(lambda t: torch.softmax(t, dim=0), u)
    _close(nb.softmax_jacobian_by_hand(u), J)


def test_tanh_layer_jacobian_non_square(nb, gen):
    A = torch.randn(5, 3, generator=gen, dtype=D)
    x = torch.randn(3, generator=gen, dtype=D)
    J = jacobian(lambda t: torch.tanh(A @ t), x)
    _close(nb.tanh_layer_jacobian_by_hand(A, x), J)


# ------------------------------------------------------------------------ graph and training
def test_print_graph_names_the_leaves(nb, capsys):
    a = torch.tensor(1.0, requires_grad=True)
    b = torch.tensor(2.0, requires_grad=True)
    nb.print_graph((torch.exp(a) * b).grad_fn, {id(a): "a", id(b): "b"})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "MulBackward0"
    assert lines[1].strip() == "ExpBackward0"
    assert sum("AccumulateGrad" in ln for ln in lines) == 2
    assert any(ln.endswith(".grad of a") for ln in lines) and any(
        ln.endswith(".grad of b") for ln in lines
    )


def test_gradient_descent_reaches_least_squares_only_when_gradients_are_reset(nb, gen):
    X = torch.randn(100, 4, generator=gen, dtype=D)
    y = X @ torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=D) + 0.1 * torch.randn(
        100, generator=gen, dtype=D
    )
    ols = torch.linalg.lstsq(X, y.unsqueeze(1)).solution.squeeze(1)
    b, losses = nb.fit_linear_regression_gd(X, y, lr=0.1, steps=300)
    assert len(losses) == 300 and not b.requires_grad
    _close(b, ols, atol=1e-8)
    _, losses_bad = nb.fit_linear_regression_gd(X, y, lr=0.1, steps=300, zero_grad=False)
    assert losses_bad[-1] > 10 * losses[-1]


# ------------------------------------------------------------------------- tensor primer
def test_pairwise_sq_dists_matches_cdist(nb, gen):
    A = torch.randn(7, 4, generator=gen, dtype=D)
    B = torch.randn(5, 4, generator=gen, dtype=D)
    out = nb.pairwise_sq_dists(A, B)
    assert out.shape == (7, 5)
    _close(out, torch.cdist(A, B) ** 2, atol=1e-12)


def test_matmul_by_loops_non_square(nb, gen):
    A = torch.randn(3, 5, generator=gen, dtype=D)
    B = torch.randn(5, 2, generator=gen, dtype=D)
    _close(nb.matmul_by_loops(A, B), A @ B, atol=1e-12)


def test_normal_log_density_takes_the_variance(nb, gen):
    x = torch.randn(50, generator=gen, dtype=D) * 3
    for mean, var in [(0.0, 0.1), (1.0, 3.0), (-2.0, 0.5)]:
        ref = torch.distributions.Normal(
            torch.tensor(mean, dtype=D), torch.tensor(var, dtype=D).sqrt()
        ).log_prob(x)
        _close(nb.normal_log_density(x, mean, var), ref, atol=1e-12)


# ------------------------------------------------------------------------- control flow
def test_power_by_loop_and_its_derivative(nb, gen):
    for k in (1, 2, 3, 6):
        x = torch.randn(8, generator=gen, dtype=D).requires_grad_()
        out = nb.power_by_loop(x, k)
        _close(out, x.detach() ** k)
        out.sum().backward()
        _close(x.grad, k * x.detach() ** (k - 1))


@pytest.mark.parametrize("delta", [0.5, 1.0, 2.0])
def test_huber_matches_torch_on_both_branches(nb, gen, delta):
    for r0 in (3 * torch.randn(12, generator=gen, dtype=D)).tolist():
        r = torch.tensor(r0, dtype=D, requires_grad=True)
        ref = torch.tensor(r0, dtype=D, requires_grad=True)
        out = nb.huber(r, delta)
        expected = torch.nn.functional.huber_loss(ref, torch.zeros((), dtype=D), delta=delta)
        _close(out.detach(), expected.detach())
        out.backward()
        expected.backward()
        _close(r.grad, ref.grad)


def test_newton_sqrt_derivative_is_that_of_the_program(nb, gen):
    a = (0.5 + 4 * torch.rand(6, generator=gen, dtype=D)).requires_grad_()
    nb.newton_sqrt(a, 30).sum().backward()
    _close(a.grad, 0.5 / a.detach().sqrt(), atol=1e-10)  # converged: 1 / (2 sqrt a)
    for steps in (1, 2, 3):
        a2 = a.detach().clone().requires_grad_()
        nb.newton_sqrt(a2, steps).sum().backward()
        h = 1e-6
        fd = (nb.newton_sqrt(a.detach() + h, steps) - nb.newton_sqrt(a.detach() - h, steps)) / (2 * h)
        _close(a2.grad, fd, atol=1e-7)
    # after one step x = (1 + a) / 2 exactly, derivative 1/2
    a1 = a.detach().clone().requires_grad_()
    nb.newton_sqrt(a1, 1).sum().backward()
    _close(a1.grad, torch.full_like(a1, 0.5))


# ------------------------------------------------------------------ input derivatives
def test_input_gradient_softmax_regression_matches_autograd(nb, gen):
    X = torch.rand(40, 12, generator=gen, dtype=D)
    W = torch.randn(12, 5, generator=gen, dtype=D)
    b = torch.randn(5, generator=gen, dtype=D)
    labels = torch.randint(0, 5, (40,), generator=gen)
    Xl = X.clone().requires_grad_()
    torch.nn.functional.cross_entropy(Xl @ W + b, labels, reduction="sum").backward()
    _close(nb.input_gradient_softmax_regression(X, labels, W, b), Xl.grad, atol=1e-12)


def test_fgsm_is_a_clipped_sign_step_that_raises_the_loss(nb, gen):
    X = torch.rand(30, 12, generator=gen, dtype=D)
    W = torch.randn(12, 4, generator=gen, dtype=D)
    b = torch.zeros(4, dtype=D)
    labels = torch.randint(0, 4, (30,), generator=gen)
    grad = nb.input_gradient_softmax_regression(X, labels, W, b)
    eps = 0.05
    X_adv = nb.fgsm(X, grad, eps)
    assert X_adv.min() >= 0 and X_adv.max() <= 1
    assert (X_adv - X).abs().max() <= eps + 1e-12
    _close(X_adv, (X + eps * grad.sign()).clamp(0, 1))

    def losses(Z):
        return torch.nn.functional.cross_entropy(Z @ W + b, labels, reduction="none")

    assert (losses(X_adv) >= losses(X) - 1e-12).all()  # convex in x: a sign step never lowers it here
    assert losses(X_adv).mean() > losses(X).mean()


def test_time_forward_backward_times_each_run_and_resets_the_gradient(nb):
    net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    fwd, bwd = nb.time_forward_backward(net, torch.randn(4, 8), repeats=3)
    assert fwd.shape == bwd.shape == (3,) and (fwd > 0).all() and (bwd > 0).all()
    # .grad holds the gradient of one backward pass, not the sum of the 4 runs (warm-up included)
    x = torch.randn(4, 8)
    net.zero_grad()
    net(x).sum().backward()
    once = net[0].weight.grad.clone()
    nb.time_forward_backward(net, x, repeats=3)
    _close(net[0].weight.grad, once, atol=1e-6)


# ------------------------------------------------------------------- the box model by hand
def test_box_chain_matches_autograd_on_fresh_inputs(nb, gen):
    boxes = [nb.Box(torch.tanh, lambda t: 1 - torch.tanh(t) ** 2), nb.Box(lambda t: t**3, lambda t: 3 * t**2),
             nb.Box(torch.sin, torch.cos), nb.Box(torch.exp, torch.exp)]
    x = torch.randn(50, dtype=D, generator=gen)
    y, dy = nb.chain_forward_backward(boxes, x)
    xr = x.clone().requires_grad_(True)
    ref = torch.exp(torch.sin(torch.tanh(xr) ** 3))
    ref.sum().backward()
    _close(y, ref.detach(), atol=1e-12)
    _close(dy, xr.grad, atol=1e-12)


def test_box_remembers_its_input_for_the_backward_pass(nb):
    box = nb.Box(torch.log, lambda t: 1 / t)
    box.forward(torch.tensor([2.0, 4.0], dtype=D))
    _close(box.backward(torch.tensor([1.0, 8.0], dtype=D)), [0.5, 2.0], atol=0)
