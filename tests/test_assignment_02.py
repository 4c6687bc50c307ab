"""Assignment 02 (backprop): the self-checks accept the solution and reject wrong answers.

For every check in utils/exercises/backprop.py: (1) it passes on the functions of
solutions/02_backprop.ipynb, (2) it raises CheckFailed on plausible mistakes, written out
below (a missing transpose, a mean instead of a sum, the activation's derivative applied to
the wrong tensor, gradient ascent, ...), and (3) it lets a stub's NotImplementedError through.
"""

from __future__ import annotations

import pytest
import torch
from nbdefs import definitions
from selfchecks import (
    assert_fails,
    assert_passes,
    assert_stub_gets_todo,
    stub,
    wrong_answers,
    wrong_ids,
)

from utils.exercises import backprop

sol = definitions("02_backprop", folder="solutions")


# ------------------------------------------------------------------- 1. linear_backward
def lin_mean_bias(dZ, A, W):  # averages the bias gradient over the batch
    return A.T @ dZ, dZ.mean(dim=0), dZ @ W.T


def lin_theory_layout(dZ, A, W):  # the single-example formula dW = dz a^T, transcribed
    return dZ.T @ A, dZ.sum(dim=0), dZ @ W.T


def lin_no_transpose(dZ, A, W):  # dA = dZ W: a shape error
    return A.T @ dZ, dZ.sum(dim=0), dZ @ W


def lin_bias_rows(dZ, A, W):  # sums over the wrong axis
    return A.T @ dZ, dZ.sum(dim=1), dZ @ W.T


def lin_only_two(dZ, A, W):
    return A.T @ dZ, dZ.sum(dim=0)


# --------------------------------------------------------------------- 2. tanh_backward
def tanh_on_z(dA, Z):  # 1 - z^2 instead of 1 - tanh(z)^2
    return dA * (1 - Z**2)


def tanh_no_upstream(dA, Z):  # forgets to multiply by the upstream gradient
    return 1 - torch.tanh(Z) ** 2


def tanh_sigmoid_rule(dA, Z):  # the sigmoid's a (1 - a)
    a = torch.tanh(Z)
    return dA * a * (1 - a)


# ----------------------------------------------------------------- 3. mse_loss_and_grad
def mse_sum(Y_hat, Y):  # a sum, not a mean
    r = Y_hat - Y
    return (r**2).sum(), 2 * r


def mse_grad_rows_only(Y_hat, Y):  # divides the gradient by n, not n q
    r = Y_hat - Y
    return (r**2).mean(), 2 * r / r.shape[0]


def mse_grad_sign(Y_hat, Y):  # the derivative with respect to Y
    r = Y_hat - Y
    return (r**2).mean(), -2 * r / r.numel()


# ---------------------------------------------------------------------- 4. mlp_forward
def fwd_tanh_output(X, params):  # an activation on the output too
    Z1 = X @ params["W1"] + params["b1"]
    A1 = torch.tanh(Z1)
    return torch.tanh(A1 @ params["W2"] + params["b2"]), {"X": X, "Z1": Z1, "A1": A1}


def fwd_no_bias(X, params):
    Z1 = X @ params["W1"]
    A1 = torch.tanh(Z1)
    return A1 @ params["W2"], {"X": X, "Z1": Z1, "A1": A1}


def fwd_sigmoid(X, params):
    Z1 = X @ params["W1"] + params["b1"]
    A1 = torch.sigmoid(Z1)
    return A1 @ params["W2"] + params["b2"], {"X": X, "Z1": Z1, "A1": A1}


def fwd_no_cache(X, params):
    return sol.mlp_forward(X, params)[0]


# --------------------------------------------------------------------- 5. mlp_backward
def bwd_skip_activation(dY_hat, params, cache):  # dZ1 = dA1: forgets rule 1
    dW2, db2, dA1 = sol.linear_backward(dY_hat, cache["A1"], params["W2"])
    dW1, db1, _ = sol.linear_backward(dA1, cache["X"], params["W1"])
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


def bwd_wrong_input(dY_hat, params, cache):  # dW2 from Z1 instead of A1
    dW2, db2, dA1 = sol.linear_backward(dY_hat, cache["Z1"], params["W2"])
    dZ1 = sol.tanh_backward(dA1, cache["Z1"])
    dW1, db1, _ = sol.linear_backward(dZ1, cache["X"], params["W1"])
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


def bwd_activation_at_output(dY_hat, params, cache):  # rule 1 applied to the linear output
    Z2 = cache["A1"] @ params["W2"] + params["b2"]
    dZ2 = sol.tanh_backward(dY_hat, Z2)
    dW2, db2, dA1 = sol.linear_backward(dZ2, cache["A1"], params["W2"])
    dZ1 = sol.tanh_backward(dA1, cache["Z1"])
    dW1, db1, _ = sol.linear_backward(dZ1, cache["X"], params["W1"])
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


def bwd_tuple(dY_hat, params, cache):  # a tuple instead of the dict
    grads = sol.mlp_backward(dY_hat, params, cache)
    return grads["W1"], grads["b1"], grads["W2"], grads["b2"]


def bwd_swapped_keys(dY_hat, params, cache):
    grads = sol.mlp_backward(dY_hat, params, cache)
    return {"W1": grads["W1"], "b1": grads["b2"], "W2": grads["W2"], "b2": grads["b1"]}


def check_backward_with_solution_forward(backward):
    backprop.check_mlp_backward(sol.mlp_forward, backward)


# --------------------------------------------------------------------- 6. train_by_hand
def _step(X, Y, params):
    Y_hat, cache = sol.mlp_forward(X, params)
    loss, dY_hat = sol.mse_loss_and_grad(Y_hat, Y)
    return loss, sol.mlp_backward(dY_hat, params, cache)


def train_ascent(X, Y, params, lr, n_steps):
    history = []
    for _ in range(n_steps):
        loss, grads = _step(X, Y, params)
        params = {k: v + lr * grads[k] for k, v in params.items()}
        history.append(loss)
    return torch.stack(history), params


def train_loss_after_update(X, Y, params, lr, n_steps):
    history = []
    for _ in range(n_steps):
        _, grads = _step(X, Y, params)
        params = {k: v - lr * grads[k] for k, v in params.items()}
        history.append(sol.mse_loss_and_grad(sol.mlp_forward(X, params)[0], Y)[0])
    return torch.stack(history), params


def train_stale_gradient(X, Y, params, lr, n_steps):  # gradients computed once, reused
    history = []
    _, grads = _step(X, Y, params)
    for _ in range(n_steps):
        loss, _ = _step(X, Y, params)
        params = {k: v - lr * grads[k] for k, v in params.items()}
        history.append(loss)
    return torch.stack(history), params


def train_in_place(X, Y, params, lr, n_steps):  # right numbers, but mutates the caller's dict
    history = []
    for _ in range(n_steps):
        loss, grads = _step(X, Y, params)
        for k in params:
            params[k] -= lr * grads[k]
        history.append(loss)
    return torch.stack(history), params


def train_one_step_short(X, Y, params, lr, n_steps):
    return sol.train_by_hand(X, Y, params, lr, n_steps - 1)


def train_ignores_lr(X, Y, params, lr, n_steps):
    return sol.train_by_hand(X, Y, params, 0.1, n_steps)


# --------------------------------------------------------------------------------- table
CASES = {
    "linear_backward": (
        backprop.check_linear_backward,
        sol.linear_backward,
        [lin_mean_bias, lin_theory_layout, lin_no_transpose, lin_bias_rows, lin_only_two],
    ),
    "tanh_backward": (
        backprop.check_tanh_backward,
        sol.tanh_backward,
        [tanh_on_z, tanh_no_upstream, tanh_sigmoid_rule],
    ),
    "mse_loss_and_grad": (
        backprop.check_mse_loss_and_grad,
        sol.mse_loss_and_grad,
        [mse_sum, mse_grad_rows_only, mse_grad_sign],
    ),
    "mlp_forward": (
        backprop.check_mlp_forward,
        sol.mlp_forward,
        [fwd_tanh_output, fwd_no_bias, fwd_sigmoid, fwd_no_cache],
    ),
    "mlp_backward": (
        check_backward_with_solution_forward,
        sol.mlp_backward,
        [
            bwd_skip_activation,
            bwd_wrong_input,
            bwd_activation_at_output,
            bwd_tuple,
            bwd_swapped_keys,
        ],
    ),
    "train_by_hand": (
        backprop.check_train_by_hand,
        sol.train_by_hand,
        [
            train_ascent,
            train_loss_after_update,
            train_stale_gradient,
            train_in_place,
            train_one_step_short,
            train_ignores_lr,
        ],
    ),
}
WRONG = wrong_answers(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_check_passes_on_the_solution(name, capsys):
    assert_passes(capsys, *CASES[name][:2])


@pytest.mark.parametrize("name, wrong", WRONG, ids=wrong_ids(WRONG))
def test_check_fails_on_a_wrong_answer(name, wrong, capsys):
    assert_fails(capsys, CASES[name][0], wrong)


@pytest.mark.parametrize("name", list(CASES))
def test_check_lets_a_stub_through(name, capsys):
    assert_stub_gets_todo(capsys, CASES[name][0], stub)


def test_backward_check_also_stops_at_a_forward_stub():
    with pytest.raises(NotImplementedError):
        backprop.check_mlp_backward(stub, sol.mlp_backward)


def test_solution_gradients_match_autograd_on_fresh_shapes():
    gen = torch.Generator().manual_seed(5)
    for n, d, h, q in [(1, 1, 1, 1), (13, 2, 7, 4), (50, 8, 3, 2)]:
        params = sol.init_params(d, h, q, generator=gen)
        X = torch.randn(n, d, generator=gen, dtype=torch.float64)
        Y = torch.randn(n, q, generator=gen, dtype=torch.float64)
        Y_hat, cache = sol.mlp_forward(X, params)
        _, dY_hat = sol.mse_loss_and_grad(Y_hat, Y)
        grads = sol.mlp_backward(dY_hat, params, cache)
        leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        pred = torch.tanh(X @ leaves["W1"] + leaves["b1"]) @ leaves["W2"] + leaves["b2"]
        torch.mean((pred - Y) ** 2).backward()
        for k, leaf in leaves.items():
            torch.testing.assert_close(grads[k], leaf.grad, atol=1e-10, rtol=0)


def test_gradient_descent_lowers_the_loss():
    gen = torch.Generator().manual_seed(6)
    X = 4 * torch.rand(100, 1, generator=gen, dtype=torch.float64) - 2
    Y = torch.sin(2 * X)
    history, _ = sol.train_by_hand(X, Y, sol.init_params(1, 16, 1, generator=gen), 0.1, 300)
    assert history[-1] < 0.5 * history[0]
