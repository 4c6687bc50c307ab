"""Self-checks of assignment 02: backpropagation by hand, then gradient descent.

Exercises (DL-lec5 and lec5-module; lecture notebooks/03_backprop.ipynb). The network is
a two-layer perceptron in batched form (one example per row)::

    Z1 = X W1 + 1 b1^T,   A1 = tanh(Z1),   Y_hat = A1 W2 + 1 b2^T,   L = mean((Y_hat - Y)^2)

with ``params = {"W1": d x h, "b1": h, "W2": h x q, "b2": q}``.

1. ``linear_backward(dZ, A, W) -> (dW, db, dA)``: dW = A^T dZ, db = dZ^T 1, dA = dZ W^T
2. ``tanh_backward(dA, Z) -> dZ``: dZ = dA * tanh'(Z)
3. ``mse_loss_and_grad(Y_hat, Y) -> (loss, dY_hat)``
4. ``mlp_forward(X, params) -> (Y_hat, cache)``
5. ``mlp_backward(dY_hat, params, cache) -> grads`` (a dict with the keys of ``params``)
6. ``train_by_hand(X, Y, params, lr, n_steps) -> (losses, params)``: full-batch gradient
   descent, which must reproduce ``torch.optim.SGD`` step by step.

Everything is compared with autograd (or ``torch.optim.SGD``) in float64 to 1e-10, on
inputs whose dimensions all differ, so a missing transpose cannot go unnoticed.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from ..checks import check_close, check_shape, check_true
from . import call, exercise, generator, require

__all__ = [
    "check_linear_backward",
    "check_mlp_backward",
    "check_mlp_forward",
    "check_mse_loss_and_grad",
    "check_tanh_backward",
    "check_train_by_hand",
]

F64 = torch.float64
ATOL = 1e-10
KEYS = ("W1", "b1", "W2", "b2")


_CALL_HINT = "try your function on a small input and print the shapes of the intermediate results"


# ------------------------------------------------------------------------------ helpers
_gen = generator
_call = functools.partial(call, hint=_CALL_HINT)
_require = require


def _pair(name: str, out, n: int, what: str):
    _require(
        isinstance(out, tuple | list) and len(out) == n,
        name,
        f"returned a {type(out).__name__}, expected a tuple {what}",
        hint=f"end with `return {what.strip('()')}`",
    )
    return out


def _random_params(d: int, h: int, q: int, g: torch.Generator) -> dict:
    return {
        "W1": torch.randn(d, h, generator=g, dtype=F64) / d**0.5,
        "b1": 0.5 * torch.randn(h, generator=g, dtype=F64),
        "W2": torch.randn(h, q, generator=g, dtype=F64) / h**0.5,
        "b2": 0.5 * torch.randn(q, generator=g, dtype=F64),
    }


def _reference_net(params: dict) -> nn.Sequential:
    """The same network from nn.Linear layers (which store W transposed)."""
    d, h = params["W1"].shape
    q = params["W2"].shape[1]
    net = nn.Sequential(nn.Linear(d, h, dtype=F64), nn.Tanh(), nn.Linear(h, q, dtype=F64))
    with torch.no_grad():
        net[0].weight.copy_(params["W1"].T)
        net[0].bias.copy_(params["b1"])
        net[2].weight.copy_(params["W2"].T)
        net[2].bias.copy_(params["b2"])
    return net


def _net_params(net: nn.Sequential) -> dict:
    return {
        "W1": net[0].weight.detach().T,
        "b1": net[0].bias.detach(),
        "W2": net[2].weight.detach().T,
        "b2": net[2].bias.detach(),
    }


def _net_grads(net: nn.Sequential) -> dict:
    return {"W1": net[0].weight.grad.T, "b1": net[0].bias.grad,
            "W2": net[2].weight.grad.T, "b2": net[2].bias.grad}  # fmt: skip


def _as_dict(name: str, out, hint: str) -> dict:
    _require(isinstance(out, dict), name, f"returned a {type(out).__name__}, not a dict", hint)
    missing = [k for k in KEYS if k not in out]
    _require(not missing, name, f"the dict lacks the keys {missing}", hint)
    return out


# ------------------------------------------------------------------- the layer rules
def check_linear_backward(linear_backward) -> None:
    """Exercise 1: the gradients of Z = A W + 1 b^T, given the upstream dZ."""
    with exercise("linear_backward"):
        g = _gen(21)
        n, m, p = 7, 5, 3
        A = torch.randn(n, m, generator=g, dtype=F64, requires_grad=True)
        W = torch.randn(m, p, generator=g, dtype=F64, requires_grad=True)
        b = torch.randn(p, generator=g, dtype=F64, requires_grad=True)
        dZ = torch.randn(n, p, generator=g, dtype=F64)
        # L = <Z, dZ> has exactly this upstream gradient dL/dZ = dZ
        ((A @ W + b) * dZ).sum().backward()
        out = _call(
            "linear_backward",
            linear_backward,
            dZ,
            A.detach(),
            W.detach(),
            hint="shapes: A is n x m, W is m x p, dZ is n x p; so dW = A^T dZ (m x p) and "
            "dA = dZ W^T (n x m)",
        )
        dW, db, dA = _pair("linear_backward", out, 3, "(dW, db, dA)")
        check_shape("dW has the shape of W (rule 0)", dW, (m, p), hint="dW = A^T dZ is m x p")
        check_close("dW = A^T dZ", dW, W.grad, atol=ATOL)
        check_shape(
            "db has the shape of b",
            db,
            (p,),
            hint="db = dZ^T 1 is a vector: the column sums of dZ, dZ.sum(dim=0)",
        )
        check_close(
            "db = dZ^T 1",
            db,
            b.grad,
            atol=ATOL,
            hint="b is shared by all n examples, so their contributions add up: a SUM over "
            "the rows of dZ, not a mean",
        )
        check_shape("dA has the shape of A", dA, (n, m), hint="dA = dZ W^T is n x m")
        check_close("dA = dZ W^T", dA, A.grad, atol=ATOL)


def check_tanh_backward(tanh_backward) -> None:
    """Exercise 2: dZ = dA * tanh'(Z), elementwise."""
    with exercise("tanh_backward"):
        g = _gen(22)
        Z = (2 * torch.randn(6, 4, generator=g, dtype=F64)).requires_grad_(True)
        dA = torch.randn(6, 4, generator=g, dtype=F64)
        (torch.tanh(Z) * dA).sum().backward()
        dZ = _call(
            "tanh_backward", tanh_backward, dA, Z.detach(), hint="rule 1 is elementwise: use *"
        )
        check_shape("dZ has the shape of Z", dZ, (6, 4), hint="rule 1 is elementwise: use *")
        check_close(
            "dZ = dA * (1 - tanh(Z)^2)",
            dZ,
            Z.grad,
            atol=ATOL,
            hint="tanh'(z) = 1 - tanh(z)^2 (not 1 - z^2), multiplied ELEMENTWISE by the "
            "upstream dA",
        )


def check_mse_loss_and_grad(mse_loss_and_grad) -> None:
    """Exercise 3: the loss mean((Y_hat - Y)^2) and its gradient with respect to Y_hat."""
    with exercise("mse_loss_and_grad"):
        g = _gen(23)
        Y_hat = torch.randn(9, 2, generator=g, dtype=F64, requires_grad=True)
        Y = torch.randn(9, 2, generator=g, dtype=F64)
        reference = nn.MSELoss()(Y_hat, Y)
        reference.backward()
        out = _call("mse_loss_and_grad", mse_loss_and_grad, Y_hat.detach(), Y)
        loss, dY_hat = _pair("mse_loss_and_grad", out, 2, "(loss, dY_hat)")
        check_close(
            "loss vs nn.MSELoss",
            loss,
            reference,
            atol=ATOL,
            hint="the mean over ALL n*q entries of (Y_hat - Y)^2",
        )
        check_shape("dY_hat has the shape of Y_hat", dY_hat, (9, 2))
        check_close(
            "dY_hat vs autograd",
            dY_hat,
            Y_hat.grad,
            atol=ATOL,
            hint="d/dY_hat of mean((Y_hat - Y)^2) is 2 (Y_hat - Y) / (n q): the 1/(n q) of the "
            "mean stays in the gradient, and the sign follows (Y_hat - Y)",
        )


# ---------------------------------------------------------------------- the network
def check_mlp_forward(mlp_forward) -> None:
    """Exercise 4: the forward pass Y_hat = tanh(X W1 + 1 b1^T) W2 + 1 b2^T."""
    with exercise("mlp_forward"):
        g = _gen(24)
        n, d, h, q = 9, 4, 6, 3
        params = _random_params(d, h, q, g)
        X = torch.randn(n, d, generator=g, dtype=F64)
        out = _call(
            "mlp_forward",
            mlp_forward,
            X,
            params,
            hint="shapes: X is n x d, W1 d x h, b1 h, W2 h x q, b2 q; Z1 = X @ W1 + b1",
        )
        Y_hat, _ = _pair("mlp_forward", out, 2, "(Y_hat, cache)")
        check_shape("Y_hat", Y_hat, (n, q), hint="Y_hat = A1 W2 + b2 is n x q")
        with torch.no_grad():
            reference = _reference_net(params)(X)
        check_close(
            "Y_hat vs nn.Linear -> nn.Tanh -> nn.Linear",
            Y_hat,
            reference,
            atol=ATOL,
            hint="hidden layer: Z1 = X W1 + b1, A1 = tanh(Z1); output layer: Y_hat = A1 W2 + b2 "
            "with NO activation (a regression output)",
        )


def check_mlp_backward(mlp_forward, mlp_backward) -> None:
    """Exercise 5: all four parameter gradients of the network, given dY_hat."""
    with exercise("mlp_backward"):
        g = _gen(25)
        n, d, h, q = 9, 4, 6, 3
        params = _random_params(d, h, q, g)
        X = torch.randn(n, d, generator=g, dtype=F64)
        dY_hat = torch.randn(n, q, generator=g, dtype=F64)  # any upstream gradient
        net = _reference_net(params)
        (net(X) * dY_hat).sum().backward()  # L = <Y_hat, dY_hat>
        reference = _net_grads(net)

        out = _call("mlp_forward", mlp_forward, X, params)
        _, cache = _pair("mlp_forward", out, 2, "(Y_hat, cache)")
        out = _call(
            "mlp_backward",
            mlp_backward,
            dY_hat,
            params,
            cache,
            hint="go backwards: output layer (rule 2), tanh (rule 1), hidden layer (rule 2)",
        )
        grads = _as_dict(
            "mlp_backward", out, hint='return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}'
        )
        hints = {
            "W2": "dW2 = A1^T dY_hat, with the activations A1 of the hidden layer",
            "b2": "db2 = column sums of dY_hat",
            "W1": "dA1 = dY_hat W2^T, then dZ1 = dA1 * (1 - A1^2) (rule 1), then dW1 = X^T dZ1; "
            "the output layer has no activation, so its dZ is dY_hat itself",
            "b1": "db1 = column sums of dZ1 (after the tanh derivative)",
        }
        for key in ("W2", "b2", "W1", "b1"):
            check_close(
                f"d{key} vs autograd", grads[key], reference[key], atol=ATOL, hint=hints[key]
            )


# ---------------------------------------------------------------- gradient descent
def check_train_by_hand(train_by_hand) -> None:
    """Exercise 6: full-batch gradient descent with the hand gradients = torch.optim.SGD."""
    with exercise("train_by_hand"):
        g = _gen(26)
        n, d, h, q = 20, 3, 5, 2
        lr, n_steps = 0.2, 6
        params = _random_params(d, h, q, g)
        X = torch.randn(n, d, generator=g, dtype=F64)
        Y = torch.randn(n, q, generator=g, dtype=F64)
        given = {k: v.clone() for k, v in params.items()}

        net = _reference_net(params)
        opt = torch.optim.SGD(net.parameters(), lr=lr)
        reference_losses = []
        for _ in range(n_steps):
            loss = nn.MSELoss()(net(X), Y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            reference_losses.append(loss.detach())

        out = _call(
            "train_by_hand",
            train_by_hand,
            X,
            Y,
            given,
            lr,
            n_steps,
            hint="each step: mlp_forward, mse_loss_and_grad, mlp_backward, then the update",
        )
        history, final = _pair("train_by_hand", out, 2, "(losses, params)")
        if isinstance(history, list | tuple):
            history = torch.stack([torch.as_tensor(v, dtype=F64) for v in history])
        check_shape("one loss per step", history, (n_steps,), hint="append the loss once per step")
        check_close(
            f"losses of {n_steps} steps vs torch.optim.SGD",
            history,
            torch.stack(reference_losses),
            atol=ATOL,
            hint="each step: forward, loss, backward, then params <- params - lr * grads; "
            "record the loss computed BEFORE the update",
        )
        final = _as_dict("train_by_hand", final, hint="return the losses and the final params dict")
        reference_final = _net_params(net)
        check_close(
            "final parameters vs torch.optim.SGD",
            torch.cat([final[k].flatten() for k in KEYS]),
            torch.cat([reference_final[k].flatten() for k in KEYS]),
            atol=ATOL,
            hint="gradient DEScent subtracts lr * gradient from every parameter",
        )
        unchanged = all(torch.equal(given[k], params[k]) for k in KEYS)
        check_true(
            "the params passed in are left unchanged",
            unchanged,
            "" if unchanged else "train_by_hand modified them in place",
            hint="build new tensors (W = W - lr * dW) instead of updating in place (W -= ...)",
        )
