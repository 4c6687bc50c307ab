"""Assignment 08 (VAE): the self-checks accept the solution and reject wrong answers.

For every check in utils/exercises/vae.py: (1) it passes on the solution of
solutions/08_vae.ipynb, (2) it raises CheckFailed on plausible mistakes, written out
below, and (3) it lets a stub's NotImplementedError through.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from nbdefs import definitions
from selfchecks import (
    assert_fails,
    assert_passes,
    assert_stub_gets_todo,
    stub,
    wrong_answers,
    wrong_ids,
)
from torch.distributions import Independent, Normal, kl_divergence

from utils.exercises import vae

sol = definitions("08_vae", folder="solutions")


# -------------------------------------------------------------------- wrong KLs
def kl_mean_over_dims(mu, logvar):
    return 0.5 * (mu**2 + logvar.exp() - 1 - logvar).mean(-1)


def kl_logvar_as_log_sd(mu, logvar):  # treats logvar as log sigma
    return 0.5 * (mu**2 + (2 * logvar).exp() - 1 - 2 * logvar).sum(-1)


def kl_no_half(mu, logvar):
    return (mu**2 + logvar.exp() - 1 - logvar).sum(-1)


def kl_no_minus_one(mu, logvar):
    return 0.5 * (mu**2 + logvar.exp() - logvar).sum(-1)


def kl_summed_over_batch(mu, logvar):
    return 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum()


def kl_sign(mu, logvar):  # + logvar instead of - logvar
    return 0.5 * (mu**2 + logvar.exp() - 1 + logvar).sum(-1)


# ---------------------------------------------------------------- wrong samplers
def _eps(mu, generator, eps):
    if eps is None:
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    return eps


def rep_sd_is_exp_logvar(mu, logvar, generator=None, eps=None):
    return mu + torch.exp(logvar) * _eps(mu, generator, eps)


def rep_sd_is_logvar(mu, logvar, generator=None, eps=None):
    return mu + logvar * _eps(mu, generator, eps)


def rep_global_rng(mu, logvar, generator=None, eps=None):  # ignores the generator
    if eps is None:
        eps = torch.randn_like(mu)
    return mu + torch.exp(0.5 * logvar) * eps


def rep_ignores_eps(mu, logvar, generator=None, eps=None):
    return mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=generator, dtype=mu.dtype)


def rep_sample(mu, logvar, generator=None, eps=None):  # .sample(): no gradient
    if eps is None:
        return Normal(mu, torch.exp(0.5 * logvar)).sample()
    return (mu + torch.exp(0.5 * logvar) * eps).detach()


def rep_detached_sigma(mu, logvar, generator=None, eps=None):  # no gradient to logvar
    return mu + torch.exp(0.5 * logvar).detach() * _eps(mu, generator, eps)


def rep_variance_times_eps(mu, logvar, generator=None, eps=None):  # var instead of sd
    return (
        mu + logvar.exp() * _eps(mu, generator, eps)
        if eps is not None
        else (mu + torch.exp(0.5 * logvar) * _eps(mu, generator, eps))
    )


# --------------------------------------------------------------- wrong -ELBOs
def _kl(mu, logvar):
    return 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1)


def elbo_mean_over_pixels(logits, x, mu, logvar):
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").mean(-1) + _kl(
        mu, logvar
    )


def elbo_batch_mean(logits, x, mu, logvar):  # a scalar
    return (
        F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1) + _kl(mu, logvar)
    ).mean()


def elbo_default_reduction(logits, x, mu, logvar):  # BCE averaged over everything
    return F.binary_cross_entropy_with_logits(logits, x) + _kl(mu, logvar)


def elbo_from_probabilities(logits, x, mu, logvar):  # clamps log 0 at -100
    probs = torch.sigmoid(logits)
    return F.binary_cross_entropy(probs, x, reduction="none").sum(-1) + _kl(mu, logvar)


def elbo_no_kl(logits, x, mu, logvar):
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def elbo_minus_kl(logits, x, mu, logvar):
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1) - _kl(mu, logvar)


def elbo_mse(logits, x, mu, logvar):  # Gaussian decoder on the logits
    return ((torch.sigmoid(logits) - x) ** 2).sum(-1) + _kl(mu, logvar)


CASES = {
    "gaussian_kl": (
        vae.check_gaussian_kl,
        [
            kl_mean_over_dims,
            kl_logvar_as_log_sd,
            kl_no_half,
            kl_no_minus_one,
            kl_summed_over_batch,
            kl_sign,
        ],
    ),
    "reparameterise": (
        vae.check_reparameterise,
        [
            rep_sd_is_exp_logvar,
            rep_sd_is_logvar,
            rep_global_rng,
            rep_ignores_eps,
            rep_sample,
            rep_detached_sigma,
            rep_variance_times_eps,
        ],
    ),
    "negative_elbo": (
        vae.check_negative_elbo,
        [
            elbo_mean_over_pixels,
            elbo_batch_mean,
            elbo_default_reduction,
            elbo_from_probabilities,
            elbo_no_kl,
            elbo_minus_kl,
            elbo_mse,
        ],
    ),
}
WRONG = wrong_answers(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_check_passes_on_the_solution(name, capsys):
    assert_passes(capsys, CASES[name][0], getattr(sol, name))


@pytest.mark.parametrize("name, wrong", WRONG, ids=wrong_ids(WRONG))
def test_check_fails_on_a_wrong_answer(name, wrong, capsys):
    assert_fails(capsys, CASES[name][0], wrong, says="FAIL")


@pytest.mark.parametrize("name", list(CASES))
def test_check_lets_a_stub_through(name, capsys):
    assert_stub_gets_todo(capsys, CASES[name][0], stub)


def test_checks_leave_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    for name, (check, _) in CASES.items():
        check(getattr(sol, name))
    assert torch.equal(torch.rand(3), expected)


def test_solution_kl_and_elbo_on_fresh_data():
    g = torch.Generator().manual_seed(3)
    mu, logvar = (
        torch.randn(5, 7, generator=g, dtype=torch.float64),
        torch.randn(5, 7, generator=g, dtype=torch.float64),
    )
    q = Independent(Normal(mu, (0.5 * logvar).exp()), 1)
    p = Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
    assert torch.allclose(sol.gaussian_kl(mu, logvar), kl_divergence(q, p), atol=1e-12)
    logits = torch.randn(5, 784, generator=g, dtype=torch.float64)
    x = torch.rand(5, 784, generator=g, dtype=torch.float64)
    ref = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") + kl_divergence(q, p).sum()
    assert torch.allclose(sol.negative_elbo(logits, x, mu, logvar).sum(), ref, atol=1e-9)
