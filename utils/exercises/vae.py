"""Self-checks of assignment 08: the pieces of a variational autoencoder.

Exercises (lecture notebooks/11_vae.ipynb; course notes DL-lec14):

1. ``gaussian_kl(mu, logvar)``: KL( N(mu, diag exp(logvar)) ‖ N(0, I) ) per row, in closed
   form, compared with ``torch.distributions.kl_divergence``;
2. ``reparameterise(mu, logvar, generator=None, eps=None)``: z = mu + sigma * eps, checked
   for the given eps, for the use of the generator, for the mean and variance of many
   draws and for the gradients that flow back to mu and logvar;
3. ``negative_elbo(logits, x, mu, logvar)``: per image, Bernoulli reconstruction loss summed
   over the pixels (from logits) + KL, compared with ``F.binary_cross_entropy_with_logits``
   and ``kl_divergence``.

Every check draws its inputs from a local ``torch.Generator``; the checks that call code
which may use the global random number generator run inside ``torch.random.fork_rng``.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch.distributions import Independent, Normal, kl_divergence

from ..checks import check_close, check_shape, check_true
from . import call, exercise, generator, require, require_tensor

__all__ = ["check_gaussian_kl", "check_negative_elbo", "check_reparameterise"]

F64 = torch.float64
_CALL_HINT = "try your function on a small batch and print the shapes of the intermediate results"
_call = functools.partial(call, hint=_CALL_HINT)


def _grads(output, inputs):
    """Gradients of output.sum() w.r.t. inputs; zeros where an input is not used."""
    grads = torch.autograd.grad(output.sum(), inputs, allow_unused=True)
    return [torch.zeros_like(t) if gr is None else gr for t, gr in zip(inputs, grads)]


def _reference_kl(mu, logvar):
    q = Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)
    p = Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
    return kl_divergence(q, p)


# ----------------------------------------------------------------- exercise 1: the KL
def check_gaussian_kl(gaussian_kl) -> None:
    """Exercise 1: ``gaussian_kl(mu, logvar)`` -> one KL per row (summed over the last dim)."""
    with exercise("gaussian_kl"):
        g = generator(80)
        batch, d = 9, 5
        mu = torch.randn(batch, d, generator=g, dtype=F64) * 1.5
        logvar = torch.randn(batch, d, generator=g, dtype=F64) * 2
        kl = _call("gaussian_kl", gaussian_kl, mu, logvar)
        require_tensor("gaussian_kl", kl)
        check_shape(
            "gaussian_kl(mu, logvar)",
            kl,
            (batch,),
            hint="one KL per row: sum over the latent dimensions (dim=-1), do not average "
            "over the batch",
        )
        check_close(
            "gaussian_kl vs torch.distributions.kl_divergence",
            kl,
            _reference_kl(mu, logvar),
            atol=1e-10,
            hint="KL = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2) with "
            "sigma_j^2 = exp(logvar_j): logvar is the log VARIANCE, and the sum runs over the "
            "latent dimensions (not a mean)",
        )
        zeros = torch.zeros(3, d, dtype=F64)
        check_close(
            "KL(prior ‖ prior) = 0",
            _call("gaussian_kl", gaussian_kl, zeros, zeros),
            torch.zeros(3, dtype=F64),
            atol=1e-12,
            hint="at mu = 0 and logvar = 0 (sigma = 1) each term mu^2 + sigma^2 - 1 - log sigma^2 is 0",
        )
        one_d = _call("gaussian_kl", gaussian_kl, mu[:, :1], logvar[:, :1])
        check_close(
            "a one-dimensional latent", one_d, _reference_kl(mu[:, :1], logvar[:, :1]), atol=1e-10
        )
        mu_g, lv_g = mu.clone().requires_grad_(True), logvar.clone().requires_grad_(True)
        kl_g = _call("gaussian_kl", gaussian_kl, mu_g, lv_g)
        require(kl_g.requires_grad, "gaussian_kl", "the result is cut off from autograd")
        grad_mu, grad_lv = _grads(kl_g, (mu_g, lv_g))
        check_close("d KL / d mu = mu", grad_mu, mu, atol=1e-10)
        check_close(
            "d KL / d logvar = (exp(logvar) - 1) / 2", grad_lv, (logvar.exp() - 1) / 2, atol=1e-10
        )


# ------------------------------------------------------------ exercise 2: the sampler
def check_reparameterise(reparameterise) -> None:
    """Exercise 2: ``reparameterise(mu, logvar, generator=None, eps=None)`` -> z.

    z = mu + exp(logvar / 2) * eps; eps is the given one, or else
    ``torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)``.
    """
    with exercise("reparameterise"):
        g = generator(81)
        batch, d = 6, 4
        mu = torch.randn(batch, d, generator=g, dtype=F64)
        logvar = torch.randn(batch, d, generator=g, dtype=F64)
        eps = torch.randn(batch, d, generator=g, dtype=F64)
        mu_g, lv_g = mu.clone().requires_grad_(True), logvar.clone().requires_grad_(True)
        with torch.random.fork_rng(devices=[]):
            z = _call("reparameterise", reparameterise, mu_g, lv_g, None, eps)
        require_tensor("reparameterise", z)
        check_shape("z", z, (batch, d), hint="z has the shape of mu: one draw per row")
        check_close(
            "z = mu + sigma * eps for a given eps",
            z,
            mu + torch.exp(0.5 * logvar) * eps,
            atol=1e-12,
            hint="sigma = exp(logvar / 2) is the standard deviation (logvar is the log "
            "variance); when eps is passed, use it instead of drawing a new one",
        )
        require(
            z.requires_grad,
            "reparameterise",
            "z is cut off from autograd",
            hint="build z from mu and logvar with torch operations; never .detach() them or "
            "use torch.distributions' .sample() (that is what reparameterisation avoids)",
        )
        grad_mu, grad_lv = _grads(z, (mu_g, lv_g))
        check_close(
            "d z / d mu = 1 (gradients flow to mu)", grad_mu, torch.ones_like(mu), atol=1e-12
        )
        check_close(
            "d z / d logvar = sigma * eps / 2 (gradients flow to logvar)",
            grad_lv,
            0.5 * torch.exp(0.5 * logvar) * eps,
            atol=1e-12,
            hint="sigma = exp(logvar / 2) must stay connected to logvar (no .detach()), "
            "so that the encoder's variance head learns",
        )
        # draws from the generator
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(12345)
            before = torch.rand(1)
            torch.manual_seed(12345)
            z1 = _call("reparameterise", reparameterise, mu, logvar, generator(7))
            global_used = not torch.equal(torch.rand(1), before)
            z2 = _call("reparameterise", reparameterise, mu, logvar, generator(7))
            z3 = _call("reparameterise", reparameterise, mu, logvar, generator(8))
        require_tensor("reparameterise", z1)
        check_true(
            "eps is drawn from the given generator",
            not global_used and torch.equal(z1, z2) and not torch.equal(z1, z3),
            hint="draw eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, "
            "device=mu.device) (torch.randn_like takes no generator)",
        )
        check_close(
            "z with the generator's eps",
            z1,
            mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=generator(7), dtype=F64),
            atol=1e-12,
            hint="one call of torch.randn(mu.shape, generator=generator, ...) for eps",
        )
        # many draws: the right mean and variance
        n = 200_000
        mu_many = torch.tensor([[0.5, -2.0, 3.0]], dtype=F64).expand(n, 3)
        lv_many = torch.tensor([[0.0, 1.5, -2.0]], dtype=F64).expand(n, 3)
        with torch.random.fork_rng(devices=[]):
            zs = _call("reparameterise", reparameterise, mu_many, lv_many, generator(9))
        var = lv_many[0].exp()
        check_close(
            "mean of 200,000 draws (5 standard errors)",
            zs.mean(0),
            mu_many[0],
            atol=float(5 * (var.max() / n) ** 0.5),
        )
        check_close(
            "variance of 200,000 draws = exp(logvar) (rtol 2%)",
            zs.var(0),
            var,
            atol=0,
            rtol=0.02,
            hint="the variance is exp(logvar), so the standard deviation is exp(logvar / 2), "
            "not exp(logvar) and not logvar",
        )


# ------------------------------------------------------------ exercise 3: the -ELBO
def check_negative_elbo(negative_elbo) -> None:
    """Exercise 3: ``negative_elbo(logits, x, mu, logvar)`` -> one -ELBO per image (nats)."""
    with exercise("negative_elbo"):
        g = generator(82)
        batch, pixels, d = 8, 30, 3
        logits = torch.randn(batch, pixels, generator=g, dtype=F64) * 3
        x = torch.rand(batch, pixels, generator=g, dtype=F64)  # grey levels in [0, 1]
        x[:4] = (x[:4] > 0.5).to(F64)  # and some black-and-white images
        mu = torch.randn(batch, d, generator=g, dtype=F64)
        logvar = torch.randn(batch, d, generator=g, dtype=F64)
        loss = _call("negative_elbo", negative_elbo, logits, x, mu, logvar)
        require_tensor("negative_elbo", loss)
        check_shape(
            "negative_elbo(logits, x, mu, logvar)",
            loss,
            (batch,),
            hint="one value per image: sum over the pixels and over the latent dimensions, "
            "not over the batch (the training loop averages over the batch itself)",
        )
        rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        expected = rec + _reference_kl(mu, logvar)
        check_close(
            "negative_elbo vs BCE-with-logits (summed over pixels) + kl_divergence",
            loss,
            expected,
            atol=1e-10,
            hint="-ELBO = sum over pixels of BCE(logits, x) + KL: use reduction='none' and "
            ".sum(-1) (a mean over the pixels divides the reconstruction term by their number), "
            "and add your gaussian_kl",
        )
        big = logits * 100  # confident decoders: logits in the hundreds
        check_close(
            "logits in the hundreds",
            _call("negative_elbo", negative_elbo, big, x, mu, logvar),
            F.binary_cross_entropy_with_logits(big, x, reduction="none").sum(-1)
            + _reference_kl(mu, logvar),
            atol=1e-8,
            rtol=1e-10,
            hint="work with the logits (F.binary_cross_entropy_with_logits); sigmoid followed "
            "by log rounds to log 0, which F.binary_cross_entropy clamps at -100",
        )
        logits_g = logits.clone().requires_grad_(True)
        out = _call("negative_elbo", negative_elbo, logits_g, x, mu, logvar)
        require(out.requires_grad, "negative_elbo", "the result is cut off from autograd")
        (grad,) = _grads(out, (logits_g,))
        check_close(
            "d (-ELBO) / d logits = sigmoid(logits) - x",
            grad,
            torch.sigmoid(logits) - x,
            atol=1e-10,
        )
