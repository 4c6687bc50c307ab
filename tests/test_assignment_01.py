"""Assignment 01 (losses): the self-checks accept the solution and reject wrong answers.

For every check in utils/exercises/losses.py: (1) it passes on the function of
solutions/01_losses.ipynb, (2) it raises CheckFailed on plausible mistakes, written out
below, and (3) it lets a stub's NotImplementedError through.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributions as D
from nbdefs import definitions
from selfchecks import (
    assert_fails,
    assert_passes,
    assert_stub_gets_todo,
    stub,
    wrong_answers,
    wrong_ids,
)

from utils.exercises import losses

sol = definitions("01_losses", folder="solutions")


# ------------------------------------------------------------- wrong answers, per exercise
def sim_std_two(n, p, generator=None):  # N(0, 2) read as standard deviation 2
    x = 2.0 * torch.randn(n, p, generator=generator, dtype=torch.float64)
    beta = 2 * torch.rand(p, generator=generator, dtype=torch.float64) - 1
    y = x @ beta + math.sqrt(0.1) * torch.randn(n, generator=generator, dtype=torch.float64)
    return x, beta, y


def sim_noise_sd(n, p, generator=None):  # noise standard deviation 0.1 instead of sqrt(0.1)
    x = math.sqrt(2) * torch.randn(n, p, generator=generator, dtype=torch.float64)
    beta = 2 * torch.rand(p, generator=generator, dtype=torch.float64) - 1
    y = x @ beta + 0.1 * torch.randn(n, generator=generator, dtype=torch.float64)
    return x, beta, y


def sim_uniform01(n, p, generator=None):  # Uniform(0, 1) instead of Uniform(-1, 1)
    x = math.sqrt(2) * torch.randn(n, p, generator=generator, dtype=torch.float64)
    beta = torch.rand(p, generator=generator, dtype=torch.float64)
    y = x @ beta + math.sqrt(0.1) * torch.randn(n, generator=generator, dtype=torch.float64)
    return x, beta, y


def sim_global_rng(n, p, generator=None):  # ignores the generator
    return sol.simulate_regression(n, p, generator=None)


def sim_column_beta(n, p, generator=None):  # beta as a p x 1 column: y becomes n x 1
    x, beta, _ = sol.simulate_regression(n, p, generator)
    return x, beta[:, None], (x @ beta[:, None])


def sim_float32(n, p, generator=None):
    return tuple(t.float() for t in sol.simulate_regression(n, p, generator))


def reg_sum(bhat, x, y):
    return ((y - x @ bhat) ** 2).sum()


def reg_rmse(bhat, x, y):
    return torch.sqrt(torch.mean((y - x @ bhat) ** 2))


def reg_item(bhat, x, y):
    return torch.mean((y - x @ bhat) ** 2).item()


def reg_broadcast(bhat, x, y):  # y as a column: (n, 1) - (n,) broadcasts to n x n
    return torch.mean((y[:, None] - x @ bhat) ** 2)


def reg_detached(bhat, x, y):
    return torch.mean((y - x @ bhat.detach()) ** 2)


def sigmoid_naive(z):
    return torch.exp(z) / (1 + torch.exp(z))


def sigmoid_sign(z):
    return 1 / (1 + torch.exp(z.abs()))  # wrong sign of the exponent


def labels_threshold(x, beta):
    return (x @ beta > 0).double()


def labels_flipped(x, beta):
    return D.Bernoulli(probs=torch.sigmoid(-(x @ beta))).sample()


def labels_int(x, beta):
    return D.Bernoulli(probs=torch.sigmoid(x @ beta)).sample().long()


def labels_fair_coin(x, beta):
    return D.Bernoulli(probs=torch.full((x.shape[0],), 0.5, dtype=x.dtype)).sample()


def logistic_sum(bhat, x, y):
    z = x @ bhat
    return (torch.logaddexp(torch.zeros_like(z), z) - y * z).sum()


def logistic_loglik(bhat, x, y):  # the log-likelihood, not its negative
    z = x @ bhat
    return (y * z - torch.logaddexp(torch.zeros_like(z), z)).mean()


def logistic_literal(bhat, x, y):  # log of probabilities: -inf / nan for huge logits
    rho = torch.sigmoid(x @ bhat)
    return -(y * torch.log(rho) + (1 - y) * torch.log(1 - rho)).mean()


def logistic_overflow(bhat, x, y):  # the right formula with exp overflowing
    z = x @ bhat
    return (torch.log(1 + torch.exp(z)) - y * z).mean()


def onehot_max(labels, k):  # k taken from the data
    return (labels[:, None] == torch.arange(int(labels.max()) + 1)).long()


def onehot_transposed(labels, k):
    return (labels[None, :] == torch.arange(k)[:, None]).long()


def softmax_dim0(u):
    e = torch.exp(u - u.max(dim=0, keepdim=True).values)
    return e / e.sum(dim=0, keepdim=True)


def softmax_naive(u):
    e = torch.exp(u)
    return e / e.sum(dim=1, keepdim=True)


def softmax_loss_all_entries(w, x, y):  # averages over all n*k entries
    u = x @ w.T
    return -(y * (u - torch.logsumexp(u, dim=1, keepdim=True))).mean()


def softmax_loss_no_transpose(w, x, y):
    u = x @ w
    return -(y * (u - torch.logsumexp(u, dim=1, keepdim=True))).sum(dim=1).mean()


def softmax_loss_log_of_probs(w, x, y):
    u = x @ w.T
    p = torch.exp(u) / torch.exp(u).sum(dim=1, keepdim=True)
    return -(y * torch.log(p)).sum(dim=1).mean()


def softmax_loss_logsumexp_dim0(w, x, y):
    u = x @ w.T
    return -(y * (u - torch.logsumexp(u, dim=0, keepdim=True))).sum(dim=1).mean()


# --------------------------------------------------------------------------------- table
CASES = {
    "simulate_regression": (
        losses.check_simulate_regression,
        [sim_std_two, sim_noise_sd, sim_uniform01, sim_global_rng, sim_column_beta, sim_float32],
    ),
    "loss_fn_reg": (
        losses.check_loss_fn_reg,
        [reg_sum, reg_rmse, reg_item, reg_broadcast, reg_detached],
    ),
    "sigmoid": (losses.check_sigmoid, [sigmoid_naive, sigmoid_sign]),
    "sample_labels": (
        losses.check_sample_labels,
        [labels_threshold, labels_flipped, labels_int, labels_fair_coin],
    ),
    "loss_fn_logistic": (
        losses.check_loss_fn_logistic,
        [logistic_sum, logistic_loglik, logistic_literal, logistic_overflow],
    ),
    "one_hot": (losses.check_one_hot, [onehot_max, onehot_transposed]),
    "softmax": (losses.check_softmax, [softmax_dim0, softmax_naive]),
    "loss_fn_softmax": (
        losses.check_loss_fn_softmax,
        [
            softmax_loss_all_entries,
            softmax_loss_no_transpose,
            softmax_loss_log_of_probs,
            softmax_loss_logsumexp_dim0,
        ],
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


def test_checks_leave_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    losses.check_simulate_regression(sol.simulate_regression)
    losses.check_sample_labels(sol.sample_labels)
    assert torch.equal(torch.rand(3), expected)


def test_checks_are_deterministic(capsys):
    for _ in range(2):
        losses.check_sample_labels(sol.sample_labels)
    first, second = capsys.readouterr().out.split("Checking sample_labels ...")[1:]
    assert first == second


def test_solution_losses_agree_with_torch_on_fresh_data():
    gen = torch.Generator().manual_seed(11)
    x, beta, y = sol.simulate_regression(300, 4, generator=gen)
    assert torch.allclose(sol.loss_fn_reg(beta, x, y), torch.nn.MSELoss()(x @ beta, y))
    labels = (torch.rand(300, generator=gen) < 0.3).double()
    z = x @ beta * 300  # logits in the hundreds
    assert torch.allclose(
        sol.loss_fn_logistic(beta * 300, x, labels),
        torch.nn.BCEWithLogitsLoss()(z, labels),
        rtol=1e-10,
    )
