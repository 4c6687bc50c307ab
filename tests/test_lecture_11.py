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


# --- Gaussian decoder (section 9.1) ---------------------------------------------------


def test_gaussian_log_likelihood_matches_normal():
    mean, x = torch.rand(4, 30, dtype=DTYPE), torch.randn(4, 30, dtype=DTYPE)
    for tau in (0.05, 0.3, 2.0):
        ref = Independent(Normal(mean, torch.full_like(mean, tau)), 1).log_prob(x)
        torch.testing.assert_close(nb.gaussian_log_likelihood(mean, x, tau), ref, atol=1e-9, rtol=0)


def test_negative_elbo_gaussian_is_scaled_squared_error_plus_kl():
    logits, x = torch.randn(3, 12, dtype=DTYPE), torch.rand(3, 12, dtype=DTYPE)
    mu, logvar = torch.randn(3, 2, dtype=DTYPE), torch.randn(3, 2, dtype=DTYPE)
    tau = 0.2
    sq = (x - torch.sigmoid(logits)).pow(2).sum(-1)
    kl = kl_divergence(Independent(Normal(mu, (0.5 * logvar).exp()), 1),
                       Independent(Normal(torch.zeros(2, dtype=DTYPE), torch.ones(2, dtype=DTYPE)), 1))
    expected = sq / (2 * tau**2) + 12 * math.log(tau * math.sqrt(2 * math.pi)) + 0.5 * kl
    got = nb.negative_elbo_gaussian(logits, x, mu, logvar, beta=0.5, tau=tau)
    torch.testing.assert_close(got, expected, atol=1e-9, rtol=0)


def test_train_vae_runs_with_warmup_and_custom_loss():
    torch.manual_seed(0)
    X = torch.rand(64, 10)
    model = nb.VAE(2, hidden=(8,), data_dim=10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    import functools

    losses, val = nb.train_vae(model, opt, X, epochs=2, batch_size=16, warmup_steps=4, X_val=X[:16],
                               elbo=functools.partial(nb.negative_elbo_gaussian, tau=0.3), desc="test")
    assert len(losses) == 8 and list(val) == [1, 2]
    assert all(math.isfinite(v) for v in losses)


# --- GAN pieces (section 10) ----------------------------------------------------------


def test_gan_losses_match_bce_with_logits():
    real, fake = 4 * torch.randn(40, 1, dtype=DTYPE), 4 * torch.randn(40, 1, dtype=DTYPE)
    ones, zeros = torch.ones_like(real), torch.zeros_like(fake)
    expected_d = F.binary_cross_entropy_with_logits(real, ones) + F.binary_cross_entropy_with_logits(fake, zeros)
    torch.testing.assert_close(nb.discriminator_loss(real, fake), expected_d, atol=1e-12, rtol=0)
    torch.testing.assert_close(nb.generator_loss(fake), F.binary_cross_entropy_with_logits(fake, ones), atol=1e-12, rtol=0)
    # Minimax form: mean log(1 − σ(a)), written with probabilities.
    p = torch.sigmoid(fake)
    torch.testing.assert_close(nb.generator_loss(fake, saturating=True), torch.log1p(-p).mean(), atol=1e-10, rtol=0)


def test_ring_density_matches_mixture_and_integrates_to_one():
    ref = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.full((8,), 1 / 8, dtype=DTYPE)),
        Independent(Normal(nb.ring_centres(), 0.05 * torch.ones(8, 2, dtype=DTYPE)), 1))
    x = nb.ring_sample(500)
    torch.testing.assert_close(nb.ring_log_density(x), ref.log_prob(x.double()), atol=1e-9, rtol=0)
    t = torch.linspace(-2.6, 2.6, 1301, dtype=DTYPE)
    grid = torch.cartesian_prod(t, t)
    mass = nb.ring_log_density(grid).exp().sum() * (t[1] - t[0]) ** 2
    assert abs(mass.item() - 1) < 1e-3
    # Samples sit on the ring of radius 2.
    assert abs(x.norm(dim=1).mean().item() - 2.0) < 0.02


def test_optimal_discriminator_maximises_the_pointwise_objective():
    log_p, log_q = torch.randn(200, dtype=DTYPE), torch.randn(200, dtype=DTYPE)
    d_star = nb.optimal_discriminator(log_p, log_q)
    p, q = log_p.exp(), log_q.exp()
    torch.testing.assert_close(d_star, p / (p + q), atol=1e-12, rtol=0)
    value = lambda d: p * d.log() + q * torch.log1p(-d)
    for eps in (1e-3, -1e-3):
        assert (value(d_star) >= value((d_star + eps).clamp(1e-9, 1 - 1e-9)) - 1e-12).all()


def test_value_at_optimal_discriminator_is_two_js_minus_log_four():
    # Discrete distributions on 6 points: V(D*, G) = 2 JS(p ‖ q) − log 4, JS by its definition.
    p = torch.softmax(torch.randn(6, dtype=DTYPE), 0)
    q = torch.softmax(torch.randn(6, dtype=DTYPE), 0)
    d = nb.optimal_discriminator(p.log(), q.log())
    v = (p * d.log()).sum() + (q * torch.log1p(-d)).sum()
    m = (p + q) / 2
    js = 0.5 * (p * (p / m).log()).sum() + 0.5 * (q * (q / m).log()).sum()
    torch.testing.assert_close(v, 2 * js - math.log(4), atol=1e-12, rtol=0)


def test_modes_covered_counts_modes():
    g = torch.Generator().manual_seed(0)
    full = nb.ring_sample(4000, generator=g)
    assert nb.modes_covered(full)[0] == 8 and nb.modes_covered(full)[1] > 0.99
    centres = nb.ring_centres().float()
    three = centres[torch.arange(3000) % 3] + 0.05 * torch.randn(3000, 2, generator=g)
    assert nb.modes_covered(three)[0] == 3
    assert nb.modes_covered(torch.zeros(100, 2)) == (0, 0.0)


def test_lecture_ends_with_summary_corrections_then_results():
    import nbformat
    from nbdefs import NOTEBOOKS

    cells = nbformat.read(NOTEBOOKS / "11_vae.ipynb", as_version=4).cells
    assert cells[-1].cell_type == "code" and "report_results(" in cells[-1].source
    assert cells[-2].cell_type == "markdown"
    assert cells[-2].source.startswith("## Corrections to the course notes")
    assert cells[-3].cell_type == "markdown" and cells[-3].source.startswith("## Summary")
    assert not any("\b" in c.source for c in cells)  # a "\beta" written without a raw string


def test_softmax_regression_matches_sklearn():
    from sklearn.linear_model import LogisticRegression

    n, weight_decay = 600, 1e-2
    labels = torch.arange(n) % 3
    features = torch.randn(n, 4, dtype=DTYPE) + 1.5 * torch.nn.functional.one_hot(labels, 4).to(DTYPE)
    predict = nb.fit_softmax_regression(features, labels, n_classes=3, weight_decay=weight_decay, max_iter=200)
    z = (features - features.mean(0)) / features.std(0)
    # sklearn minimises ½‖W‖² + C Σ_i loss_i; ours is mean loss + (weight_decay / 2) ‖W‖²: C = 1 / (weight_decay n).
    ref = LogisticRegression(C=1 / (weight_decay * n), tol=1e-10, max_iter=1000).fit(z.numpy(), labels.numpy())
    probs = torch.softmax(predict(features), 1)
    torch.testing.assert_close(probs, torch.from_numpy(ref.predict_proba(z.numpy())), atol=1e-4, rtol=0)
    assert (probs.argmax(1) == labels).double().mean() > 0.6
