"""Assignment 09 (normalization and regularization): the self-checks accept the solution and
reject wrong answers.

For every check in utils/exercises/normalization.py: (1) it passes on the function of
solutions/09_normalization.ipynb, (2) it raises CheckFailed, with a hint, on the typical
mistakes written out below (biased running variance, momentum read the optimizer's way,
batch statistics in evaluation mode, a BatchNorm backward without the terms through the mean
or the variance, dropout scaled at test time, weight decay on the bias, L2 and decoupled decay
swapped), and (3) it lets a stub's NotImplementedError through.
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

from utils.exercises import normalization

sol = definitions("09_normalization", folder="solutions")


# ------------------------------------------------------------ wrong batchnorm_forward
def _bn(x, gamma, beta, rm, rv, training, momentum, eps, *, unbiased=True, new_weight=True,
        eval_batch=False):
    if training or eval_batch:
        n = x.shape[0]
        mean, var = x.mean(0), x.var(0, unbiased=False)
    if training:
        w = momentum if new_weight else 1 - momentum
        rm = (1 - w) * rm + w * mean
        rv = (1 - w) * rv + w * (var * n / (n - 1) if unbiased else var)
    elif not eval_batch:
        mean, var = rm, rv
    return gamma * (x - mean) / torch.sqrt(var + eps) + beta, rm, rv


def bn_biased_running_var(x, gamma, beta, rm, rv, training, momentum=0.1, eps=1e-5):
    return _bn(x, gamma, beta, rm, rv, training, momentum, eps, unbiased=False)


def bn_momentum_swapped(x, gamma, beta, rm, rv, training, momentum=0.1, eps=1e-5):
    return _bn(x, gamma, beta, rm, rv, training, momentum, eps, new_weight=False)


def bn_batch_stats_in_eval(x, gamma, beta, rm, rv, training, momentum=0.1, eps=1e-5):
    return _bn(x, gamma, beta, rm, rv, training, momentum, eps, eval_batch=True)


def bn_unbiased_normalization(x, gamma, beta, rm, rv, training, momentum=0.1, eps=1e-5):
    y, rm2, rv2 = _bn(x, gamma, beta, rm, rv, training, momentum, eps)
    if training:
        y = gamma * (x - x.mean(0)) / torch.sqrt(x.var(0) + eps) + beta
    return y, rm2, rv2


def bn_eps_outside(x, gamma, beta, rm, rv, training, momentum=0.1, eps=1e-5):
    y, rm2, rv2 = _bn(x, gamma, beta, rm, rv, training, momentum, eps)
    mean, var = (x.mean(0), x.var(0, unbiased=False)) if training else (rm, rv)
    return gamma * (x - mean) / (torch.sqrt(var) + eps) + beta, rm2, rv2


# ----------------------------------------------------------- wrong batchnorm_backward
def _parts(dy, x, gamma, eps):
    mean = x.mean(0)
    s = torch.sqrt(x.var(0, unbiased=False) + eps)
    x_hat = (x - mean) / s
    return s, x_hat, dy * gamma


def bwd_constants(dy, x, gamma, eps=1e-5):  # mean and variance treated as constants
    s, x_hat, dxh = _parts(dy, x, gamma, eps)
    return dxh / s, (dy * x_hat).sum(0), dy.sum(0)


def bwd_no_variance_term(dy, x, gamma, eps=1e-5):
    s, x_hat, dxh = _parts(dy, x, gamma, eps)
    return (dxh - dxh.mean(0)) / s, (dy * x_hat).sum(0), dy.sum(0)


def bwd_no_mean_term(dy, x, gamma, eps=1e-5):
    s, x_hat, dxh = _parts(dy, x, gamma, eps)
    return (dxh - x_hat * (dxh * x_hat).mean(0)) / s, (dy * x_hat).sum(0), dy.sum(0)


def bwd_dgamma_without_xhat(dy, x, gamma, eps=1e-5):
    dx, _, dbeta = sol.batchnorm_backward(dy, x, gamma, eps)
    return dx, (dy * x).sum(0), dbeta


def bwd_mean_instead_of_sum(dy, x, gamma, eps=1e-5):
    dx, dgamma, _ = sol.batchnorm_backward(dy, x, gamma, eps)
    return dx, dgamma, dy.mean(0)


# --------------------------------------------------------------------- wrong dropout
def drop_scaled_at_test(x, p, training, generator=None):  # the notes' version, in nn.Dropout's p
    if not training:
        return (1 - p) * x
    return x * (torch.rand(x.shape, generator=generator, dtype=x.dtype) >= p)


def drop_not_scaled(x, p, training, generator=None):
    if not training:
        return x
    return x * (torch.rand(x.shape, generator=generator, dtype=x.dtype) >= p)


def drop_p_is_keep(x, p, training, generator=None):  # keeps with probability p
    if not training or p == 0:
        return x
    return x * (torch.rand(x.shape, generator=generator, dtype=x.dtype) < p) / (1 - p)


def drop_global_rng(x, p, training, generator=None):
    if not training or p == 0:
        return x
    return x * (torch.rand(x.shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype) >= p) / (1 - p)


def drop_unseeded_global_rng(x, p, training, generator=None):  # ignores `generator`
    if not training or p == 0:
        return x
    if p == 1:
        return torch.zeros_like(x)
    return x * (torch.rand(x.shape, dtype=x.dtype) >= p) / (1 - p)


def drop_nan_at_one(x, p, training, generator=None):  # divides by 1 - p = 0 when p = 1
    if not training or p == 0:
        return x
    return x * (torch.rand(x.shape, generator=generator, dtype=x.dtype) >= p) / (1 - p)


# ------------------------------------------------------------------ wrong l2_penalty
def l2_with_bias(params, lam):
    return lam / 2 * sum((p**2).sum() for p in params.values())


def l2_without_half(params, lam):
    return lam * (params["weight"] ** 2).sum()


# ----------------------------------------------------------------- wrong adam_update
def _adam(params, grads, state, lr, weight_decay, decoupled, betas=(0.9, 0.999), eps=1e-8, *,
          decay_bias=False, swap=False, no_lr=False):
    b1, b2 = betas
    state["k"] = state.get("k", 0) + 1
    k = state["k"]
    decoupled = decoupled != swap
    new = {}
    for name, w in params.items():
        grad = grads[name]
        decay = weight_decay if (name == "weight" or decay_bias) else 0.0
        if decoupled:
            w = w * (1 - (1 if no_lr else lr) * decay)
        else:
            grad = grad + decay * w
        m = state[name, "m"] = b1 * state.get((name, "m"), 0) + (1 - b1) * grad
        v = state[name, "v"] = b2 * state.get((name, "v"), 0) + (1 - b2) * grad**2
        new[name] = w - lr * (m / (1 - b1**k)) / ((v / (1 - b2**k)).sqrt() + eps)
    return new


def adam_decays_bias(params, grads, state, lr, weight_decay, decoupled, betas=(0.9, 0.999), eps=1e-8):
    return _adam(params, grads, state, lr, weight_decay, decoupled, betas, eps, decay_bias=True)


def adam_swapped(params, grads, state, lr, weight_decay, decoupled, betas=(0.9, 0.999), eps=1e-8):
    return _adam(params, grads, state, lr, weight_decay, decoupled, betas, eps, swap=True)


def adam_decay_without_lr(params, grads, state, lr, weight_decay, decoupled, betas=(0.9, 0.999), eps=1e-8):
    return _adam(params, grads, state, lr, weight_decay, decoupled, betas, eps, no_lr=True)


def adam_no_decay(params, grads, state, lr, weight_decay, decoupled, betas=(0.9, 0.999), eps=1e-8):
    return _adam(params, grads, state, lr, 0.0, decoupled, betas, eps)


CASES = {
    "batchnorm_forward": (
        normalization.check_batchnorm_forward,
        [bn_biased_running_var, bn_momentum_swapped, bn_batch_stats_in_eval,
         bn_unbiased_normalization, bn_eps_outside],
    ),
    "batchnorm_backward": (
        normalization.check_batchnorm_backward,
        [bwd_constants, bwd_no_variance_term, bwd_no_mean_term, bwd_dgamma_without_xhat,
         bwd_mean_instead_of_sum],
    ),
    "dropout": (
        normalization.check_dropout,
        [drop_scaled_at_test, drop_not_scaled, drop_p_is_keep, drop_global_rng,
         drop_unseeded_global_rng, drop_nan_at_one],
    ),
    "l2_penalty": (normalization.check_l2_penalty, [l2_with_bias, l2_without_half]),
    "adam_update": (
        normalization.check_adam_update,
        [adam_decays_bias, adam_swapped, adam_decay_without_lr, adam_no_decay],
    ),
}
WRONG = wrong_answers(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_check_passes_on_the_solution(name, capsys):
    assert_passes(capsys, CASES[name][0], getattr(sol, name))


@pytest.mark.parametrize("name, wrong", WRONG, ids=wrong_ids(WRONG))
def test_check_fails_on_a_wrong_answer(name, wrong, capsys):
    assert_fails(capsys, CASES[name][0], wrong)


@pytest.mark.parametrize("name", list(CASES))
def test_check_lets_a_stub_through(name, capsys):
    assert_stub_gets_todo(capsys, CASES[name][0], stub)


@pytest.mark.parametrize(
    "name, wrong, says",
    [
        ("batchnorm_forward", bn_biased_running_var, "UNBIASED"),
        ("batchnorm_forward", bn_momentum_swapped, "NEW batch"),
        ("batchnorm_forward", bn_batch_stats_in_eval, "running mean and running variance"),
        ("batchnorm_backward", bwd_constants, "as constants"),
        ("batchnorm_backward", bwd_no_variance_term, "batch variance is missing"),
        ("batchnorm_backward", bwd_no_mean_term, "batch mean is missing"),
        ("dropout", drop_scaled_at_test, "does nothing at test time"),
        ("dropout", drop_not_scaled, "1 / (1 - p)"),
        ("dropout", drop_unseeded_global_rng, "global random state"),
        ("dropout", drop_nan_at_one, "p == 1"),
        ("l2_penalty", l2_with_bias, "not applied to the bias"),
        ("adam_update", adam_decays_bias, "never to the bias"),
    ],
)
def test_typical_mistakes_get_their_own_hint(name, wrong, says, capsys):
    assert_fails(capsys, CASES[name][0], wrong, says=says)


def test_checks_leave_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    normalization.check_batchnorm_forward(sol.batchnorm_forward)
    normalization.check_dropout(sol.dropout)
    assert torch.equal(torch.rand(3), expected)


def test_solution_matches_torch_on_fresh_data():
    gen = torch.Generator().manual_seed(7)
    x = 2 + torch.randn(10, 3, generator=gen, dtype=torch.float64)
    gamma = torch.rand(3, generator=gen, dtype=torch.float64) + 0.5
    beta = torch.randn(3, generator=gen, dtype=torch.float64)
    layer = torch.nn.BatchNorm1d(3, momentum=0.25).double()
    with torch.no_grad():
        layer.weight.copy_(gamma)
        layer.bias.copy_(beta)
    y, rm, rv = sol.batchnorm_forward(x, gamma, beta, torch.zeros(3, dtype=torch.float64),
                                      torch.ones(3, dtype=torch.float64), True, 0.25)
    torch.testing.assert_close(y, layer(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(rv, layer.running_var, rtol=0, atol=1e-12)
    xr = x.clone().requires_grad_(True)
    dy = torch.randn(10, 3, generator=gen, dtype=torch.float64)
    (ref,) = torch.autograd.grad(layer.train()(xr), xr, dy)
    torch.testing.assert_close(sol.batchnorm_backward(dy, x, gamma)[0], ref, rtol=0, atol=1e-12)
