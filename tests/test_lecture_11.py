"""Lecture 11 (VAE): the notebook's KL, ELBO, importance weights and model vs torch."""

import math

import pytest
import torch
import torch.nn.functional as F
from nbdefs import definitions
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

nb = definitions("11_vae")
DTYPE = torch.float64


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)


def tiny_vae(latent_dim=2, data_dim=10, hidden=(8,)):
    model = nb.VAE(latent_dim, hidden=hidden, data_dim=data_dim).double()
    with torch.no_grad():  # spread the weights so that the posterior is not trivial
        for p in model.parameters():
            p.mul_(2.0)
    return model.eval()


def test_gaussian_kl_matches_torch():
    mu = torch.randn(7, 4, dtype=DTYPE)
    logvar = 2 * torch.randn(7, 4, dtype=DTYPE)
    q = Independent(Normal(mu, (0.5 * logvar).exp()), 1)
    p = Independent(Normal(torch.zeros(4, dtype=DTYPE), torch.ones(4, dtype=DTYPE)), 1)
    torch.testing.assert_close(nb.gaussian_kl(mu, logvar), kl_divergence(q, p), atol=1e-10, rtol=0)


def test_gaussian_kl_zero_at_prior_and_positive_elsewhere():
    zeros = torch.zeros(3, 5, dtype=DTYPE)
    torch.testing.assert_close(nb.gaussian_kl(zeros, zeros), torch.zeros(3, dtype=DTYPE))
    # Only the variance differs (a logvar/std mix-up would still give 0 at the prior).
    assert (nb.gaussian_kl(zeros, torch.full((3, 5), 0.7, dtype=DTYPE)) > 0).all()
    assert (nb.gaussian_kl(torch.full((3, 5), 0.3, dtype=DTYPE), zeros) > 0).all()


def test_bernoulli_log_likelihood_matches_bce_and_bernoulli():
    logits = 3 * torch.randn(6, 20, dtype=DTYPE)
    grey = torch.rand(6, 20, dtype=DTYPE)
    expected = -F.binary_cross_entropy_with_logits(logits, grey, reduction="none").sum(-1)
    torch.testing.assert_close(nb.bernoulli_log_likelihood(logits, grey), expected, atol=1e-10, rtol=0)
    bits = torch.bernoulli(grey)
    ref = Independent(Bernoulli(logits=logits), 1).log_prob(bits)
    torch.testing.assert_close(nb.bernoulli_log_likelihood(logits, bits), ref, atol=1e-10, rtol=0)


def test_negative_elbo_is_bce_sum_plus_kl_by_hand():
    x = torch.tensor([[1.0, 0.0, 0.5], [0.2, 0.9, 0.0]], dtype=DTYPE)
    logits = torch.tensor([[2.0, -1.0, 0.0], [-0.5, 3.0, -2.0]], dtype=DTYPE)
    mu = torch.tensor([[0.5, -1.0], [1.0, 0.0]], dtype=DTYPE)
    logvar = torch.tensor([[0.0, math.log(0.25)], [math.log(2.0), 0.0]], dtype=DTYPE)
    p = torch.sigmoid(logits)
    bce = -(x * p.log() + (1 - x) * (1 - p).log()).sum(-1)  # summed over pixels, not averaged
    var = logvar.exp()
    kl = 0.5 * (mu**2 + var - 1 - logvar).sum(-1)
    torch.testing.assert_close(nb.negative_elbo(logits, x, mu, logvar), bce + kl, atol=1e-12, rtol=0)
    torch.testing.assert_close(nb.negative_elbo(logits, x, mu, logvar, beta=0.0), bce, atol=1e-12, rtol=0)
    torch.testing.assert_close(
        nb.negative_elbo(logits, x, mu, logvar, beta=3.0), bce + 3 * kl, atol=1e-12, rtol=0
    )


def test_reparameterise_has_gradient_and_right_moments():
    mu = torch.tensor([0.5, -2.0], dtype=DTYPE, requires_grad=True)
    logvar = torch.tensor([0.0, math.log(0.09)], dtype=DTYPE, requires_grad=True)
    z = nb.reparameterise(mu.expand(200_000, 2), logvar.expand(200_000, 2))
    assert z.requires_grad
    torch.testing.assert_close(z.mean(0), mu.detach(), atol=0.01, rtol=0)
    torch.testing.assert_close(z.var(0), logvar.detach().exp(), atol=0, rtol=0.02)
    z.pow(2).mean(0).sum().backward()  # d E[z²] / d mu = 2 mu
    torch.testing.assert_close(mu.grad, 2 * mu.detach(), atol=0.02, rtol=0)


def test_vae_shapes_and_output_bias():
    pixel_mean = torch.rand(10)
    model = nb.VAE(3, hidden=(16, 8), data_dim=10, pixel_mean=pixel_mean)
    x = torch.rand(4, 10)
    logits, mu, logvar = model(x)
    assert logits.shape == (4, 10) and mu.shape == (4, 3) and logvar.shape == (4, 3)
    assert model.decode(torch.zeros(5, 3)).shape == (5, 10)
    p = pixel_mean.clamp(1e-3, 1 - 1e-3)
    torch.testing.assert_close(torch.sigmoid(model.decoder[-1].bias.detach()), p, atol=1e-5, rtol=0)


def test_log_importance_weights_match_torch_distributions():
    model = tiny_vae(latent_dim=3)
    x = torch.rand(5, 10, dtype=DTYPE)
    torch.manual_seed(7)
    log_w = nb.log_importance_weights(model, x, 4)
    torch.manual_seed(7)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        std = (0.5 * logvar).exp()
        z = mu + std * torch.randn((4, *mu.shape), dtype=DTYPE)
        q = Independent(Normal(mu, std), 1)
        prior = Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
        lik = -F.binary_cross_entropy_with_logits(model.decode(z), x.expand(4, 5, 10), reduction="none").sum(-1)
        expected = lik + prior.log_prob(z) - q.log_prob(z)
    assert log_w.shape == (4, 5)
    torch.testing.assert_close(log_w.detach(), expected, atol=1e-10, rtol=0)


def _log_marginal_by_quadrature(model, x, half_width=7.0, n=301):
    # log p(x) = log ∫ π(z) p(x|z) dz on a 2-D grid (latent_dim = 2 only).
    t = torch.linspace(-half_width, half_width, n, dtype=DTYPE)
    z = torch.cartesian_prod(t, t)  # [n², 2]
    with torch.no_grad():
        log_lik = nb.bernoulli_log_likelihood(model.decode(z)[:, None, :], x[None])  # [n², B]
    log_prior = Normal(0.0, 1.0).log_prob(z).sum(-1)
    dz = (t[1] - t[0]) ** 2
    return torch.logsumexp(log_lik + log_prior[:, None], 0) + math.log(dz)


def test_elbo_below_iwae_below_log_likelihood():
    model = tiny_vae(latent_dim=2)
    x = torch.rand(20, 10, dtype=DTYPE)
    log_px = _log_marginal_by_quadrature(model, x)
    reps = 400
    with torch.no_grad():
        # Analytic-KL ELBO, averaged over many reparameterised draws.
        logits, mu, logvar = model(x.repeat(reps, 1))
        elbo = -nb.negative_elbo(logits, x.repeat(reps, 1), mu, logvar).view(reps, -1).mean(0)
        bounds = {}
        for k in (1, 10, 100):
            log_w = nb.log_importance_weights(model, x.repeat(reps, 1), k)  # [k, reps * B]
            l_k = torch.logsumexp(log_w, 0) - math.log(k)
            bounds[k] = l_k.view(reps, -1)
    means = {k: b.mean(0) for k, b in bounds.items()}
    se_1 = bounds[1].std(0) / math.sqrt(reps)
    # E[L_1] is the ELBO (sampled KL instead of the closed form, same expectation).
    assert ((means[1] - elbo).abs() < 5 * se_1 + 1e-6).all()
    # Averaged over the images: ELBO ≤ E L_10 ≤ E L_100 ≤ log p(x), and the gap closes.
    m1, m10, m100 = (means[k].mean().item() for k in (1, 10, 100))
    lp = log_px.mean().item()
    assert elbo.mean().item() < m10 < m100 < lp + 1e-3
    assert lp - m100 < 0.25 * (lp - elbo.mean().item())


def test_iwae_from_log_weights():
    log_w = torch.randn(50, 6, dtype=DTYPE) - 300.0  # tiny weights: needs logsumexp
    expected = torch.log(torch.exp(log_w + 300.0).mean(0)) - 300.0
    torch.testing.assert_close(nb.iwae_from_log_weights(log_w), expected, atol=1e-10, rtol=0)
    torch.testing.assert_close(nb.iwae_from_log_weights(log_w[:1]), log_w[0], atol=1e-12, rtol=0)
