"""Lecture 9: the from-scratch pieces of name generation, checked on fresh random inputs.

The unrolled "hello" RNN, the masked loss written out, the LSTM and GRU cells, gradient
clipping, the Jacobian through time, the bigram table. The shared plumbing (encoding,
training, sampling) is tested in tests/test_lm.py.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nbdefs import definitions
from utils import lm

nb = definitions("09_name_generation")

VOCAB = lm.lm_vocab(["abcdefghij"])  # "." + 10 letters
V = len(VOCAB)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_words(seed: int, n: int = 40) -> list[str]:
    g = gen(seed)
    lengths = torch.randint(1, 12, (n,), generator=g).tolist()
    return ["".join("abcdefghij"[i] for i in torch.randint(0, 10, (k,), generator=g).tolist()) for k in lengths]


def small_model(cell: str = "gru", seed: int = 0, **kw) -> nn.Module:
    torch.manual_seed(seed)
    return lm.CharRNN(V, embed_dim=8, hidden_size=16, cell=cell, **kw).double().eval()


def test_unrolled_rnn_matches_nn_rnn():
    g = gen(1)
    H, D, O, T = 5, 4, 6, 9
    W_xh, W_hh, b_h = (torch.randn(*s, generator=g, dtype=torch.float64) for s in [(H, D), (H, H), (H,)])
    W_hy, b_y = torch.randn(O, H, generator=g, dtype=torch.float64), torch.randn(O, generator=g, dtype=torch.float64)
    x = torch.randn(T, D, generator=g, dtype=torch.float64)
    states, scores = nb.rnn_unrolled(x, W_xh, W_hh, b_h, W_hy, b_y)
    ref = nn.RNN(D, H).double()
    with torch.no_grad():
        ref.weight_ih_l0.copy_(W_xh)
        ref.weight_hh_l0.copy_(W_hh)
        ref.bias_ih_l0.copy_(b_h)
        ref.bias_hh_l0.zero_()
        out, _ = ref(x)
    torch.testing.assert_close(states, out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(scores, out @ W_hy.T + b_y, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_masked_nll_equals_cross_entropy_and_words_one_at_a_time(cell):
    model = small_model(cell, num_layers=2)
    words = random_words(2)
    X, Y = lm.encode_words(words, VOCAB)
    with torch.no_grad():
        logits, _ = model(X)
        ours = nb.masked_nll(logits, Y)
        total, count = 0.0, 0
        for w in words:
            ids = torch.tensor([0] + VOCAB.encode(w) + [0])
            out, _ = model(ids[None, :-1])
            total += F.cross_entropy(out[0], ids[1:], reduction="sum")
            count += len(w) + 1
    torch.testing.assert_close(ours, F.cross_entropy(logits.transpose(1, 2), Y, ignore_index=-100),
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours, total / count, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ours, lm.lm_loss(logits, Y), rtol=1e-12, atol=1e-12)


def test_masked_nll_ignores_padding_logits_and_the_bug_does_not():
    g = gen(3)
    Y = lm.encode_words(random_words(3), VOCAB)[1]
    logits = torch.randn(*Y.shape, V, generator=g, dtype=torch.float64)
    changed = logits.clone()
    changed[Y == -100] = torch.randn(int((Y == -100).sum()), V, generator=g, dtype=torch.float64) * 10
    torch.testing.assert_close(nb.masked_nll(changed, Y), nb.masked_nll(logits, Y), rtol=0, atol=0)
    assert abs(nb.padding_as_data_loss(changed, Y) - nb.padding_as_data_loss(logits, Y)) > 1e-3
    assert abs(nb.padding_as_data_loss(logits, Y) - nb.masked_nll(logits, Y)) > 1e-3


def test_lstm_cell_matches_torch_to_1e_10_in_float64():
    for seed, (D, H, B) in enumerate([(6, 10, 4), (3, 7, 1), (12, 5, 9)]):
        torch.manual_seed(seed)
        ref = nn.LSTMCell(D, H).double()
        params = (ref.weight_ih, ref.weight_hh, ref.bias_ih, ref.bias_hh)
        x = torch.randn(B, D, dtype=torch.float64)
        h, c = torch.randn(B, H, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
        with torch.no_grad():
            h_ref, c_ref = ref(x, (h, c))
            h_ours, c_ours = nb.lstm_cell(x, (h, c), *params)
        torch.testing.assert_close(h_ours, h_ref, rtol=0, atol=1e-10)
        torch.testing.assert_close(c_ours, c_ref, rtol=0, atol=1e-10)


def test_lstm_cell_over_a_sequence_matches_nn_lstm_and_the_cell_path_is_diag_f():
    torch.manual_seed(4)
    seq = nn.LSTM(5, 8, batch_first=True).double()
    params = (seq.weight_ih_l0, seq.weight_hh_l0, seq.bias_ih_l0, seq.bias_hh_l0)
    xs = torch.randn(3, 15, 5, dtype=torch.float64)
    state = (torch.zeros(3, 8, dtype=torch.float64), torch.zeros(3, 8, dtype=torch.float64))
    outs = []
    with torch.no_grad():
        for t in range(15):
            state = nb.lstm_cell(xs[:, t], state, *params)
            outs.append(state[0])
        ref, (h_n, c_n) = seq(xs)
    torch.testing.assert_close(torch.stack(outs, 1), ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(state[1], c_n[0], rtol=0, atol=1e-10)
    x, h, c = xs[0, 0], torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(lambda c_prev: nb.lstm_cell(x, (h, c_prev), *params)[1], c)
    pre = x @ params[0].T + params[2] + h @ params[1].T + params[3]
    f = torch.sigmoid(pre.chunk(4)[1]).detach()
    torch.testing.assert_close(J, torch.diag(f), rtol=0, atol=1e-12)


def test_gru_cell_matches_torch_and_the_course_variant_differs():
    torch.manual_seed(16)
    cell = nn.GRUCell(7, 9).double()
    x, h = torch.randn(5, 7, dtype=torch.float64), torch.randn(5, 9, dtype=torch.float64)
    params = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    with torch.no_grad():
        torch.testing.assert_close(nb.gru_cell(x, h, *params), cell(x, h), rtol=0, atol=1e-10)
        other = nb.gru_cell(x, h, *params, reset_after=False)
    assert (other - cell(x, h)).abs().max() > 1e-3


def test_clip_gradients_matches_torch():
    nets = [small_model("rnn", seed=5) for _ in range(2)]
    X, Y = lm.encode_words(random_words(15), VOCAB)
    for net in nets:
        (50 * lm.lm_loss(net(X)[0], Y)).backward()
    ours = nb.clip_gradients(list(nets[0].parameters()), 0.5)
    theirs = nn.utils.clip_grad_norm_(nets[1].parameters(), 0.5)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=0)
    for p, q in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-14)
    assert torch.cat([p.grad.flatten() for p in nets[0].parameters()]).norm() <= 0.5 + 1e-9


def test_jacobian_through_time_matches_autograd():
    g = gen(17)
    W_hh = torch.randn(6, 6, generator=g, dtype=torch.float64) / 2
    W_xh = torch.randn(6, 3, generator=g, dtype=torch.float64)
    xs = torch.randn(9, 3, generator=g, dtype=torch.float64)
    h1 = torch.randn(6, generator=g, dtype=torch.float64)
    states = nb.rnn_states(W_hh, W_xh, h1, xs)
    assert len(states) == 10
    expected = torch.autograd.functional.jacobian(lambda h: nb.rnn_states(W_hh, W_xh, h, xs)[-1], h1)
    torch.testing.assert_close(nb.jacobian_through_time(W_hh, states), expected, rtol=1e-10, atol=1e-12)


def test_with_spectral_radius():
    W = torch.randn(20, 20, generator=gen(18), dtype=torch.float64)
    for rho in (0.5, 1.3):
        assert torch.linalg.eigvals(nb.with_spectral_radius(W, rho)).abs().max().item() == pytest.approx(rho)


def test_bigram_table_matches_counts_and_scores_like_a_language_model():
    words = random_words(5, n=200)
    X, Y = lm.encode_words(words, VOCAB)
    P = nb.bigram_probs(X, Y, V, alpha=0.5)
    torch.testing.assert_close(P.sum(dim=1), torch.ones(V, dtype=torch.float64), rtol=0, atol=1e-12)
    counts = torch.full((V, V), 0.5, dtype=torch.float64)
    nll, n_pairs = 0.0, 0
    for w in words:
        for a, b in zip("." + w, w + "."):
            counts[VOCAB.stoi[a], VOCAB.stoi[b]] += 1
    P_direct = counts / counts.sum(dim=1, keepdim=True)
    torch.testing.assert_close(P, P_direct, rtol=0, atol=1e-12)
    for w in words:
        for a, b in zip("." + w, w + "."):
            nll -= torch.log(P[VOCAB.stoi[a], VOCAB.stoi[b]]).item()
            n_pairs += 1
    assert lm.nats_per_char(nb.BigramLM(P), X, Y, batch_size=33) == pytest.approx(nll / n_pairs, rel=1e-10)


def test_expected_ends_is_the_sum_of_end_probabilities_over_real_positions():
    model = small_model("gru", seed=6)
    words = random_words(7, n=30)
    X, Y = lm.encode_words(words, VOCAB)
    expected, variance = 0.0, 0.0
    with torch.no_grad():
        for w in words:
            ids = torch.tensor([0] + VOCAB.encode(w))
            p_end = torch.softmax(model(ids[None])[0][0], -1)[:, 0]
            expected += p_end.sum().item()
            variance += (p_end * (1 - p_end)).sum().item()
    mean, sd = nb.expected_ends(model, X, Y)
    assert mean == pytest.approx(expected, rel=1e-10) and sd == pytest.approx(variance**0.5, rel=1e-10)


def test_per_name_nats_adds_up_to_nats_per_char_and_counts_the_targets():
    model = small_model("gru", seed=4)
    words = random_words(5)
    X, Y = lm.encode_words(words, VOCAB)
    totals, counts = nb.per_name_nats(model, X, Y)
    assert counts.tolist() == [len(w) + 1 for w in words]
    with torch.no_grad():
        one_by_one = [F.cross_entropy(model(torch.tensor([[0] + VOCAB.encode(w)]))[0][0],
                                      torch.tensor(VOCAB.encode(w) + [0]), reduction="sum").item() for w in words]
    torch.testing.assert_close(totals, torch.tensor(one_by_one, dtype=torch.float64), rtol=1e-6, atol=1e-6)
    assert abs((totals.sum() / counts.sum()).item() - lm.nats_per_char(model, X, Y)) < 1e-6


def test_bootstrap_se_matches_scipy_bootstrap_and_is_zero_without_variation():
    import numpy as np
    from scipy.stats import bootstrap

    g = gen(6)
    counts = torch.randint(2, 10, (300,), generator=g).double()
    totals = counts * 2.0 + torch.randn(300, generator=g, dtype=torch.float64) * counts.sqrt()
    ours = nb.bootstrap_se(totals, counts, n_boot=4000, seed=1)
    ref = bootstrap((totals.numpy(), counts.numpy()), lambda t, c, axis=-1: t.sum(axis) / c.sum(axis),
                    paired=True, vectorized=True, n_resamples=4000, method="percentile",
                    random_state=np.random.default_rng(0)).standard_error
    assert abs(ours - ref) / ref < 0.1, (ours, ref)
    # the delta-method standard error of a ratio estimator, as a second reference
    ratio = (totals.sum() / counts.sum()).item()
    resid = totals - ratio * counts
    delta = (resid.std() * math.sqrt(len(totals)) / counts.sum()).item() * math.sqrt((len(totals) - 1) / len(totals))
    assert abs(ours - delta) / delta < 0.1, (ours, delta)
    assert nb.bootstrap_se(torch.full((50,), 6.0, dtype=torch.float64), torch.full((50,), 3.0, dtype=torch.float64)) < 1e-12


def test_poisson_interval_matches_scipy_and_covers_the_mean():
    from scipy.stats import poisson

    for k in (0, 1, 5, 21, 197):
        low, high = nb.poisson_interval(k)
        assert low <= k <= high
        if k > 0:  # exact interval: each tail has probability 2.5 % at its end
            assert abs(poisson.sf(k - 1, low) - 0.025) < 1e-9
        assert abs(poisson.cdf(k, high) - 0.025) < 1e-9
    rng = torch.Generator().manual_seed(7)
    draws = torch.poisson(torch.full((2000,), 4.0), generator=rng).int().tolist()
    covered = sum(lo <= 4.0 <= hi for lo, hi in map(nb.poisson_interval, draws)) / len(draws)
    assert 0.95 <= covered <= 0.995  # exact intervals are conservative
