"""Assignment 06 (RNN): the self-checks accept the solution and reject wrong answers.

For every check in utils/exercises/rnn.py: (1) it passes on the solution of
solutions/06_rnn.ipynb, (2) it raises CheckFailed on plausible mistakes, written out
below, and (3) it lets a stub's NotImplementedError through.
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
from torch import nn

from utils.exercises import rnn

sol = definitions("06_rnn", folder="solutions")


class StubRNN(nn.Module):
    def __init__(self, vocab_size, embed_dim, hidden):
        super().__init__()

    def forward(self, ids, lengths):
        raise NotImplementedError()


# ------------------------------------------------------------------ wrong cells
def cell_no_tanh(x, h, W_xh, W_hh, b):
    return x @ W_xh + h @ W_hh + b


def cell_sigmoid(x, h, W_xh, W_hh, b):
    return torch.sigmoid(x @ W_xh + h @ W_hh + b)


def cell_no_state(x, h, W_xh, W_hh, b):
    return torch.tanh(x @ W_xh + b)


def cell_transposed_hh(x, h, W_xh, W_hh, b):  # h @ W_hh.T: PyTorch's storage order
    return torch.tanh(x @ W_xh + h @ W_hh.T + b)


def cell_tanh_each(x, h, W_xh, W_hh, b):
    return torch.tanh(x @ W_xh) + torch.tanh(h @ W_hh) + b


def cell_detached(x, h, W_xh, W_hh, b):
    return torch.tanh(x @ W_xh + h @ W_hh + b).detach()


# ------------------------------------------------------------- wrong recurrences
def last_no_mask(x, lengths, W_xh, W_hh, b):  # runs over the padding
    h = x.new_zeros(x.shape[0], W_hh.shape[0])
    for t in range(x.shape[1]):
        h = sol.rnn_cell(x[:, t], h, W_xh, W_hh, b)
    return h


def last_input_mask(x, lengths, W_xh, W_hh, b):  # zeroes the padded inputs only
    h = x.new_zeros(x.shape[0], W_hh.shape[0])
    for t in range(x.shape[1]):
        keep = (t < lengths).to(x.dtype)[:, None]
        h = sol.rnn_cell(x[:, t] * keep, h, W_xh, W_hh, b)
    return h


def last_off_by_one(x, lengths, W_xh, W_hh, b):  # keeps one step too many
    h = x.new_zeros(x.shape[0], W_hh.shape[0])
    for t in range(x.shape[1]):
        new = sol.rnn_cell(x[:, t], h, W_xh, W_hh, b)
        h = torch.where((t <= lengths)[:, None], new, h)
    return h


def last_all_states(x, lengths, W_xh, W_hh, b):  # takes the state at index lengths (not -1)
    h = x.new_zeros(x.shape[0], W_hh.shape[0])
    states = []
    for t in range(x.shape[1]):
        h = sol.rnn_cell(x[:, t], h, W_xh, W_hh, b)
        states.append(h)
    states.append(h)
    return torch.stack(states, 1)[torch.arange(x.shape[0]), lengths.clamp(max=x.shape[1])]


def last_mean_states(x, lengths, W_xh, W_hh, b):  # averages the states instead
    h = x.new_zeros(x.shape[0], W_hh.shape[0])
    total = torch.zeros_like(h)
    for t in range(x.shape[1]):
        new = sol.rnn_cell(x[:, t], h, W_xh, W_hh, b)
        h = torch.where((t < lengths)[:, None], new, h)
        total = total + h
    return total / x.shape[1]


def last_fixed_length(x, lengths, W_xh, W_hh, b):  # ignores x.shape[1], uses max(lengths)
    h = x.new_zeros(x.shape[0], W_hh.shape[0])
    for t in range(int(lengths.max())):
        h = sol.rnn_cell(x[:, t], h, W_xh, W_hh, b)
    return h


# -------------------------------------------------------------- wrong classifiers
class RNNProbs(sol.NameRNN):  # returns probabilities
    def forward(self, ids, lengths):
        return torch.sigmoid(super().forward(ids, lengths))


class RNNColumn(sol.NameRNN):  # returns batch x 1
    def forward(self, ids, lengths):
        return super().forward(ids, lengths)[:, None]


class RNNFullLength(sol.NameRNN):  # pretends every name is as long as the longest
    def forward(self, ids, lengths):
        full = torch.full_like(lengths, ids.shape[1])
        return super().forward(ids, full)


class RNNFirstStateOnly(sol.NameRNN):  # uses only the first character
    def forward(self, ids, lengths):
        return super().forward(ids[:, :1], torch.ones_like(lengths))


CASES = {
    "rnn_cell": (
        rnn.check_rnn_cell,
        "rnn_cell",
        [
            cell_no_tanh,
            cell_sigmoid,
            cell_no_state,
            cell_transposed_hh,
            cell_tanh_each,
            cell_detached,
        ],
    ),
    "rnn_last_hidden": (
        rnn.check_rnn_last_hidden,
        "rnn_last_hidden",
        [
            last_no_mask,
            last_input_mask,
            last_off_by_one,
            last_all_states,
            last_mean_states,
            last_fixed_length,
        ],
    ),
    "NameRNN": (
        rnn.check_name_rnn,
        "NameRNN",
        [RNNProbs, RNNColumn, RNNFullLength, RNNFirstStateOnly],
    ),
}
WRONG = wrong_answers(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_check_passes_on_the_solution(name, capsys):
    check, attr, _ = CASES[name]
    assert_passes(capsys, check, getattr(sol, attr))


@pytest.mark.parametrize("name, wrong", WRONG, ids=wrong_ids(WRONG))
def test_check_fails_on_a_wrong_answer(name, wrong, capsys):
    assert_fails(capsys, CASES[name][0], wrong, says="FAIL")


@pytest.mark.parametrize("name", list(CASES))
def test_check_lets_a_stub_through(name, capsys):
    assert_stub_gets_todo(capsys, CASES[name][0], StubRNN if name == "NameRNN" else stub)


def test_checks_leave_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    rnn.check_rnn_cell(sol.rnn_cell)
    rnn.check_rnn_last_hidden(sol.rnn_last_hidden)
    rnn.check_name_rnn(sol.NameRNN)
    assert torch.equal(torch.rand(3), expected)


def test_solution_matches_torch_rnn_on_fresh_data():
    g = torch.Generator().manual_seed(5)
    lengths = torch.tensor([2, 5, 1, 3])
    x = torch.randn(4, 5, 3, generator=g)
    ref = nn.RNN(3, 8, batch_first=True)
    W_xh, W_hh = ref.weight_ih_l0.detach().T, ref.weight_hh_l0.detach().T
    b = (ref.bias_ih_l0 + ref.bias_hh_l0).detach()
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    with torch.no_grad():
        _, h_n = ref(packed)
    assert torch.allclose(sol.rnn_last_hidden(x, lengths, W_xh, W_hh, b), h_n[0], atol=1e-6)


def test_solution_baselines_on_a_tiny_example():
    train_last = ["a", "a", "b", "b", "b"]
    y_train = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0])
    pred = sol.last_char_naive_bayes(train_last, y_train, ["a", "b", "z"], alpha=1.0)
    # 'a': 2 of 2 female -> 1; 'b': 1 of 3 female -> 0; unseen 'z': the prior (3 of 5) -> 1
    assert pred.tolist() == [1.0, 0.0, 1.0]
