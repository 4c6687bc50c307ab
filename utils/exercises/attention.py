"""Self-checks of assignment 07: scaled dot-product and multi-head attention, with masks.

Exercises (DL-lec13; lecture notebooks/10_attention.ipynb):

1. ``scaled_dot_product_attention(q, k, v, attn_mask=None) -> (output, weights)``:
   softmax(q k^T / sqrt(d)) v over the last two axes, any leading (batch, head) axes; a
   boolean ``attn_mask`` broadcastable to [..., Lq, Lk] is True where attention is
   ALLOWED (the convention of ``F.scaled_dot_product_attention``).
2. ``attention_mask(lengths, n, causal=False)``: the [B, n, n] boolean mask of a padded
   batch (key j of sequence b is real when j < lengths[b]), optionally causal (j <= i).
3. ``split_heads(x, n_heads)`` [B, L, E] -> [B, h, L, E/h] and ``merge_heads(x)`` back:
   head i owns the contiguous block of features i E/h ... (i+1) E/h - 1.
4. ``multi_head_attention(query, key, value, weights, n_heads, key_padding_mask=None,
   is_causal=False) -> (output, weights per head)``, compared with
   ``nn.MultiheadAttention(batch_first=True)`` carrying the same weights; its
   ``key_padding_mask`` follows ``nn.MultiheadAttention``: True = padding (ignored).
5. ``nadaraya_watson(x_query, x_train, y_train, bandwidth, attn_mask=None)``: the
   Gaussian-kernel regression estimate written as one attention call.

All comparisons run in float64 (tolerance 1e-6 unless stated); the inputs are drawn from
local generators, and ``nn.MultiheadAttention`` is built inside ``torch.random.fork_rng``,
so checking never changes the notebook's random numbers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_close, check_shape, check_true
from . import exercise

__all__ = [
    "check_attention_mask",
    "check_multi_head_attention",
    "check_nadaraya_watson",
    "check_scaled_dot_product_attention",
    "check_split_and_merge_heads",
]

F64 = torch.float64
ATOL = 1e-6


# ------------------------------------------------------------------------------ helpers
def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _require(condition, name: str, message: str, hint: str | None = None) -> None:
    """A structural check that only speaks up when it fails."""
    if not condition:
        check_true(name, False, message, hint=hint)


def _call(name: str, fn, *args, hint: str | None = None, **kwargs):
    """Call the student's function; report any error other than a stub's as a FAIL."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as e:  # noqa: BLE001 (any error of the student's code is a FAIL)
        check_true(name, False, f"raised {type(e).__name__}: {e}", hint=hint)


def _shape(name: str, x, shape: tuple, hint: str | None = None) -> None:
    """A shape check that only speaks up when it fails."""
    got = tuple(getattr(x, "shape", ()))
    _require(
        isinstance(x, torch.Tensor) and got == tuple(shape),
        name,
        f"shape {got} ({type(x).__name__}), expected {tuple(shape)}",
        hint,
    )


def _pair(name: str, out, what: str = "(output, weights)"):
    _require(
        isinstance(out, tuple | list) and len(out) == 2,
        name,
        f"returned a {type(out).__name__}, expected a tuple {what}",
        hint=f"end with `return {what.strip('()')}`",
    )
    return out


def _reference_weights(q, k, attn_mask=None):
    """The attention weights of F.scaled_dot_product_attention: attend to the identity."""
    eye = torch.eye(k.shape[-2], dtype=k.dtype).expand(*k.shape[:-1], k.shape[-2])
    return F.scaled_dot_product_attention(q, k, eye, attn_mask=attn_mask)


def _causal(n: int) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool).tril()


def _padding_keep(lengths: torch.Tensor, n: int) -> torch.Tensor:
    return torch.arange(n) < lengths[:, None]  # [B, n]: True for the real tokens


_MASK_HINT = (
    "where attn_mask is False the score must become -inf BEFORE the softmax (e.g. "
    "scores.masked_fill(~attn_mask, float('-inf'))), so that its weight is exactly 0; "
    "a score of 0 still gets weight e^0 / sum. True means 'may attend' (as in "
    "F.scaled_dot_product_attention), and the mask's last axis is the KEY axis"
)
_SDPA_HINT = (
    "scores = q @ k.transpose(-2, -1) / sqrt(d) (not k.T, which reverses ALL axes of a "
    "batched tensor) with d = q.shape[-1] (the query/key size, "
    "not the value size); the softmax runs over the LAST axis (the keys), so that every "
    "row of weights sums to 1; output = weights @ v"
)


# ---------------------------------------------------------- exercise 1: attention itself
def check_scaled_dot_product_attention(scaled_dot_product_attention) -> None:
    """Exercise 1: outputs and weights against ``F.scaled_dot_product_attention``."""
    with exercise("scaled_dot_product_attention"):
        g = _gen(0)
        name = "scaled_dot_product_attention"
        B, Lq, Lk, d, dv = 2, 3, 5, 4, 6  # all different: a mixed-up axis cannot hide

        def run(label, q, k, v, attn_mask=None, hint=_SDPA_HINT):
            where = f"{name}, {label}"
            out = _pair(
                where, _call(where, scaled_dot_product_attention, q, k, v, attn_mask, hint=hint)
            )
            out, weights = out
            shape = tuple(q.shape[:-1]) + (v.shape[-1],)
            _shape(
                f"output, {label}",
                out,
                shape,
                hint="the output has one row per query and the value size: [..., Lq, dv]",
            )
            _shape(
                f"weights, {label}",
                weights,
                tuple(q.shape[:-1]) + (k.shape[-2],),
                hint="one weight per query and key: [..., Lq, Lk]",
            )
            check_close(
                f"weights vs PyTorch, {label}",
                weights,
                _reference_weights(q, k, attn_mask),
                atol=ATOL,
                hint=hint,
            )
            check_close(
                f"output vs F.scaled_dot_product_attention, {label}",
                out,
                F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask),
                atol=ATOL,
                hint=hint,
            )
            return weights

        q = torch.randn(B, Lq, d, generator=g, dtype=F64)
        k = torch.randn(B, Lk, d, generator=g, dtype=F64)
        v = torch.randn(B, Lk, dv, generator=g, dtype=F64)
        weights = run("no mask", q, k, v)
        check_close(
            "every row of weights sums to 1",
            weights.sum(-1),
            torch.ones(B, Lq, dtype=F64),
            atol=1e-12,
            hint="softmax over the last axis (dim=-1): the keys",
        )

        big = 100 * torch.randn(B, Lq, d, generator=g, dtype=F64)  # scores in the thousands
        run(
            "large scores",
            big,
            10 * k,
            v,
            hint="use torch.softmax (it subtracts the maximum first); exp of a score in the "
            "hundreds overflows",
        )

        heads = (2, 3)  # [B, h, L, d]: any number of leading axes
        run(
            "4-d inputs [B, h, L, d]",
            torch.randn(*heads, Lq, d, generator=g, dtype=F64),
            torch.randn(*heads, Lk, d, generator=g, dtype=F64),
            torch.randn(*heads, Lk, dv, generator=g, dtype=F64),
            hint="transpose only the last two axes of k: k.transpose(-2, -1) (k.T reverses "
            "ALL axes of a batched tensor)",
        )

        mask = torch.rand(Lq, Lk, generator=g) < 0.5
        mask[torch.arange(Lq), torch.randint(0, Lk, (Lq,), generator=g)] = True  # no empty row
        weights = run("a random [Lq, Lk] mask", q, k, v, mask, hint=_MASK_HINT)
        check_true(
            "masked weights are exactly 0", bool((weights[:, ~mask] == 0).all()), hint=_MASK_HINT
        )

        lengths = torch.tensor([Lk, 2])  # sequence 1 has 2 real keys, then padding
        keep = _padding_keep(lengths, Lk)[:, None, :]  # [B, 1, Lk]: the same for every query
        run("key padding, mask [B, 1, Lk]", q, k, v, keep, hint=_MASK_HINT)

        n = 6
        qs, ks, vs = (torch.randn(B, n, s, generator=g, dtype=F64) for s in (d, d, dv))
        run("causal mask [n, n]", qs, ks, vs, _causal(n), hint=_MASK_HINT)
        out, _ = _call(name, scaled_dot_product_attention, qs, ks, vs, _causal(n))
        check_close(
            "causal mask vs F.scaled_dot_product_attention(is_causal=True)",
            out,
            F.scaled_dot_product_attention(qs, ks, vs, is_causal=True),
            atol=ATOL,
            hint=_MASK_HINT,
        )


# -------------------------------------------------------------------- exercise 2: masks
def check_attention_mask(attention_mask) -> None:
    """Exercise 2: the boolean [B, n, n] mask of a padded batch, with and without causality."""
    with exercise("attention_mask"):
        name = "attention_mask"
        lengths, n = torch.tensor([5, 2, 4]), 5
        for causal in (False, True):
            label = f"attention_mask(lengths={lengths.tolist()}, n={n}, causal={causal})"
            mask = _call(name, attention_mask, lengths, n, causal)
            _require(
                isinstance(mask, torch.Tensor) and mask.dtype == torch.bool,
                label,
                f"returned {getattr(mask, 'dtype', type(mask).__name__)}, not a bool tensor",
                hint="comparisons such as torch.arange(n) < lengths[:, None] give bool "
                "tensors; combine them with & (and), not with * or +",
            )
            check_shape(
                label,
                mask,
                (len(lengths), n, n),
                hint="one [n, n] matrix (queries x keys) per sequence; use .expand(...) "
                "to repeat the padding row for every query",
            )
            expected = _padding_keep(lengths, n)[:, None, :].expand(-1, n, -1)
            if causal:
                expected = expected & _causal(n)
            check_true(
                label,
                torch.equal(mask, expected),
                f"{int((mask != expected).sum())} of {mask.numel()} entries differ",
                hint="padding hides KEYS: entry [b, i, j] is False when j >= lengths[b], for "
                "every query i (the last axis, not the middle one). Causal: query i may see "
                "keys j <= i (the lower triangle with the diagonal, torch.tril)",
            )
        check_true(
            "every query has at least one key to attend to",
            bool(mask.any(-1).all()),
            hint="key 0 is real in every sequence and allowed for every query",
        )


# --------------------------------------------------------------- exercise 3: head split
def check_split_and_merge_heads(split_heads, merge_heads) -> None:
    """Exercise 3: [B, L, E] <-> [B, h, L, E/h], head i owning features i E/h ... (i+1) E/h - 1."""
    with exercise("split_heads / merge_heads"):
        g = _gen(2)
        B, L, h, dh = 2, 5, 3, 4
        x = torch.randn(B, L, h * dh, generator=g, dtype=F64)
        parts = _call("split_heads", split_heads, x, h)
        check_shape(
            "split_heads", parts, (B, h, L, dh), hint="[B, L, E] -> [B, n_heads, L, E // n_heads]"
        )
        expected = torch.stack([x[..., i * dh : (i + 1) * dh] for i in range(h)], dim=1)
        check_close(
            "split_heads: head i = features i*E/h ... (i+1)*E/h - 1",
            parts,
            expected,
            atol=0,
            hint="reshape to [B, L, h, E/h] first (each token's features cut into h "
            "contiguous blocks), THEN swap axes 1 and 2; reshaping straight to "
            "[B, h, L, E/h] mixes tokens, and [B, L, E/h, h] interleaves the heads",
        )
        y = torch.randn(B, h, L, dh, generator=g, dtype=F64)
        merged = _call("merge_heads", merge_heads, y)
        check_shape("merge_heads", merged, (B, L, h * dh), hint="[B, h, L, d] -> [B, L, h * d]")
        check_close(
            "merge_heads: the heads side by side again",
            merged,
            torch.cat(list(y.unbind(dim=1)), dim=-1),
            atol=0,
            hint="swap axes 1 and 2 back to [B, L, h, d] first, then reshape (use "
            ".reshape, or .contiguous().view: a transposed tensor is not contiguous)",
        )
        check_close(
            "merge_heads(split_heads(x)) == x",
            _call("merge_heads", merge_heads, _call("split_heads", split_heads, x, h)),
            x,
            atol=0,
        )


# ------------------------------------------------------------ exercise 4: multi-head
def _random_weights(E: int, g: torch.Generator) -> dict:
    weights = {}
    for name in "qkvo":
        weights[f"w_{name}"] = torch.randn(E, E, generator=g, dtype=F64) / math.sqrt(E)
        weights[f"b_{name}"] = 0.1 * torch.randn(E, generator=g, dtype=F64)
    return weights


def _torch_mha(weights: dict, E: int, n_heads: int) -> nn.MultiheadAttention:
    """An nn.MultiheadAttention carrying ``weights`` (built without touching the global RNG)."""
    with torch.random.fork_rng(devices=[]):
        mha = nn.MultiheadAttention(E, n_heads, batch_first=True, dtype=F64)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([weights["w_q"], weights["w_k"], weights["w_v"]]))
        mha.in_proj_bias.copy_(torch.cat([weights["b_q"], weights["b_k"], weights["b_v"]]))
        mha.out_proj.weight.copy_(weights["w_o"])
        mha.out_proj.bias.copy_(weights["b_o"])
    return mha.eval()


_MHA_HINT = (
    "project with nn.Linear's convention x @ W.T + b; split the heads, attend with your "
    "scaled_dot_product_attention (its 1/sqrt(d) uses the head size E/h), merge the heads, "
    "then apply the output projection w_o, b_o"
)
_PADDING_HINT = (
    "key_padding_mask follows nn.MultiheadAttention: True marks PADDING, the keys to ignore, "
    "the opposite of an attention mask's 'True = may attend'. Invert it (~) and give it the "
    "shape [B, 1, 1, Lk] so that it hides keys (last axis) for every head and every query"
)


def check_multi_head_attention(multi_head_attention) -> None:
    """Exercise 4: outputs and per-head weights against ``nn.MultiheadAttention``."""
    with exercise("multi_head_attention"):
        g = _gen(3)
        name = "multi_head_attention"
        B, L, S, E, h = 2, 5, 7, 12, 3
        weights = _random_weights(E, g)
        mha = _torch_mha(weights, E, h)
        x = torch.randn(B, L, E, generator=g, dtype=F64)
        memory = torch.randn(B, S, E, generator=g, dtype=F64)
        lengths = torch.tensor([L, 3])
        padding = ~_padding_keep(lengths, L)  # True = padding, nn.MultiheadAttention's way
        future = ~_causal(L)  # nn.MultiheadAttention's bool attn_mask: True = NOT allowed

        cases = [
            ("self-attention", (x, x, x), {}, {}, _MHA_HINT),
            (
                "cross-attention, Lq != Lk",
                (x, memory, memory),
                {},
                {},
                _MHA_HINT + "; queries come from `query`, keys and values from `key` and `value`",
            ),
            (
                "self-attention with key_padding_mask",
                (x, x, x),
                {"key_padding_mask": padding},
                {"key_padding_mask": padding},
                _PADDING_HINT,
            ),
            (
                "causal self-attention with key_padding_mask",
                (x, x, x),
                {"key_padding_mask": padding, "is_causal": True},
                {"key_padding_mask": padding, "attn_mask": future},
                (
                    "with is_causal=True query i may attend to keys j <= i only (a [Lq, Lk] "
                    "lower triangle, combined with the padding mask by &)"
                ),
            ),
        ]
        for label, (qx, kx, vx), mine_kw, torch_kw, hint in cases:
            out = _pair(
                name,
                _call(
                    name, multi_head_attention, qx, kx, vx, weights, h, hint=_MHA_HINT, **mine_kw
                ),
            )
            out, attn = out
            ref_out, ref_attn = mha(
                qx, kx, vx, need_weights=True, average_attn_weights=False, **torch_kw
            )
            _shape(f"output, {label}", out, tuple(ref_out.shape))
            _shape(
                f"weights, {label}",
                attn,
                tuple(ref_attn.shape),
                hint="return the weights of every head: [B, n_heads, Lq, Lk]",
            )
            check_close(
                f"weights vs nn.MultiheadAttention, {label}", attn, ref_attn, atol=ATOL, hint=hint
            )
            check_close(
                f"output vs nn.MultiheadAttention, {label}", out, ref_out, atol=ATOL, hint=hint
            )


# -------------------------------------------------------- exercise 5: kernel regression
def _nw_reference(x0, x, y, h, keep=None):
    scores = -((x0[:, None] - x[None, :]) ** 2) / (2 * h**2)
    if keep is not None:
        scores = scores.masked_fill(~keep, float("-inf"))
    w = torch.softmax(scores, dim=-1)
    return w @ y, w


def check_nadaraya_watson(nadaraya_watson) -> None:
    """Exercise 5: the Nadaraya-Watson estimate with a Gaussian kernel, to 1e-10."""
    with exercise("nadaraya_watson"):
        g = _gen(4)
        name = "nadaraya_watson"
        x = 4 * torch.rand(30, generator=g, dtype=F64) - 2
        y = torch.sin(2 * x) + 0.3 * torch.randn(30, generator=g, dtype=F64)
        x0 = torch.linspace(-2.5, 2.5, 11, dtype=F64)
        hint = (
            "the score of query x0_i and key x_j must be (x0_i x_j - x_j^2 / 2) / h^2: it "
            "differs from the kernel's -(x0_i - x_j)^2 / (2 h^2) only by -x0_i^2 / (2 h^2), "
            "the same for every key, which the softmax ignores. Two features per point do "
            "it, e.g. q_i = (x0_i, 1) and k_j = (x_j, -x_j^2 / 2) / h^2; multiply q by "
            "sqrt(2) to undo the 1/sqrt(d) of scaled dot-product attention (d = 2)"
        )
        for h in (0.1, 0.5, 2.0):
            out = _pair(
                name, _call(name, nadaraya_watson, x0, x, y, h, hint=hint), "(fit, weights)"
            )
            fit, weights = out
            ref_fit, ref_w = _nw_reference(x0, x, y, h)
            _shape(
                f"fit, bandwidth {h}",
                fit,
                (len(x0),),
                hint="one fitted value per query point: squeeze the value axis",
            )
            check_close(
                f"weights vs the Gaussian kernel, bandwidth {h}",
                weights,
                ref_w,
                atol=1e-10,
                hint=hint,
            )
            check_close(
                f"fit vs the Nadaraya-Watson formula, bandwidth {h}",
                fit,
                ref_fit,
                atol=1e-10,
                hint=hint,
            )
        keep = ~torch.eye(30, dtype=torch.bool)  # leave-one-out: no point sees itself
        out = _pair(
            name,
            _call(
                name,
                nadaraya_watson,
                x,
                x,
                y,
                0.3,
                attn_mask=keep,
                hint="pass attn_mask on to your scaled_dot_product_attention",
            ),
            "(fit, weights)",
        )
        check_close(
            "leave-one-out fit (attn_mask = ~eye)",
            out[0],
            _nw_reference(x, x, y, 0.3, keep)[0],
            atol=1e-10,
            hint="pass attn_mask on to your scaled_dot_product_attention unchanged",
        )
