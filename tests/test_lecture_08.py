"""Lecture 8: the hand-written RNN, its masking, Naive Bayes and the name models."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from nbdefs import definitions

nb = definitions("08_name_gender_rnn")


def padded_batch(lengths, vocab_size, seed):
    """Random ids in 1..vocab_size-1, padded with 0 after each length."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(1, vocab_size, (n,), generator=g)
    return ids


def nn_rnn_with_weights_of(model):
    """An independent copy of a CourseRNN's weights into nn.RNN (not the notebook's helper)."""
    V, H = model.vocab_size, model.hidden_size
    rnn = nn.RNN(V, H, batch_first=True).double()
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(model.i2h.weight[:, :V])
        rnn.weight_hh_l0.copy_(model.i2h.weight[:, V:])
        rnn.bias_ih_l0.copy_(model.i2h.bias)
        rnn.bias_hh_l0.zero_()
    return rnn


# ------------------------------------------------------------------ the course RNN
def test_cell_is_one_step_of_nn_rnn():
    torch.manual_seed(0)
    model = nb.CourseRNN(11, 7).double()
    x = F.one_hot(torch.randint(1, 11, (5,)), 11).double()
    h = torch.randn(5, 7, dtype=torch.float64)
    _, h1 = nn_rnn_with_weights_of(model)(x[:, None, :], h[None])
    with torch.no_grad():
        torch.testing.assert_close(model.cell(x, h), h1[0], atol=1e-12, rtol=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_masked_recurrence_matches_nn_rnn_on_a_packed_batch(seed):
    torch.manual_seed(seed)
    lengths = [3, 1, 5, 2, 5, 4]
    model = nb.CourseRNN(13, 9).double()
    ids = padded_batch(lengths, 13, seed)
    packed = pack_padded_sequence(
        F.one_hot(ids, 13).double(), torch.tensor(lengths), batch_first=True, enforce_sorted=False
    )
    _, h_n = nn_rnn_with_weights_of(model)(packed)
    with torch.no_grad():
        torch.testing.assert_close(model.final_hidden(ids), h_n[0], atol=1e-12, rtol=0)
        torch.testing.assert_close(model(ids), model.h2o(h_n[0]).squeeze(1), atol=1e-12, rtol=0)


def test_notebook_weight_copy_gives_the_same_nn_rnn():
    torch.manual_seed(3)
    model = nb.CourseRNN(8, 5).double()
    ids = padded_batch([4, 2, 3], 8, 3)
    x = F.one_hot(ids, 8).double()
    theirs, _ = nb.to_nn_rnn(model)(x)
    ours, _ = nn_rnn_with_weights_of(model)(x)
    torch.testing.assert_close(theirs, ours, atol=1e-14, rtol=0)


def test_padding_does_not_change_the_final_state_of_a_shorter_name():
    torch.manual_seed(4)
    model = nb.CourseRNN(10, 6).double()
    short = torch.tensor([[3, 7]])
    batch = torch.tensor([[3, 7, 0, 0, 0], [3, 7, 2, 5, 1], [9, 0, 0, 0, 0]])
    with torch.no_grad():
        alone = model.final_hidden(short)[0]
        in_batch = model.final_hidden(batch)
        torch.testing.assert_close(in_batch[0], alone, atol=1e-14, rtol=0)
        torch.testing.assert_close(
            in_batch[2], model.final_hidden(batch[2:, :1])[0], atol=1e-14, rtol=0
        )
        # an unmasked step on <pad> would move the state: the mask matters
        x_pad = F.one_hot(torch.zeros(1, dtype=torch.long), 10).double()
        assert (model.cell(x_pad, alone[None])[0] - alone).abs().max() > 1e-3


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_name_rnn_ignores_padding(cell):
    torch.manual_seed(5)
    model = nb.NameRNN(20, embedding_dim=8, hidden_size=6, cell=cell).eval()
    batch = padded_batch([2, 3, 1, 3], 20, 5)
    with torch.no_grad():
        together = model(batch)
        one_by_one = torch.cat(
            [model(batch[i : i + 1, : int((batch[i] != 0).sum())]) for i in range(4)]
        )
    torch.testing.assert_close(together, one_by_one, atol=1e-6, rtol=0)


def test_output_shapes_and_gradients():
    ids = padded_batch([3, 2, 3, 1, 2], 30, 6)
    course = nb.CourseRNN(30, 16)
    assert course.final_hidden(ids).shape == (5, 16)
    out = course(ids)
    assert out.shape == (5,)
    out.sum().backward()
    assert course.i2h.weight.grad is not None and course.i2h.weight.grad.abs().sum() > 0
    for cell in ("gru", "lstm"):
        model = nb.NameRNN(30, embedding_dim=8, hidden_size=12, cell=cell)
        assert model(ids).shape == (5,)
    assert nb.predict_female(nb.NameRNN(30), ids).shape == (5,)


# ------------------------------------------------------------------- Naive Bayes
def direct_naive_bayes(fit_X, fit_y, pred_X, n_values, alpha):
    """P(y = 1 | x) from the counting formula, value 0 = slot absent."""
    fit_X, pred_X = fit_X.tolist(), pred_X.tolist()
    fit_y = [int(c) for c in fit_y]
    n = len(fit_y)
    K = n_values - 1
    out = []
    for row in pred_X:
        joint = []
        for c in (0, 1):
            members = [x for x, yc in zip(fit_X, fit_y) if yc == c]
            p = len(members) / n
            for slot, value in enumerate(row):
                if value == 0:
                    continue
                with_slot = [x for x in members if x[slot] != 0]
                hits = sum(1 for x in with_slot if x[slot] == value)
                p *= (hits + alpha) / (len(with_slot) + alpha * K)
            joint.append(p)
        out.append(joint[1] / sum(joint))
    return torch.tensor(out, dtype=torch.float64)


FIT_X = torch.tensor([[2, 3], [2, 0], [4, 3], [5, 2], [2, 4], [3, 0], [5, 5], [4, 0]])
FIT_Y = torch.tensor([0, 0, 1, 1, 1, 0, 1, 0])
PRED_X = torch.tensor([[2, 3], [2, 0], [6, 3], [5, 0], [4, 4], [6, 6], [3, 2]])  # 6: never seen


@pytest.mark.parametrize("alpha", [1.0, 0.5, 0.01])
def test_naive_bayes_matches_direct_counts(alpha):
    model = nb.fit_naive_bayes(FIT_X, FIT_Y, 7, alpha=alpha)
    p = nb.naive_bayes_log_proba(model, PRED_X)[:, 1].exp()
    torch.testing.assert_close(
        p, direct_naive_bayes(FIT_X, FIT_Y, PRED_X, 7, alpha), atol=1e-12, rtol=0
    )


def test_naive_bayes_estimates_are_distributions():
    log_prior, log_lik = nb.fit_naive_bayes(FIT_X, FIT_Y, 7)
    assert log_prior.dtype == torch.float64
    torch.testing.assert_close(log_prior.exp().sum(), torch.tensor(1.0, dtype=torch.float64))
    # over the real values 1..6, each slot's class-conditional probabilities sum to one
    torch.testing.assert_close(
        log_lik[:, 1:, :].exp().sum(dim=1), torch.ones(2, 2, dtype=torch.float64)
    )
    assert (log_lik[:, 0, :] == 0).all()  # "absent" adds nothing to either class
    log_p = nb.naive_bayes_log_proba((log_prior, log_lik), PRED_X)
    torch.testing.assert_close(log_p.exp().sum(dim=1), torch.ones(len(PRED_X), dtype=torch.float64))


def test_naive_bayes_notebook_counting_agrees():
    # the notebook's slow checker and its vectorised version, on strings
    strings, labels = ["ab", "a", "cb", "db", "ac", "b"], [0, 0, 1, 1, 1, 0]
    stoi = {"a": 2, "b": 3, "c": 4, "d": 5}
    X = torch.tensor([[stoi[ch] for ch in s] + [0] * (2 - len(s)) for s in strings])
    model = nb.fit_naive_bayes(X, torch.tensor(labels), 6)
    test_strings = ["ab", "c", "ze", "dd"]
    X_test = torch.tensor(
        [[stoi.get(ch, 1) for ch in s] + [0] * (2 - len(s)) for s in test_strings]
    )
    torch.testing.assert_close(
        nb.naive_bayes_log_proba(model, X_test)[:, 1].exp(),
        nb.naive_bayes_by_counting(strings, labels, test_strings, stoi, 6),
        atol=1e-12,
        rtol=0,
    )


def test_binary_metrics_match_torch():
    g = torch.Generator().manual_seed(7)
    p = torch.rand(50, generator=g)
    y = (torch.rand(50, generator=g) < 0.5).float()
    acc, loss = nb.binary_metrics(p, y)
    assert acc == pytest.approx(((p > 0.5).float() == y).float().mean().item())
    assert loss == pytest.approx(F.binary_cross_entropy(p.double(), y.double()).item(), rel=1e-10)


# ---------------------------------------------------------------- early stopping
def test_fit_restores_the_best_epoch():
    # validation labels are the opposite rule, so the validation loss rises while training
    # improves: early stopping must stop and hand back the weights of the best (first) epoch
    g = torch.Generator().manual_seed(8)
    X = padded_batch([2] * 120, 12, 8)
    y = (X == 3).any(dim=1).float()  # female iff character 3 occurs
    Xv, yv = X[:40], 1 - y[:40]
    torch.manual_seed(8)
    model = nb.NameRNN(12, embedding_dim=4, hidden_size=4, dropout=0.0, embedding_dropout=0.0)
    h = nb.fit(model, X, y, Xv, yv, epochs=8, lr=0.05, batch_size=40, generator=g, patience=2)
    assert h["best epoch"] < len(h["val loss"]) < 8, "early stopping should have stopped early"
    assert len(h["val loss"]) - h["best epoch"] == 2
    with torch.no_grad():
        val = F.binary_cross_entropy_with_logits(model(Xv), yv).item()
    assert val == pytest.approx(min(h["val loss"]), abs=1e-6)
    assert h["val loss"][h["best epoch"] - 1] == min(h["val loss"])
    assert not model.training
    assert math.isfinite(val)


# ----------------------------------------------------------- logistic regression
def random_slot_features(n, n_slots, n_values, seed):
    """Random ids in 1..n_values-1, with the last slot absent (0) for about a third of rows."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randint(1, n_values, (n, n_slots), generator=g)
    X[torch.rand(n, generator=g) < 0.3, -1] = 0
    return X


def dense_one_hot(X, n_values):
    """Independent design matrix: column s * (n_values - 1) + (v - 1) for value v >= 1 in slot s."""
    import numpy as np

    out = np.zeros((len(X), X.shape[1] * (n_values - 1)))
    for i, row in enumerate(X.tolist()):
        for s, v in enumerate(row):
            if v:
                out[i, s * (n_values - 1) + v - 1] = 1.0
    return out


@pytest.mark.parametrize("l2", [0.3, 1.0, 5.0])
def test_logistic_regression_matches_sklearn(l2):
    from sklearn.linear_model import LogisticRegression

    X = random_slot_features(300, 2, 9, seed=int(10 * l2))
    g = torch.Generator().manual_seed(11)
    true_w = torch.randn(2, 9, generator=g, dtype=torch.float64)
    logits = (true_w[torch.arange(2), X] * (X != 0)).sum(dim=1)
    y = (torch.rand(300, generator=g, dtype=torch.float64) < torch.sigmoid(logits)).float()
    model = nb.fit_logistic(X, y, 9, l2)
    X_new = random_slot_features(50, 2, 9, seed=99)
    ours = torch.sigmoid(nb.logistic_logits(model, X_new))
    sk = LogisticRegression(C=1.0 / l2, tol=1e-12, max_iter=10_000).fit(dense_one_hot(X, 9), y.numpy())
    theirs = torch.from_numpy(sk.predict_proba(dense_one_hot(X_new, 9))[:, 1])
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    # the intercept is not penalised, the weights of the "absent" value are never used
    torch.testing.assert_close(model[1], torch.tensor(sk.intercept_[0], dtype=torch.float64),
                               atol=1e-5, rtol=0)
    assert (model[0][:, 0] == 0).all()


def test_one_hot_slots_layout():
    X = random_slot_features(40, 2, 7, seed=12)
    import numpy as np

    np.testing.assert_array_equal(nb.one_hot_slots(X, 7).toarray(), dense_one_hot(X, 7))


# ------------------------------------------------------ the notes' log of a sigmoid
def test_notes_loss_is_the_bce_where_finite_and_fails_when_saturated():
    g = torch.Generator().manual_seed(13)
    p = torch.rand(100, generator=g, dtype=torch.float64) * 0.98 + 0.01
    y = (torch.rand(100, generator=g) < 0.5).double()
    torch.testing.assert_close(nb.notes_loss(p, y),
                               F.binary_cross_entropy(p, y, reduction="none"), atol=1e-12, rtol=0)
    z = torch.tensor([-100.0, 20.0, 20.0])  # float32: sigmoid saturates to 0, 1, 1
    y32 = torch.tensor([1.0, 0.0, 1.0])
    out = nb.notes_loss(torch.sigmoid(z), y32)
    assert torch.isinf(out[0]) and torch.isinf(out[1]) and torch.isnan(out[2])
    stable = F.binary_cross_entropy_with_logits(z, y32, reduction="none")
    assert torch.isfinite(stable).all()
    torch.testing.assert_close(stable[:2], torch.tensor([100.0, 20.0]), atol=1e-4, rtol=0)
