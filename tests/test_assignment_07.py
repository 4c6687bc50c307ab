"""Assignment 07 (attention): the self-checks accept the solution and reject wrong answers.

For every check in utils/exercises/attention.py: (1) it passes on the functions of
solutions/07_attention.ipynb, (2) it raises CheckFailed on plausible mistakes, written out
below (masking with 0 instead of -inf, masking the wrong axis, no 1/sqrt(d), a wrong head
split, ...), and (3) it lets a stub's NotImplementedError through.
"""

from __future__ import annotations

import contextlib
import io
import math

import pytest
import torch
from nbdefs import definitions
from selfchecks import assert_fails, assert_passes, assert_stub_gets_todo, stub, wrong_answers

from utils import CheckFailed
from utils.exercises import attention

sol = definitions("07_attention", folder="solutions")
NEG_INF = float("-inf")
SQRT2 = math.sqrt(2)


# ------------------------------------------------------- wrong scaled dot-product attention
def _attend(scores, v, attn_mask=None, fill=NEG_INF, dim=-1):
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, fill)
    weights = torch.softmax(scores, dim=dim)
    return weights @ v, weights


def sdpa_mask_with_zero(q, k, v, attn_mask=None):  # masked scores set to 0, not -inf
    return _attend(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), v, attn_mask, fill=0.0)


def sdpa_multiply_by_mask(q, k, v, attn_mask=None):  # scores * mask: the same mistake
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if attn_mask is not None:
        scores = scores * attn_mask
    return _attend(scores, v)


def sdpa_mask_wrong_axis(q, k, v, attn_mask=None):  # the mask read as [Lk, Lq]
    mask = None if attn_mask is None else attn_mask.transpose(-2, -1)
    return _attend(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), v, mask)


def sdpa_inverted_mask(q, k, v, attn_mask=None):  # True read as "hide" (nn.MultiheadAttention)
    mask = None if attn_mask is None else ~attn_mask
    return _attend(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), v, mask)


def sdpa_no_scale(q, k, v, attn_mask=None):
    return _attend(q @ k.transpose(-2, -1), v, attn_mask)


def sdpa_scale_by_d(q, k, v, attn_mask=None):  # 1/d instead of 1/sqrt(d)
    return _attend(q @ k.transpose(-2, -1) / q.shape[-1], v, attn_mask)


def sdpa_scale_by_value_size(q, k, v, attn_mask=None):
    return _attend(q @ k.transpose(-2, -1) / math.sqrt(v.shape[-1]), v, attn_mask)


def sdpa_softmax_over_queries(q, k, v, attn_mask=None):
    return _attend(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), v, attn_mask, dim=-2)


def sdpa_naive_exp(q, k, v, attn_mask=None):  # exp without subtracting the maximum
    scores = torch.exp(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]))
    if attn_mask is not None:
        scores = scores * attn_mask
    weights = scores / scores.sum(-1, keepdim=True)
    return weights @ v, weights


def sdpa_mask_after_softmax(q, k, v, attn_mask=None):  # zeroed afterwards: rows no longer sum to 1
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    if attn_mask is not None:
        weights = weights * attn_mask
    return weights @ v, weights


def sdpa_k_dot_t(q, k, v, attn_mask=None):  # k.mT is right; k.T reverses every axis
    k_t = k.permute(*reversed(range(k.ndim)))  # what k.T does (deprecated beyond 2-d)
    return _attend(q @ k_t / math.sqrt(q.shape[-1]), v, attn_mask)


def sdpa_output_only(q, k, v, attn_mask=None):
    return sol.scaled_dot_product_attention(q, k, v, attn_mask)[0]


# ------------------------------------------------------------------------ wrong masks
def mask_padding_on_queries(lengths, n, causal=False):  # hides padded QUERIES (rows)
    real = torch.arange(n) < lengths[:, None]
    mask = real[:, :, None].expand(-1, -1, n)
    return mask & torch.ones(n, n, dtype=torch.bool).tril() if causal else mask


def mask_future_allowed(lengths, n, causal=False):  # the upper triangle: sees the future
    mask = sol.attention_mask(lengths, n)
    return mask & torch.ones(n, n, dtype=torch.bool).triu() if causal else mask


def mask_causal_without_diagonal(lengths, n, causal=False):
    mask = sol.attention_mask(lengths, n)
    return mask & torch.ones(n, n, dtype=torch.bool).tril(-1) if causal else mask


def mask_ignores_causal(lengths, n, causal=False):
    return sol.attention_mask(lengths, n)


def mask_as_int(lengths, n, causal=False):
    return sol.attention_mask(lengths, n, causal).long()


def mask_off_by_one(lengths, n, causal=False):  # <= instead of <
    real = torch.arange(n) <= lengths[:, None]
    mask = real[:, None, :].expand(-1, n, -1)
    return mask & torch.ones(n, n, dtype=torch.bool).tril() if causal else mask


def mask_not_expanded(lengths, n, causal=False):  # [B, 1, n]: broadcastable, not [B, n, n]
    return (torch.arange(n) < lengths[:, None])[:, None, :]


# ------------------------------------------------------------------ wrong head split
def split_view_straight(x, n_heads):  # the right shape, tokens mixed up
    B, L, E = x.shape
    return x.reshape(B, n_heads, L, E // n_heads)


def split_interleaved(x, n_heads):  # head i gets every h-th feature
    B, L, E = x.shape
    return x.reshape(B, L, E // n_heads, n_heads).permute(0, 3, 1, 2)


def merge_without_transpose(x):
    B, h, L, d = x.shape
    return x.reshape(B, L, h * d)


def merge_interleaved(x):
    B, h, L, d = x.shape
    return x.permute(0, 2, 3, 1).reshape(B, L, h * d)


# ------------------------------------------------------------- wrong multi-head attention
def _mha(
    query,
    key,
    value,
    w,
    n_heads,
    key_padding_mask=None,
    is_causal=False,
    *,
    split=None,
    sdpa=None,
    pad=None,
    transpose_w=True,
    out_proj=True,
):
    split = split or sol.split_heads
    sdpa = sdpa or sol.scaled_dot_product_attention

    def proj(x, name):
        W = w[f"w_{name}"].T if transpose_w else w[f"w_{name}"]
        return x @ W + w[f"b_{name}"]

    q, k, v = (
        split(proj(query, "q"), n_heads),
        split(proj(key, "k"), n_heads),
        split(proj(value, "v"), n_heads),
    )
    mask = None
    if key_padding_mask is not None:
        mask = pad(key_padding_mask) if pad else ~key_padding_mask[:, None, None, :]
    if is_causal:
        causal = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
        mask = causal if mask is None else mask & causal
    out, attn = sdpa(q, k, v, mask)
    out = sol.merge_heads(out)
    return (proj(out, "o") if out_proj else out), attn


def mha_wrong_split(*args, **kw):
    return _mha(*args, split=split_interleaved, **kw)


def mha_straight_view(*args, **kw):
    return _mha(*args, split=split_view_straight, **kw)


def mha_no_scale(*args, **kw):
    return _mha(*args, sdpa=sdpa_no_scale, **kw)


def mha_padding_not_inverted(*args, **kw):  # True = padding used as True = may attend
    return _mha(*args, pad=lambda m: m[:, None, None, :], **kw)


def mha_padding_wrong_axis(*args, **kw):  # hides padded queries instead of keys
    return _mha(*args, pad=lambda m: ~m[:, None, :, None], **kw)


def mha_weights_not_transposed(*args, **kw):  # x @ W + b instead of nn.Linear's x @ W.T + b
    return _mha(*args, transpose_w=False, **kw)


def mha_no_output_projection(*args, **kw):
    return _mha(*args, out_proj=False, **kw)


def mha_ignores_causal(query, key, value, w, n_heads, key_padding_mask=None, is_causal=False):
    return _mha(query, key, value, w, n_heads, key_padding_mask)


def mha_averaged_weights(*args, **kw):  # heads averaged, as nn.MultiheadAttention's default
    out, attn = _mha(*args, **kw)
    return out, attn.mean(dim=1)


# ---------------------------------------------------------- wrong Nadaraya-Watson
def _nw(x0, x, y, h, attn_mask=None, *, scale=SQRT2, square_term=True, h_power=2):
    q = scale * torch.stack([x0, torch.ones_like(x0)], dim=-1)
    second = -(x**2) / 2 if square_term else torch.zeros_like(x)
    k = torch.stack([x, second], dim=-1) / h**h_power
    fit, w = sol.scaled_dot_product_attention(q, k, y[:, None], attn_mask)
    return fit[:, 0], w


def nw_plain_dot_product(x0, x, y, h, attn_mask=None):  # no -x_j^2/2: weights are not local
    return _nw(x0, x, y, h, attn_mask, square_term=False)


def nw_no_sqrt2(x0, x, y, h, attn_mask=None):  # the 1/sqrt(2) of the attention is not undone
    return _nw(x0, x, y, h, attn_mask, scale=1.0)


def nw_bandwidth_not_squared(x0, x, y, h, attn_mask=None):
    return _nw(x0, x, y, h, attn_mask, h_power=1)


def nw_ignores_mask(x0, x, y, h, attn_mask=None):
    return _nw(x0, x, y, h)


def nw_fit_not_squeezed(x0, x, y, h, attn_mask=None):
    fit, w = _nw(x0, x, y, h, attn_mask)
    return fit[:, None], w


# --------------------------------------------------------------------------------- table
CASES = {
    "scaled_dot_product_attention": (
        attention.check_scaled_dot_product_attention,
        (sol.scaled_dot_product_attention,),
        [
            (sdpa_mask_with_zero,),
            (sdpa_multiply_by_mask,),
            (sdpa_mask_wrong_axis,),
            (sdpa_inverted_mask,),
            (sdpa_no_scale,),
            (sdpa_scale_by_d,),
            (sdpa_scale_by_value_size,),
            (sdpa_softmax_over_queries,),
            (sdpa_naive_exp,),
            (sdpa_mask_after_softmax,),
            (sdpa_k_dot_t,),
            (sdpa_output_only,),
        ],
    ),
    "attention_mask": (
        attention.check_attention_mask,
        (sol.attention_mask,),
        [
            (mask_padding_on_queries,),
            (mask_future_allowed,),
            (mask_causal_without_diagonal,),
            (mask_ignores_causal,),
            (mask_as_int,),
            (mask_off_by_one,),
            (mask_not_expanded,),
        ],
    ),
    "split_and_merge_heads": (
        attention.check_split_and_merge_heads,
        (sol.split_heads, sol.merge_heads),
        [
            (split_view_straight, sol.merge_heads),
            (split_interleaved, sol.merge_heads),
            (sol.split_heads, merge_without_transpose),
            (sol.split_heads, merge_interleaved),
        ],
    ),
    "multi_head_attention": (
        attention.check_multi_head_attention,
        (sol.multi_head_attention,),
        [
            (mha_wrong_split,),
            (mha_straight_view,),
            (mha_no_scale,),
            (mha_padding_not_inverted,),
            (mha_padding_wrong_axis,),
            (mha_weights_not_transposed,),
            (mha_no_output_projection,),
            (mha_ignores_causal,),
            (mha_averaged_weights,),
        ],
    ),
    "nadaraya_watson": (
        attention.check_nadaraya_watson,
        (sol.nadaraya_watson,),
        [
            (nw_plain_dot_product,),
            (nw_no_sqrt2,),
            (nw_bandwidth_not_squared,),
            (nw_ignores_mask,),
            (nw_fit_not_squeezed,),
        ],
    ),
}
WRONG = wrong_answers(CASES)


def _ids(case):
    name, fns = case
    return f"{name}-{'+'.join(f.__name__ for f in fns if not hasattr(sol, f.__name__))}"


@pytest.mark.parametrize("name", list(CASES))
def test_check_passes_on_the_solution(name, capsys):
    check, good, _ = CASES[name]
    assert_passes(capsys, check, *good)


@pytest.mark.parametrize("name, wrong", WRONG, ids=[_ids(c) for c in WRONG])
def test_check_fails_on_a_wrong_answer(name, wrong, capsys):
    assert_fails(capsys, CASES[name][0], *wrong)


@pytest.mark.parametrize("name", list(CASES))
def test_check_lets_a_stub_through(name, capsys):
    check, good, _ = CASES[name]
    assert_stub_gets_todo(capsys, check, *[stub] * len(good))


def test_masking_with_zero_fails_on_the_mask_not_before():
    """The required mistakes fail where they should: the unmasked cases still pass."""
    for wrong, first_fail in [
        (sdpa_mask_with_zero, "a random [Lq, Lk] mask"),
        (sdpa_mask_wrong_axis, "a random [Lq, Lk] mask"),
        (sdpa_no_scale, "no mask"),
    ]:
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer), pytest.raises(CheckFailed):
            attention.check_scaled_dot_product_attention(wrong)
        fails = [line for line in buffer.getvalue().splitlines() if line.startswith("FAIL")]
        assert len(fails) == 1 and first_fail in fails[0], (wrong.__name__, fails)


def test_checks_leave_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    for check, good, _ in CASES.values():
        check(*good)
    assert torch.equal(torch.rand(3), expected)


def test_solution_attention_agrees_with_torch_on_fresh_inputs():
    gen = torch.Generator().manual_seed(11)
    q = torch.randn(3, 2, 4, 8, generator=gen, dtype=torch.float64)
    k = torch.randn(3, 2, 6, 8, generator=gen, dtype=torch.float64)
    v = torch.randn(3, 2, 6, 5, generator=gen, dtype=torch.float64)
    keep = torch.rand(4, 6, generator=gen) < 0.6
    keep[:, 0] = True
    out, w = sol.scaled_dot_product_attention(q, k, v, keep)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    assert torch.allclose(out, ref, atol=1e-12)
    assert torch.all(w[..., ~keep] == 0)
    lengths = torch.tensor([3, 6, 1])
    mask = sol.attention_mask(lengths, 6, causal=True)
    for b, n in enumerate(lengths.tolist()):
        for i in range(6):
            assert mask[b, i].tolist() == [j < n and j <= i for j in range(6)]
