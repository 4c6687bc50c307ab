"""Lecture 06: the from-scratch optimizers agree with torch.optim step by step."""

from __future__ import annotations

import copy

import pytest
import torch
from nbdefs import definitions
from torch import nn
from torch.nn import functional as F

ATOL = 1e-6


@pytest.fixture(scope="module")
def nb():
    return definitions("06_optimizers")


def _problem(seed: int):
    """A random 3-class problem and a small float64 network (body + head) with one extra
    layer that never receives a gradient."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(48, 7, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (48,), generator=gen)
    torch.manual_seed(seed)
    model = nn.ModuleDict(
        {
            "body": nn.Sequential(nn.Linear(7, 12), nn.Tanh()),
            "head": nn.Linear(12, 3),
            "unused": nn.Linear(2, 2),  # p.grad stays None: must be skipped, not moved
        }
    ).double()
    order = torch.randperm(48, generator=gen)
    return model, X, y, order


def _paths(make_opt, model, X, y, order, steps=50, batch_size=12, groups=False):
    """Parameter values after every step, plus the returned closure losses."""
    net = copy.deepcopy(model)
    if groups:  # two parameter groups; the head gets half the learning rate
        params = [
            {"params": [*net["body"].parameters(), *net["unused"].parameters()]},
            {"params": net["head"].parameters()},
        ]
    else:
        params = net.parameters()
    opt = make_opt(params)
    if groups:
        opt.param_groups[1]["lr"] = opt.param_groups[1]["lr"] * 0.5
    rows = []
    for k in range(steps):
        idx = order[torch.arange(k * batch_size, (k + 1) * batch_size) % len(order)]

        def closure(idx=idx):
            opt.zero_grad()
            loss = F.cross_entropy(net["head"](net["body"](X[idx])), y[idx])
            loss.backward()
            return loss

        opt.step(closure)
        rows.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    return torch.stack(rows)


CASES = [
    ("MySGD", torch.optim.SGD, dict(lr=0.05)),
    ("MySGD", torch.optim.SGD, dict(lr=0.05, momentum=0.9)),
    ("MySGD", torch.optim.SGD, dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=1e-3)),
    ("MySGD", torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    ("MyAdagrad", torch.optim.Adagrad, dict(lr=0.1)),
    (
        "MyAdagrad",
        torch.optim.Adagrad,
        dict(lr=0.1, lr_decay=0.05, initial_accumulator_value=0.2, weight_decay=1e-2, eps=1e-6),
    ),
    ("MyRMSprop", torch.optim.RMSprop, dict(lr=0.01)),
    ("MyRMSprop", torch.optim.RMSprop, dict(lr=0.01, alpha=0.9, eps=1e-4, weight_decay=1e-2)),
    ("MyRMSprop", torch.optim.RMSprop, dict(lr=0.005, momentum=0.8)),
    ("MyAdadelta", torch.optim.Adadelta, dict(lr=1.0)),
    ("MyAdadelta", torch.optim.Adadelta, dict(lr=0.5, rho=0.8, eps=1e-4, weight_decay=1e-2)),
    ("MyAdam", torch.optim.Adam, dict(lr=0.01)),
    ("MyAdam", torch.optim.Adam, dict(lr=0.05, betas=(0.8, 0.95), eps=1e-5, weight_decay=1e-2)),
]


@pytest.mark.parametrize(
    "case, name, reference, hyper",
    [(i, *c) for i, c in enumerate(CASES)],
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)],
)
def test_matches_torch_optim_step_by_step(nb, case, name, reference, hyper):
    model, X, y, order = _problem(seed=100 + case)
    mine = _paths(lambda ps: getattr(nb, name)(ps, **hyper), model, X, y, order)
    ref = _paths(lambda ps: reference(ps, **hyper), model, X, y, order)
    assert (ref[-1] - ref[0]).abs().max() > 1e-3, "the reference did not move: weak test"
    torch.testing.assert_close(mine, ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    "name, reference",
    [
        ("MySGD", torch.optim.SGD),
        ("MyAdagrad", torch.optim.Adagrad),
        ("MyRMSprop", torch.optim.RMSprop),
        ("MyAdadelta", torch.optim.Adadelta),
        ("MyAdam", torch.optim.Adam),
    ],
)
def test_default_hyperparameters_and_param_groups_match(nb, name, reference):
    """Only the required minimum is passed, so the defaults must agree; two groups with
    different learning rates must each be honoured."""
    model, X, y, order = _problem(seed=3)
    mine = _paths(lambda ps: getattr(nb, name)(ps), model, X, y, order, groups=True)
    ref = _paths(lambda ps: reference(ps), model, X, y, order, groups=True)
    torch.testing.assert_close(mine, ref, atol=ATOL, rtol=0)


def test_step_returns_the_closure_loss_and_keeps_state(nb):
    model, X, y, _ = _problem(seed=5)
    opt = nb.MyAdam(model.parameters(), lr=0.01)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model["head"](model["body"](X)), y)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor) and loss.ndim == 0
    used = [*model["body"].parameters(), *model["head"].parameters()]
    assert all(p in opt.state for p in used)
    assert not any(p in opt.state for p in model["unused"].parameters())


DIFFERENT = [
    ("MySGD", torch.optim.SGD, dict(lr=0.05, momentum=0.9), dict(lr=0.05, momentum=0.8)),
    (
        "MySGD",
        torch.optim.SGD,
        dict(lr=0.05, momentum=0.9),
        dict(lr=0.05, momentum=0.9, dampening=0.1),
    ),
    ("MyAdagrad", torch.optim.Adagrad, dict(lr=0.1), dict(lr=0.1, initial_accumulator_value=0.1)),
    ("MyRMSprop", torch.optim.RMSprop, dict(lr=0.01, alpha=0.9), dict(lr=0.01)),
    ("MyAdadelta", torch.optim.Adadelta, dict(lr=0.5), dict(lr=1.0)),
    ("MyAdam", torch.optim.Adam, dict(lr=0.01, betas=(0.9, 0.99)), dict(lr=0.01)),
    ("MyAdam", torch.optim.Adam, dict(lr=0.01, eps=1e-3), dict(lr=0.01)),
]


@pytest.mark.parametrize(
    "name, reference, mine_hyper, ref_hyper",
    DIFFERENT,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(DIFFERENT)],
)
def test_a_different_hyperparameter_is_detected(nb, name, reference, mine_hyper, ref_hyper):
    """The comparison above can fail: one changed hyper-parameter separates the paths."""
    model, X, y, order = _problem(seed=7)
    mine = _paths(lambda ps: getattr(nb, name)(ps, **mine_hyper), model, X, y, order)
    ref = _paths(lambda ps: reference(ps, **ref_hyper), model, X, y, order)
    assert (mine - ref).abs().max() > 100 * ATOL


@pytest.mark.parametrize("name", ["MySGD", "MyAdagrad", "MyRMSprop", "MyAdadelta", "MyAdam"])
def test_many_networks_at_once_equal_separate_training(nb, name):
    """xor_many_seeds trains S independent XOR networks in one set of stacked tensors."""
    from functools import partial

    x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = torch.tensor([[0.0], [1.0], [1.0], [0.0]])
    make = partial(getattr(nb, name), lr=0.05)
    seeds = [7, 31, 2024]
    together = nb.xor_many_seeds(make, x, y, seeds=seeds, epochs=150)
    for j, seed in enumerate(seeds):
        alone, _ = nb.train_xor(make, x, y, epochs=150, seed=seed)
        # float32: the stacked computation sums in another order, so allow rounding noise
        assert abs(together[:, j] - alone).max() < 1e-4 * max(1.0, abs(alone).max())


def test_adam_step_size_bound(nb):
    """A dense gradient moves Adam by lr per step; a lone spike after silence by about
    lr (1 - b1)/sqrt(1 - b2), Kingma & Ba's bound, for other betas too."""
    import numpy as np

    for b1, b2 in [(0.9, 0.999), (0.8, 0.99)]:
        sizes = nb.adam_step_sizes([0.0] * 4000 + [2.5], lr=1e-2, betas=(b1, b2))
        bound = (1 - b1) / np.sqrt(1 - b2)
        assert abs(sizes[-1] - bound) < 0.01 * bound
        dense = nb.adam_step_sizes([-0.7] * 30, lr=1e-2, betas=(b1, b2))
        assert np.allclose(dense, 1.0, atol=1e-6)
