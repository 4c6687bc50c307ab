"""Assignment 05 (optimizers): the self-checks accept the solution and reject wrong answers.

For both checks in utils/exercises/optimizers.py: (1) they pass on the classes of
solutions/05_optimizers.ipynb, (2) they raise CheckFailed on plausible mistakes, written
out below (epsilon inside the root, no bias correction, weight decay ignored, ...), and
(3) they let a stub's NotImplementedError through.
"""

from __future__ import annotations

import copy
from typing import ClassVar

import pytest
import torch
from nbdefs import definitions
from selfchecks import assert_fails, assert_passes, assert_stub_gets_todo, wrong_answers, wrong_ids

from utils import CheckFailed
from utils.exercises import optimizers

sol = definitions("05_optimizers", folder="solutions")


# ------------------------------------------------------------ a frame for wrong answers
class _Frame(torch.optim.Optimizer):
    """The visible part of the exercise; subclasses fill in ``update`` (the solution region)."""

    def __init__(self, params, **defaults):
        super().__init__(params, {**self.DEFAULTS, **defaults})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                self.update(p, self.state[p], group)


class _RMSprop(_Frame):
    DEFAULTS: ClassVar[dict] = {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0}

    def grad(self, p, group):
        return p.grad + group["weight_decay"] * p

    def update(self, p, state, group):
        G = state.setdefault("G", torch.zeros_like(p))
        g = self.grad(p, group)
        G.mul_(group["alpha"]).add_((1 - group["alpha"]) * g * g)
        p -= group["lr"] * g / (G.sqrt() + group["eps"])


class _Adam(_Frame):
    DEFAULTS: ClassVar[dict] = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}

    def grad(self, p, group):
        return p.grad + group["weight_decay"] * p

    def moments(self, p, state, group):
        b1, b2 = group["betas"]
        state["k"] = state.get("k", 0) + 1
        g = self.grad(p, group)
        m = state["m"] = b1 * state.get("m", 0) + (1 - b1) * g
        v = state["v"] = b2 * state.get("v", 0) + (1 - b2) * g * g
        return m, v, state["k"]

    def update(self, p, state, group):
        b1, b2 = group["betas"]
        m, v, k = self.moments(p, state, group)
        p -= group["lr"] * (m / (1 - b1**k)) / ((v / (1 - b2**k)).sqrt() + group["eps"])


# -------------------------------------------------------------------- wrong RMSprops
class RMSpropEpsInside(_RMSprop):  # the lecture slides' sqrt(G + eps)
    def update(self, p, state, group):
        G = state.setdefault("G", torch.zeros_like(p))
        g = self.grad(p, group)
        G.mul_(group["alpha"]).add_((1 - group["alpha"]) * g * g)
        p -= group["lr"] * g / (G + group["eps"]).sqrt()


class RMSpropNoWeightDecay(_RMSprop):
    def grad(self, p, group):
        return p.grad


class RMSpropBiasCorrected(_RMSprop):  # Adam's bias correction, which RMSprop does not have
    def update(self, p, state, group):
        G = state.setdefault("G", torch.zeros_like(p))
        k = state["k"] = state.get("k", 0) + 1
        g = self.grad(p, group)
        G.mul_(group["alpha"]).add_((1 - group["alpha"]) * g * g)
        p -= group["lr"] * g / ((G / (1 - group["alpha"] ** k)).sqrt() + group["eps"])


class RMSpropSwappedAlpha(_RMSprop):  # (1 - alpha) on the old average, alpha on the new
    def update(self, p, state, group):
        G = state.setdefault("G", torch.zeros_like(p))
        g = self.grad(p, group)
        G.mul_(1 - group["alpha"]).add_(group["alpha"] * g * g)
        p -= group["lr"] * g / (G.sqrt() + group["eps"])


class RMSpropDefaultsOnly(_RMSprop):  # ignores per-group hyper-parameters
    def update(self, p, state, group):
        super().update(p, state, self.defaults)


class RMSpropNotInPlace(_RMSprop):  # rebinds the local name p: the model never changes
    def update(self, p, state, group):
        G = state.setdefault("G", torch.zeros_like(p))
        g = self.grad(p, group)
        G.mul_(group["alpha"]).add_((1 - group["alpha"]) * g * g)
        p = p - group["lr"] * g / (G.sqrt() + group["eps"])


# ----------------------------------------------------------------------- wrong Adams
class AdamEpsInside(_Adam):  # the lecture slides' sqrt(v_hat + eps)
    def update(self, p, state, group):
        b1, b2 = group["betas"]
        m, v, k = self.moments(p, state, group)
        p -= group["lr"] * (m / (1 - b1**k)) / (v / (1 - b2**k) + group["eps"]).sqrt()


class AdamNoBiasCorrection(_Adam):
    def update(self, p, state, group):
        m, v, _ = self.moments(p, state, group)
        p -= group["lr"] * m / (v.sqrt() + group["eps"])


class AdamBiasCorrectionOfMOnly(_Adam):
    def update(self, p, state, group):
        b1, _ = group["betas"]
        m, v, k = self.moments(p, state, group)
        p -= group["lr"] * (m / (1 - b1**k)) / (v.sqrt() + group["eps"])


class AdamNoWeightDecay(_Adam):
    def grad(self, p, group):
        return p.grad


class AdamDecoupledWeightDecay(_Adam):  # AdamW's decay instead of torch.optim.Adam's L2
    def grad(self, p, group):
        return p.grad

    def update(self, p, state, group):
        p *= 1 - group["lr"] * group["weight_decay"]
        super().update(p, state, group)


class AdamSharedStepCounter(_Adam):  # one counter for all parameters: k grows too fast
    def update(self, p, state, group):
        b1, b2 = group["betas"]
        m, v, _ = self.moments(p, state, group)
        self.k = getattr(self, "k", 0) + 1
        k = self.k
        p -= group["lr"] * (m / (1 - b1**k)) / ((v / (1 - b2**k)).sqrt() + group["eps"])


class AdamDefaultsOnly(_Adam):  # ignores per-group hyper-parameters
    def update(self, p, state, group):
        super().update(p, state, self.defaults)


class AdamGradientNotSquared(_Adam):  # v from |g| instead of g^2
    def moments(self, p, state, group):
        b1, b2 = group["betas"]
        state["k"] = state.get("k", 0) + 1
        g = self.grad(p, group)
        m = state["m"] = b1 * state.get("m", 0) + (1 - b1) * g
        v = state["v"] = b2 * state.get("v", 0) + (1 - b2) * g.abs()
        return m, v, state["k"]


class Stub(torch.optim.Optimizer):
    def __init__(self, params, **defaults):
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                # YOUR CODE HERE
                raise NotImplementedError()


# --------------------------------------------------------------------------------- table
CASES = {
    "MyRMSprop": (
        optimizers.check_rmsprop,
        [
            RMSpropEpsInside,
            RMSpropNoWeightDecay,
            RMSpropBiasCorrected,
            RMSpropSwappedAlpha,
            RMSpropDefaultsOnly,
            RMSpropNotInPlace,
        ],
    ),
    "MyAdam": (
        optimizers.check_adam,
        [
            AdamEpsInside,
            AdamNoBiasCorrection,
            AdamBiasCorrectionOfMOnly,
            AdamNoWeightDecay,
            AdamDecoupledWeightDecay,
            AdamSharedStepCounter,
            AdamDefaultsOnly,
            AdamGradientNotSquared,
        ],
    ),
}
WRONG = wrong_answers(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_check_passes_on_the_solution(name, capsys):
    assert_passes(capsys, CASES[name][0], getattr(sol, name), n_pass=6)


@pytest.mark.parametrize("name", list(CASES))
def test_the_frame_of_the_wrong_answers_is_right(name, capsys):
    """Without a mistake, the frame the wrong answers are built on passes: so each
    wrong answer below fails because of its mistake, not because of the frame."""
    check, _ = CASES[name]
    check(_RMSprop if name == "MyRMSprop" else _Adam)
    assert "FAIL" not in capsys.readouterr().out


@pytest.mark.parametrize("name, wrong", WRONG, ids=wrong_ids(WRONG))
def test_check_fails_on_a_wrong_answer(name, wrong, capsys):
    assert_fails(capsys, CASES[name][0], wrong)


@pytest.mark.parametrize(
    "wrong, setting",
    [
        (AdamEpsInside, "eps"),
        (AdamNoBiasCorrection, "1 step"),
        (AdamNoWeightDecay, "weight_decay"),
        (AdamDecoupledWeightDecay, "weight_decay"),
        (AdamDefaultsOnly, "two parameter groups"),
        (RMSpropEpsInside, "eps"),
        (RMSpropNoWeightDecay, "weight_decay"),
        (RMSpropBiasCorrected, "1 step"),
    ],
    ids=lambda x: x if isinstance(x, str) else x.__name__,
)
def test_each_mistake_is_caught_by_the_setting_that_isolates_it(wrong, setting, capsys):
    check = optimizers.check_rmsprop if wrong.__name__.startswith("RMS") else optimizers.check_adam
    with pytest.raises(CheckFailed):
        check(wrong)
    fail = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL")]
    assert len(fail) == 1 and setting in fail[0], fail


@pytest.mark.parametrize("name", list(CASES))
def test_check_lets_a_stub_through(name, capsys):
    assert_stub_gets_todo(capsys, CASES[name][0], Stub)


def test_an_instance_instead_of_the_class_is_a_friendly_failure(capsys):
    with pytest.raises(CheckFailed):
        optimizers.check_adam(sol.MyAdam([torch.zeros(2, requires_grad=True)]))
    assert "not a subclass" in capsys.readouterr().out


def test_checks_leave_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    optimizers.check_rmsprop(sol.MyRMSprop)
    optimizers.check_adam(sol.MyAdam)
    assert torch.equal(torch.rand(3), expected)


def test_solution_adam_reproduces_torch_on_a_fresh_problem():
    """Independent of the check's bench: a conv net, float64, 50 steps, amsgrad off."""
    gen = torch.Generator().manual_seed(7)
    X = torch.randn(32, 1, 8, 8, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (32,), generator=gen)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(108, 4)
        ).double()
    paths = []
    for cls in (sol.MyAdam, torch.optim.Adam):
        model = copy.deepcopy(net)
        opt = cls(model.parameters(), lr=0.01, betas=(0.85, 0.99), weight_decay=1e-3)
        for k in range(50):
            idx = torch.arange(8) + 8 * (k % 4)
            loss = torch.nn.functional.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        paths.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.allclose(paths[0], paths[1], atol=1e-10, rtol=0)
