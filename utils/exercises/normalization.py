"""Self-checks of assignment 09: batch normalization, dropout and weight decay.

Exercises (DL-lec9 and the d2l reading notes; lecture notebooks/07b_normalization_regularization.ipynb):

1. ``batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps)``
   for ``x`` of shape (N, D): returns ``(y, new_running_mean, new_running_var)``;
2. ``batchnorm_backward(dy, x, gamma, eps)``: the training-mode gradients
   ``(dx, dgamma, dbeta)`` by hand;
3. ``dropout(x, p, training, generator)``: inverted dropout, as ``nn.Dropout``;
4. ``l2_penalty(params, lam)``: ``lam / 2 * |weight|^2`` (the bias is not penalized);
5. ``adam_update(params, grads, state, lr, weight_decay, decoupled, betas, eps)``: one step of
   Adam with an L2 term (``decoupled=False``) or of AdamW (``decoupled=True``), weight decay on
   ``params["weight"]`` only.

Every check compares with PyTorch (``nn.BatchNorm1d``, autograd, ``nn.Dropout``'s moments,
``torch.optim.Adam``/``AdamW`` with a bias group without decay) on fresh random inputs in
float64, from private generators, and gives a hint for the typical mistakes: the biased
variance in the running average, momentum read the optimizer's way, batch statistics in
evaluation mode, the BatchNorm backward without the terms through the mean and the variance,
dropout scaled at test time instead of training time, weight decay applied to the bias, and
the L2 and decoupled forms swapped.
"""

from __future__ import annotations

import math

import torch

from ..checks import check_close, check_group, check_true
from . import call, exercise, generator, require, require_tensor

__all__ = [
    "check_adam_update",
    "check_batchnorm_backward",
    "check_batchnorm_forward",
    "check_dropout",
    "check_l2_penalty",
]

F64 = torch.float64


def _bn_layer(num_features, momentum, eps, gen):
    layer = torch.nn.BatchNorm1d(num_features, momentum=momentum, eps=eps).double()
    with torch.no_grad():
        layer.weight.copy_(1 + 0.5 * torch.randn(num_features, generator=gen, dtype=F64))
        layer.bias.copy_(torch.randn(num_features, generator=gen, dtype=F64))
    return layer


# ---------------------------------------------------------------------- 1. forward
def check_batchnorm_forward(batchnorm_forward) -> None:
    """Five training steps and one evaluation batch against ``nn.BatchNorm1d``, to 1e-10."""
    with exercise("batchnorm_forward"), check_group("batchnorm_forward vs PyTorch"):
        gen = generator(901)
        for N, D, momentum in [(16, 5, 0.1), (4, 3, 0.3)]:
            layer = _bn_layer(D, momentum, 1e-5, gen)
            gamma, beta = layer.weight.detach().clone(), layer.bias.detach().clone()
            rm, rv = torch.zeros(D, dtype=F64), torch.ones(D, dtype=F64)
            layer.train()
            for step in range(5):
                x = 2 + 3 * torch.randn(N, D, generator=gen, dtype=F64)
                out = call(
                    "batchnorm_forward (training)", batchnorm_forward, x, gamma, beta, rm, rv,
                    True, momentum, 1e-5,
                )
                require(
                    isinstance(out, tuple) and len(out) == 3,
                    "batchnorm_forward",
                    f"returned {type(out).__name__}",
                    "return the tuple (y, new_running_mean, new_running_var)",
                )
                y, rm_new, rv_new = out
                require_tensor("batchnorm_forward: y", y)
                ref = layer(x)
                if step == 0:
                    check_close(
                        f"training-mode output, batch {N}x{D}", y, ref, atol=1e-10,
                        hint="normalize with the batch mean and the *biased* batch variance "
                        "(mean over the batch, dim=0), add eps inside the square root, then "
                        "scale by gamma and shift by beta",
                    )
                else:
                    check_close(f"training-mode output, step {step + 1}", y, ref, atol=1e-10)
                check_close(
                    f"running mean after step {step + 1} (momentum {momentum})",
                    rm_new, layer.running_mean, atol=1e-10,
                    hint="PyTorch's momentum is the weight of the NEW batch: "
                    "running = (1 - momentum) * running + momentum * batch_mean",
                )
                check_close(
                    f"running variance after step {step + 1} (batch of {N})",
                    rv_new, layer.running_var, atol=1e-10,
                    hint="the running variance averages the UNBIASED batch variance "
                    "(divide by N - 1, i.e. multiply the biased one by N / (N - 1)); the "
                    "normalization itself uses the biased one",
                )
                rm, rv = rm_new, rv_new
            layer.eval()
            x = 2 + 3 * torch.randn(N, D, generator=gen, dtype=F64)
            y, rm_eval, rv_eval = call(
                "batchnorm_forward (evaluation)", batchnorm_forward, x, gamma, beta, rm, rv,
                False, momentum, 1e-5,
            )
            check_close(
                f"evaluation-mode output, batch {N}x{D}", y, layer(x), atol=1e-10,
                hint="in evaluation mode normalize with the running mean and running variance, "
                "not with the batch's statistics",
            )
            check_close(
                "evaluation mode leaves the running statistics alone",
                torch.cat([rm_eval, rv_eval]), torch.cat([rm, rv]), atol=0,
                hint="return the running statistics unchanged when training is False",
            )


# --------------------------------------------------------------------- 2. backward
def check_batchnorm_backward(batchnorm_backward) -> None:
    """Training-mode gradients (dx, dgamma, dbeta) against autograd, to 1e-10."""
    with exercise("batchnorm_backward"), check_group("batchnorm_backward vs PyTorch"):
        gen = generator(902)
        for N, D in [(8, 4), (32, 6)]:
            x = (1 + 2 * torch.randn(N, D, generator=gen, dtype=F64)).requires_grad_(True)
            gamma = (1 + 0.5 * torch.randn(D, generator=gen, dtype=F64)).requires_grad_(True)
            beta = torch.randn(D, generator=gen, dtype=F64).requires_grad_(True)
            dy = torch.randn(N, D, generator=gen, dtype=F64)
            y = torch.nn.functional.batch_norm(
                x, None, None, gamma, beta, training=True, momentum=0.1, eps=1e-5
            )
            ref_dx, ref_dgamma, ref_dbeta = torch.autograd.grad(y, (x, gamma, beta), dy)
            out = call(
                "batchnorm_backward", batchnorm_backward, dy, x.detach(), gamma.detach(), 1e-5
            )
            require(
                isinstance(out, tuple) and len(out) == 3,
                "batchnorm_backward",
                f"returned {type(out).__name__}",
                "return the tuple (dx, dgamma, dbeta)",
            )
            dx, dgamma, dbeta = out
            check_close(
                f"dbeta, batch {N}x{D}", dbeta, ref_dbeta, atol=1e-10,
                hint="dbeta is the sum of dy over the batch (dim=0)",
            )
            check_close(
                f"dgamma, batch {N}x{D}", dgamma, ref_dgamma, atol=1e-10,
                hint="dgamma is the sum over the batch of dy * x_hat, with x_hat the normalized input",
            )
            naive = dy * gamma.detach() / torch.sqrt(x.detach().var(0, unbiased=False) + 1e-5)
            hint = "the gradient also flows through the batch mean and the batch variance"
            if torch.allclose(dx, naive, atol=1e-8):
                hint = ("you treated the mean and the variance as constants (dx = dy * gamma / "
                        "sqrt(var + eps)); " + hint)
            else:
                dxhat = dy * gamma.detach()
                s = torch.sqrt(x.detach().var(0, unbiased=False) + 1e-5)
                no_var = (dxhat - dxhat.mean(0)) / s
                xhat = (x.detach() - x.detach().mean(0)) / s
                no_mean = (dxhat - xhat * (dxhat * xhat).mean(0)) / s
                if torch.allclose(dx, no_var, atol=1e-8):
                    hint = ("the term through the batch variance is missing: subtract "
                            "x_hat * mean(dx_hat * x_hat) as well")
                elif torch.allclose(dx, no_mean, atol=1e-8):
                    hint = "the term through the batch mean is missing: subtract mean(dx_hat) as well"
            check_close(f"dx, batch {N}x{D}", dx, ref_dx, atol=1e-10, hint=hint)
        check_close(
            "dx sums to zero over the batch, for every unit", dx.sum(0), torch.zeros(D, dtype=F64),
            atol=1e-10,
        )


# ---------------------------------------------------------------------- 3. dropout
def check_dropout(dropout) -> None:
    """Evaluation = identity; training: values 0 or x/(1-p), share of zeros p (5 SE), the mask
    drawn from ``generator`` (same seed, same mask; new seed, new mask); p = 0 and p = 1."""
    with exercise("dropout"), check_group("dropout vs PyTorch"):
        gen = generator(903)
        x = 1 + torch.rand(2000, 50, generator=gen, dtype=F64)  # entries in [1, 2]: never 0
        for p in (0.2, 0.5):
            y = call("dropout (evaluation)", dropout, x, p, False, generator(1))
            require_tensor("dropout", y)
            check_close(
                f"evaluation mode, p = {p}: the identity", y, x, atol=0,
                hint="inverted dropout does nothing at test time: all the scaling happens in "
                "training (the notes' version multiplies by the keep probability at test time; "
                "nn.Dropout does not)",
            )
            y = call("dropout (training)", dropout, x, p, True, generator(2))
            require_tensor("dropout", y)
            kept = y != 0
            scale_ok = torch.allclose(y[kept], x[kept] / (1 - p), atol=1e-12)
            unscaled = torch.allclose(y[kept], x[kept], atol=1e-12)
            check_true(
                f"training mode, p = {p}: kept values are x / (1 - p)",
                scale_ok,
                "" if scale_ok else
                ("kept values equal x (no scaling)" if unscaled else "kept values are not x / (1 - p)"),
                hint="scale the kept values by 1 / (1 - p) during training, so that the expected "
                "output equals x and the test-time output needs no change",
            )
            rate = 1 - kept.double().mean().item()
            se = math.sqrt(p * (1 - p) / x.numel())
            check_true(
                f"training mode, p = {p}: share of zeros {rate:.4f}",
                abs(rate - p) < 5 * se,
                f"expected {p} ± {5 * se:.4f}",
                hint="p is the probability of DROPPING a unit (nn.Dropout's convention): keep "
                "each entry with probability 1 - p",
            )
            y2 = call("dropout (training)", dropout, x, p, True, generator(3))
            check_true(
                f"training mode, p = {p}: a fresh mask for a fresh generator",
                not torch.equal(y2 != 0, kept),
                hint="draw the mask from the `generator` argument (e.g. torch.rand(..., generator=generator))",
            )
            y3 = call("dropout (training)", dropout, x, p, True, generator(2))
            check_true(
                f"training mode, p = {p}: the same mask for the same seed",
                torch.equal(y3 != 0, kept),
                hint="draw the mask from the `generator` argument, not from torch's global random "
                "state (e.g. torch.rand(x.shape, generator=generator, dtype=x.dtype))",
            )
        y = call("dropout (training)", dropout, x, 0.0, True, generator(4))
        check_close("training mode, p = 0: the identity", y, x, atol=0)
        y = call("dropout (training)", dropout, x, 1.0, True, generator(5))
        require_tensor("dropout", y)
        check_true(
            "training mode, p = 1: all zeros, as nn.Dropout(1.0)",
            torch.equal(y, torch.zeros_like(x)),
            "" if torch.equal(y, torch.zeros_like(x)) else
            ("the output contains NaN" if torch.isnan(y).any() else "the output is not all zeros"),
            hint="with p = 1 every entry is dropped and 1 / (1 - p) is undefined: return zeros "
            "(torch.zeros_like(x)) for p == 1",
        )


# ------------------------------------------------------------------ 4. L2 penalty
def check_l2_penalty(l2_penalty) -> None:
    """lam / 2 * |weight|^2 (bias excluded), and its gradient lam * weight via autograd."""
    with exercise("l2_penalty"), check_group("l2_penalty vs PyTorch"):
        gen = generator(904)
        w = torch.randn(3, 4, generator=gen, dtype=F64, requires_grad=True)
        b = torch.randn(3, generator=gen, dtype=F64, requires_grad=True)
        lam = 0.3
        value = call("l2_penalty", l2_penalty, {"weight": w, "bias": b}, lam)
        require_tensor("l2_penalty", value)
        bias_too = lam / 2 * ((w**2).sum() + (b**2).sum())
        check_close(
            "l2_penalty value", value, lam / 2 * (w.detach() ** 2).sum(), atol=1e-12,
            hint="the penalty is not applied to the bias" if torch.isclose(value.detach(), bias_too.detach())
            else "lam / 2 times the sum of the squared entries of params['weight']",
        )
        gw, gb = torch.autograd.grad(value, (w, b), allow_unused=True)
        check_close("gradient of the penalty = lam * weight", gw, lam * w.detach(), atol=1e-12)
        check_close(
            "gradient of the penalty w.r.t. the bias = 0",
            torch.zeros_like(b) if gb is None else gb, torch.zeros_like(b), atol=0,
            hint="the penalty is not applied to the bias",
        )


# ------------------------------------------------------------ 5. Adam vs AdamW
def _adam_bench(seed):
    gen = generator(seed)
    X = torch.randn(40, 3, generator=gen, dtype=F64)
    y = X @ torch.tensor([2.0, -1.0, 0.5], dtype=F64) + 3 + 0.1 * torch.randn(40, generator=gen, dtype=F64)
    return X, y


def _grads(w, b, X, y):
    w = w.detach().requires_grad_(True)
    b = b.detach().requires_grad_(True)
    loss = ((X @ w + b - y) ** 2).mean()
    gw, gb = torch.autograd.grad(loss, (w, b))
    return {"weight": gw, "bias": gb}


def check_adam_update(adam_update) -> None:
    """50 steps of Adam + L2 and of AdamW against torch.optim, weight decay on the weight only."""
    with exercise("adam_update"), check_group("adam_update vs PyTorch"):
        X, y = _adam_bench(905)
        for decoupled, lr, lam in [(False, 0.05, 0.5), (True, 0.05, 0.5)]:
            name = "AdamW (decoupled)" if decoupled else "Adam + L2"
            w_ref = torch.zeros(3, dtype=F64, requires_grad=True)
            b_ref = torch.zeros(1, dtype=F64, requires_grad=True)
            cls = torch.optim.AdamW if decoupled else torch.optim.Adam
            opt = cls([{"params": [w_ref], "weight_decay": lam},
                       {"params": [b_ref], "weight_decay": 0.0}], lr=lr)
            params = {"weight": torch.zeros(3, dtype=F64), "bias": torch.zeros(1, dtype=F64)}
            state: dict = {}
            for step in range(50):
                grads = _grads(params["weight"], params["bias"], X, y)
                new = call(name, adam_update, params, grads, state, lr, lam, decoupled,
                           (0.9, 0.999), 1e-8)
                require(
                    isinstance(new, dict) and set(new) >= {"weight", "bias"},
                    name, f"returned {type(new).__name__}",
                    "return a dict with the new 'weight' and 'bias'",
                )
                opt.zero_grad()
                ((X @ w_ref + b_ref - y) ** 2).mean().backward()
                opt.step()
                params = {k: v.detach() for k, v in new.items()}
                if step in (0, 49):
                    check_close(
                        f"{name}: bias after step {step + 1}", params["bias"], b_ref.detach(),
                        atol=1e-10,
                        hint="weight decay is applied to params['weight'] only, never to the bias",
                    )
                    check_close(
                        f"{name}: weight after step {step + 1}", params["weight"], w_ref.detach(),
                        atol=1e-10,
                        hint=("decoupled: shrink the weight by lr * weight_decay * weight "
                              "outside Adam's rescaling (AdamW)") if decoupled else
                        ("L2: add weight_decay * weight to the gradient before the moving "
                         "averages (torch.optim.Adam's weight_decay)"),
                    )
