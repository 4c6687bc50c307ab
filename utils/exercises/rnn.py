"""Self-checks of assignment 06: a recurrent network for name → gender, written out.

Exercises (lecture notebooks/08_name_gender_rnn.ipynb; course notes DL-lec10/11):

1. ``rnn_cell(x, h, W_xh, W_hh, b)``: one step h_t = tanh(x_t W_xh + h_{t-1} W_hh + b),
   compared with ``nn.RNNCell`` whose weights are copied in;
2. ``rnn_last_hidden(x, lengths, W_xh, W_hh, b)``: the recurrence over a padded batch,
   returning each sequence's hidden state after its OWN last element, compared with
   ``nn.RNN`` on a ``pack_padded_sequence`` and checked to ignore whatever the padding holds;
3. ``NameRNN.forward(ids, lengths)``: embedding → recurrence → one logit per name, compared
   with the same network built from ``nn.Embedding`` + ``nn.RNN`` + ``nn.Linear``.

Every check draws its inputs from a local ``torch.Generator`` (float64 where the
comparison is exact), so checking never changes the notebook's random numbers.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from ..checks import check_close, check_shape, check_true
from . import call, exercise, generator, require, require_tensor

__all__ = ["check_name_rnn", "check_rnn_cell", "check_rnn_last_hidden"]

F64 = torch.float64
_CALL_HINT = "try your function on a small batch and print the shapes of the intermediate results"
_call = functools.partial(call, hint=_CALL_HINT)


def _weights(gen, d_in: int, d_hidden: int, dtype=F64):
    """Random W_xh (d_in x d_hidden), W_hh (d_hidden x d_hidden), b (d_hidden)."""
    scale = d_hidden**-0.5
    W_xh = torch.randn(d_in, d_hidden, generator=gen, dtype=dtype) * scale
    W_hh = torch.randn(d_hidden, d_hidden, generator=gen, dtype=dtype) * scale
    b = torch.randn(d_hidden, generator=gen, dtype=dtype) * 0.5
    return W_xh, W_hh, b


def _build(cls, *args):
    """nn.RNN / nn.RNNCell without touching the global random state (their init draws)."""
    with torch.random.fork_rng(devices=[]):
        return cls(*args, batch_first=True) if cls is nn.RNN else cls(*args)


def _copy_into(module, W_xh, W_hh, b) -> None:
    """PyTorch stores W_ih = W_xh^T (hidden x input) and two biases that are added."""
    with torch.no_grad():
        module.weight_ih_l0.copy_(W_xh.T) if hasattr(
            module, "weight_ih_l0"
        ) else module.weight_ih.copy_(W_xh.T)
        module.weight_hh_l0.copy_(W_hh.T) if hasattr(
            module, "weight_hh_l0"
        ) else module.weight_hh.copy_(W_hh.T)
        bias_ih = module.bias_ih_l0 if hasattr(module, "bias_ih_l0") else module.bias_ih
        bias_hh = module.bias_hh_l0 if hasattr(module, "bias_hh_l0") else module.bias_hh
        bias_ih.copy_(b)
        bias_hh.zero_()


def _reference_last_hidden(x, lengths, W_xh, W_hh, b):
    """h after each sequence's last element, by nn.RNN on a packed batch."""
    rnn = _build(nn.RNN, W_xh.shape[0], W_xh.shape[1]).to(x.dtype)
    _copy_into(rnn, W_xh, W_hh, b)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    with torch.no_grad():
        _, h_n = rnn(packed)
    return h_n[0]


# --------------------------------------------------------------- exercise 1: the cell
def check_rnn_cell(rnn_cell) -> None:
    """Exercise 1: ``rnn_cell(x, h, W_xh, W_hh, b)`` = tanh(x W_xh + h W_hh + b), rows = batch."""
    with exercise("rnn_cell"):
        g = generator(60)
        batch, d_in, d_hidden = 7, 5, 4  # d_in != d_hidden: a missing transpose cannot hide
        W_xh, W_hh, b = _weights(g, d_in, d_hidden)
        x = torch.randn(batch, d_in, generator=g, dtype=F64)
        h = torch.randn(batch, d_hidden, generator=g, dtype=F64).tanh()
        out = _call("rnn_cell", rnn_cell, x, h, W_xh, W_hh, b)
        require_tensor("rnn_cell", out)
        check_shape(
            "rnn_cell(x, h, ...)",
            out,
            (batch, d_hidden),
            hint="x is batch x d_in and W_xh is d_in x d_hidden, so x @ W_xh is batch x d_hidden",
        )
        cell = _build(nn.RNNCell, d_in, d_hidden).to(F64)
        _copy_into(cell, W_xh, W_hh, b)
        with torch.no_grad():
            expected = cell(x, h)
        check_close(
            "rnn_cell vs nn.RNNCell (weights copied in)",
            out,
            expected,
            atol=1e-12,
            hint="h_new = tanh(x @ W_xh + h @ W_hh + b): the previous state h enters through "
            "W_hh, the input through W_xh, and tanh is applied to the sum (not to each term)",
        )
        check_true(
            "the new state depends on the previous one",
            not torch.allclose(_call("rnn_cell", rnn_cell, x, 0 * h, W_xh, W_hh, b), out),
            hint="did you forget the term h @ W_hh?",
        )
        # gradients reach all three parameters
        params = [t.clone().requires_grad_(True) for t in (W_xh, W_hh, b)]
        out = _call("rnn_cell", rnn_cell, x, h, *params)
        require(
            out.requires_grad,
            "rnn_cell",
            "the result is cut off from autograd",
            hint="use torch operations only (torch.tanh, @, +), no .detach() or NumPy",
        )


# ---------------------------------------------------------- exercise 2: the recurrence
def check_rnn_last_hidden(rnn_last_hidden) -> None:
    """Exercise 2: ``rnn_last_hidden(x, lengths, W_xh, W_hh, b)`` -> batch x d_hidden.

    ``x`` is batch x T x d_in, padded after each sequence's ``lengths[i]`` elements; the
    result is h after element ``lengths[i]`` (h_0 = 0), whatever the padding contains.
    """
    with exercise("rnn_last_hidden"):
        g = generator(61)
        d_in, d_hidden = 6, 5
        lengths = torch.tensor([4, 1, 6, 3, 6, 2, 5])
        batch, T = len(lengths), int(lengths.max())
        W_xh, W_hh, b = _weights(g, d_in, d_hidden)
        x = torch.randn(batch, T, d_in, generator=g, dtype=F64)
        pad = torch.arange(T)[None, :] >= lengths[:, None]  # batch x T, True on padding
        x_zero_pad = x.masked_fill(pad[:, :, None], 0.0)
        out = _call("rnn_last_hidden", rnn_last_hidden, x_zero_pad, lengths, W_xh, W_hh, b)
        require_tensor("rnn_last_hidden", out)
        check_shape(
            "rnn_last_hidden(x, lengths, ...)",
            out,
            (batch, d_hidden),
            hint="one hidden state per sequence: the state after its own last element",
        )
        expected = _reference_last_hidden(x, lengths, W_xh, W_hh, b)
        check_close(
            "rnn_last_hidden vs nn.RNN + pack_padded_sequence (zero padding)",
            out,
            expected,
            atol=1e-12,
            hint="start from h = 0 and apply the cell at t = 0, 1, ..., T-1; a sequence whose "
            "length is <= t must keep its state (torch.where with the mask t < lengths). "
            "Running over the padding changes h even when the padded inputs are 0, because of "
            "h @ W_hh and b",
        )
        garbage = x.masked_fill(~pad[:, :, None], 0.0) * 100 + x_zero_pad  # huge pads
        out_garbage = _call("rnn_last_hidden", rnn_last_hidden, garbage, lengths, W_xh, W_hh, b)
        check_close(
            "padding is ignored (padded positions filled with large random numbers)",
            out_garbage,
            expected,
            atol=1e-12,
            hint="the padded positions must not touch a sequence's state: keep the old h "
            "where t >= lengths[i] instead of multiplying the input by a mask",
        )
        longer = torch.cat([x_zero_pad, torch.randn(batch, 3, d_in, generator=g, dtype=F64)], 1)
        check_close(
            "extra padding at the end changes nothing",
            _call("rnn_last_hidden", rnn_last_hidden, longer, lengths, W_xh, W_hh, b),
            expected,
            atol=1e-12,
            hint="loop over all x.shape[1] time steps and read the lengths, not the other way round",
        )
        one = _call("rnn_last_hidden", rnn_last_hidden, x[2:3, :6], lengths[2:3], W_xh, W_hh, b)
        check_close("a batch of one full-length sequence", one, expected[2:3], atol=1e-12)
        params = [t.clone().requires_grad_(True) for t in (W_xh, W_hh, b)]
        out = _call("rnn_last_hidden", rnn_last_hidden, x_zero_pad, lengths, *params)
        require(
            out.requires_grad,
            "rnn_last_hidden",
            "the result is cut off from autograd",
            hint="build h with torch operations (no in-place writes into a tensor created "
            "with torch.zeros(..., requires_grad=False) and then .detach())",
        )
        out.sum().backward()
        check_true(
            "gradients reach W_xh, W_hh and b",
            all(p.grad is not None and p.grad.abs().sum() > 0 for p in params),
        )


# ---------------------------------------------------------- exercise 3: the classifier
def _reference_logits(model, ids, lengths):
    rnn = _build(nn.RNN, model.W_xh.shape[0], model.W_xh.shape[1]).to(model.W_xh.dtype)
    _copy_into(rnn, model.W_xh.detach(), model.W_hh.detach(), model.b.detach())
    with torch.no_grad():
        emb = model.embed(ids)
        packed = pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
        _, h_n = rnn(packed)
        return model.out(h_n[0]).squeeze(-1)


def check_name_rnn(NameRNN) -> None:
    """Exercise 3: ``NameRNN(vocab_size, embed_dim, hidden).forward(ids, lengths)`` -> logits.

    One logit (log-odds of "female") per name, shape [batch], from the hidden state after
    each name's last character; compared with nn.Embedding + nn.RNN (packed) + the model's
    own output layer.
    """
    with exercise("NameRNN.forward"):
        g = generator(62)
        vocab_size, embed_dim, hidden = 11, 4, 6
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = _call("NameRNN", NameRNN, vocab_size, embed_dim, hidden).to(F64)
        lengths = torch.tensor([3, 2, 3, 1, 2])
        T = int(lengths.max())
        ids = torch.randint(2, vocab_size, (len(lengths), T), generator=g)
        ids[torch.arange(T)[None, :] >= lengths[:, None]] = 0  # <pad> = 0
        logits = _call("NameRNN.forward", model, ids, lengths)
        require_tensor("NameRNN.forward", logits)
        check_shape(
            "logits",
            logits,
            (len(lengths),),
            hint="one logit per name: squeeze the last dimension of the batch x 1 output",
        )
        check_close(
            "logits vs nn.Embedding + nn.RNN (packed) + output layer",
            logits,
            _reference_logits(model, ids, lengths),
            atol=1e-12,
            hint="embed the ids, run your rnn_last_hidden with the model's W_xh, W_hh, b and the "
            "lengths, then apply self.out; return logits, not probabilities (no sigmoid: "
            "the loss BCEWithLogits applies it)",
        )
        logits.sum().backward()
        check_true(
            "gradients reach the embedding and the recurrent weights",
            model.embed.weight.grad is not None
            and model.W_hh.grad is not None
            and model.W_hh.grad.abs().sum() > 0,
            hint="use the model's own parameters (self.embed, self.W_xh, ...) inside forward",
        )
