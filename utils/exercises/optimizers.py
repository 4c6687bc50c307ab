"""Self-checks of assignment 05: RMSprop and Adam written as ``torch.optim.Optimizer``s.

Exercises (DL-lec8 and homework 4, *convnet training*; lecture notebooks/06_optimizers.ipynb):

1. ``MyRMSprop(params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0)``: its ``step``
2. ``MyAdam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)``: its ``step``

A check takes the student's *class*. On a small test bench (a 5 -> 8 -> 3 tanh network in
float64, 16 observations per step, a fixed sequence of mini-batches) it trains two copies
of the same parameters, one with the student's optimizer and one with its ``torch.optim``
counterpart, and compares all parameters after *every* one of 50 steps to 1e-6. Each
setting isolates one part of the update rule, so a failure comes with a specific hint:

* one step with the defaults (the basic formula; Adam's bias correction);
* 50 steps with the defaults (the moving averages, the state kept between steps);
* non-default hyper-parameters, among them a large epsilon (where epsilon goes);
* tiny gradients with the default epsilon (epsilon outside the square root matters);
* weight decay (an L2 term added to the gradient, not AdamW's decoupled decay);
* two parameter groups with their own learning rate and weight decay.

The first two settings multiply the loss by 1e6: both optimizers are invariant to the
scale of the loss except through epsilon, and with gradients that large the default
epsilon is negligible wherever it is placed, so those settings test the rest of the rule.

One parameter never enters the loss, so its ``.grad`` stays ``None`` and must be skipped.
Nothing here touches the global random number generator.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from ..checks import check_close, check_true
from . import exercise

__all__ = ["check_adam", "check_rmsprop"]

F64 = torch.float64
ATOL = 1e-6
STEPS = 50
BATCH = 16
LARGE = 1e6  # gradients of 10 ... 1e5: the default eps plays no role wherever it is placed
TINY = 1e-6  # gradients of about 1e-7: the default eps matters, and where it is placed too


# ------------------------------------------------------------------------------ helpers
def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _require(condition, name: str, message: str, hint: str | None = None) -> None:
    """A structural check that only speaks up when it fails."""
    if not condition:
        check_true(name, False, message, hint=hint)


def _bench(seed: int = 0):
    """Data and initial parameters of the test bench (float64, from a local generator)."""
    g = _gen(seed)
    X = torch.randn(64, 5, generator=g, dtype=F64)
    y = torch.randint(0, 3, (64,), generator=g)
    init = [
        torch.randn(8, 5, generator=g, dtype=F64) / 5**0.5,  # W1
        0.1 * torch.randn(8, generator=g, dtype=F64),  # b1
        torch.randn(3, 8, generator=g, dtype=F64) / 8**0.5,  # W2
        0.1 * torch.randn(3, generator=g, dtype=F64),  # b2
        torch.randn(4, generator=g, dtype=F64),  # never used: its .grad stays None
    ]
    return X, y, init


def _loss(params, X, y):
    w1, b1, w2, b2, _unused = params
    return F.cross_entropy(torch.tanh(X @ w1.T + b1) @ w2.T + b2, y)


def _one_group(params):
    return params


def _two_groups(params):
    return [
        {"params": params[:2], "lr": 0.003, "weight_decay": 0.05},  # its own lr and decay
        {"params": params[2:]},  # the constructor's defaults
    ]


def _path(make_optimizer, groups, X, y, init, steps: int, loss_scale: float) -> torch.Tensor:
    """All parameters after every step: a [steps, number of parameters] tensor."""
    params = [p.clone().requires_grad_(True) for p in init]
    opt = make_optimizer(groups(params))
    rows = []
    for k in range(steps):
        idx = (torch.arange(BATCH) + k * BATCH) % len(X)
        loss = loss_scale * _loss(params, X[idx], y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        rows.append(torch.cat([p.detach().flatten() for p in params]))
    return torch.stack(rows)


@functools.lru_cache(maxsize=32)
def _reference_path(torch_class, hyper: tuple, groups, steps: int, loss_scale: float):
    """The path of the torch.optim reference; the same in every call, so computed once."""
    X, y, init = _bench()
    hyper = dict(hyper)
    return _path(lambda p: torch_class(p, **hyper), groups, X, y, init, steps, loss_scale)


def _compare(
    name: str,
    my_class,
    torch_class,
    hyper: dict,
    *,
    steps: int = STEPS,
    groups=_one_group,
    loss_scale: float = 1.0,
    hint: str,
) -> None:
    """Train with both optimizers on the bench and compare the parameters after every step."""
    X, y, init = _bench()
    label = f"{name} vs torch.optim.{torch_class.__name__}"
    try:
        mine = _path(lambda p: my_class(p, **hyper), groups, X, y, init, steps, loss_scale)
    except NotImplementedError:
        raise
    except Exception as e:  # noqa: BLE001 (any error in the student's code is a FAIL)
        check_true(
            label,
            False,
            f"raised {type(e).__name__}: {e}",
            hint="run one step by hand on a tiny model and print the state; inside step() "
            "every hyper-parameter comes from `group` (group['lr'], ...)",
        )
    reference = _reference_path(torch_class, tuple(hyper.items()), groups, steps, loss_scale)
    start = torch.cat([p.flatten() for p in init])
    _require(
        not torch.equal(mine[0], start),
        label,
        "the parameters did not change at all in the first step",
        hint="update the parameter in place, e.g. `p -= ...` or `p.add_(...)`: "
        "`p = p - ...` only rebinds the local name p and leaves the model as it was",
    )
    check_close(
        f"{label}, {hyper or 'defaults'}, {steps} step{'s' * (steps > 1)}",
        mine,
        reference,
        atol=ATOL,
        hint=hint,
    )


# --------------------------------------------------------------------- the two optimizers
def _is_optimizer_class(cls, name: str) -> None:
    _require(
        isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer),
        name,
        f"got {cls!r}, not a subclass of torch.optim.Optimizer",
        hint=f"pass the class itself, not an instance: optimizers.check_...({name})",
    )


def check_rmsprop(MyRMSprop) -> None:
    """Exercise 1: ``MyRMSprop`` matches ``torch.optim.RMSprop`` (no momentum) step by step."""
    with exercise("MyRMSprop"):
        _is_optimizer_class(MyRMSprop, "MyRMSprop")
        ref = torch.optim.RMSprop
        _compare(
            "MyRMSprop (loss x 1e6)",
            MyRMSprop,
            ref,
            {},
            steps=1,
            loss_scale=LARGE,
            hint="after one step G = (1 - alpha) g^2 (it starts at 0, with no bias "
            "correction), and the update is lr * g / (sqrt(G) + eps): ten times lr in size",
        )
        _compare(
            "MyRMSprop (loss x 1e6)",
            MyRMSprop,
            ref,
            {},
            loss_scale=LARGE,
            hint="G is a moving average kept in self.state[p] from one step to the next: "
            "G <- alpha * G + (1 - alpha) * g^2, with alpha (not 1 - alpha) on the old value",
        )
        _compare(
            "MyRMSprop",
            MyRMSprop,
            ref,
            {"lr": 0.003, "alpha": 0.9, "eps": 1e-3},
            hint="read lr, alpha and eps from `group`; eps goes OUTSIDE the square root, "
            "g / (sqrt(G) + eps), not g / sqrt(G + eps) as the lecture slides write it",
        )
        _compare(
            "MyRMSprop (loss x 1e-6: tiny gradients)",
            MyRMSprop,
            ref,
            {},
            loss_scale=TINY,
            hint="with gradients of about 1e-7, sqrt(G + eps) is about 1e-4 while "
            "sqrt(G) + eps is about 1e-7: eps goes OUTSIDE the square root",
        )
        _compare(
            "MyRMSprop",
            MyRMSprop,
            ref,
            {"weight_decay": 0.1},
            hint="weight decay is an L2 penalty: add weight_decay * p to the gradient first, "
            "and use that gradient everywhere (in G and in the update)",
        )
        _compare(
            "MyRMSprop (two parameter groups)",
            MyRMSprop,
            ref,
            {"lr": 0.01},
            groups=_two_groups,
            hint="every parameter group has its own hyper-parameters: inside the loop "
            "`for group in self.param_groups` read group['lr'], group['weight_decay'], ... "
            "(not self.defaults)",
        )


def check_adam(MyAdam) -> None:
    """Exercise 2: ``MyAdam`` matches ``torch.optim.Adam`` step by step."""
    with exercise("MyAdam"):
        _is_optimizer_class(MyAdam, "MyAdam")
        ref = torch.optim.Adam
        _compare(
            "MyAdam (loss x 1e6)",
            MyAdam,
            ref,
            {},
            steps=1,
            loss_scale=LARGE,
            hint="with the bias correction the first step moves every parameter by about "
            "lr (m_hat / sqrt(v_hat) = g / |g|); without it the step is about 3.2 * lr. "
            "Divide m by 1 - beta1^k and v by 1 - beta2^k, with k = 1 at the first step of "
            "EVERY parameter (keep k in self.state[p], not one counter for the optimizer)",
        )
        _compare(
            "MyAdam (loss x 1e6)",
            MyAdam,
            ref,
            {},
            loss_scale=LARGE,
            hint="m and v are moving averages kept in self.state[p]; the step count k is "
            "per parameter (also in self.state[p]) and goes up by one per call of step()",
        )
        _compare(
            "MyAdam",
            MyAdam,
            ref,
            {"lr": 0.02, "betas": (0.8, 0.95), "eps": 1e-3},
            hint="read lr, betas and eps from `group`; eps goes OUTSIDE the square root, "
            "m_hat / (sqrt(v_hat) + eps), not m_hat / sqrt(v_hat + eps) as the lecture "
            "slides write it",
        )
        _compare(
            "MyAdam (loss x 1e-6: tiny gradients)",
            MyAdam,
            ref,
            {},
            loss_scale=TINY,
            hint="with gradients of about 1e-7, sqrt(v_hat + eps) is about 1e-4 while "
            "sqrt(v_hat) + eps is about 1e-7: eps goes OUTSIDE the square root",
        )
        _compare(
            "MyAdam",
            MyAdam,
            ref,
            {"weight_decay": 0.1},
            hint="torch.optim.Adam's weight decay is an L2 penalty: g = p.grad + "
            "weight_decay * p, used in both moving averages (AdamW's decoupled "
            "p *= 1 - lr * weight_decay is a different method)",
        )
        _compare(
            "MyAdam (two parameter groups)",
            MyAdam,
            ref,
            {"lr": 0.01},
            groups=_two_groups,
            hint="every parameter group has its own hyper-parameters: inside the loop "
            "`for group in self.param_groups` read group['lr'], group['betas'], ... "
            "(not self.defaults)",
        )
