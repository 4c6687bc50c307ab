"""Lecture 7a: the from-scratch initializers, activation functions and preprocessing experiments
against torch.nn.init, torch.nn.functional and autograd."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nbdefs import definitions

nb = definitions("07a_initialization")

SHAPES = [(300, 3000), (3000, 300), (64, 32, 3, 3), (7, 5)]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("shape", SHAPES)
def test_fans_match_torch(shape):
    assert nb.compute_fans(shape) == nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


def test_fans_reject_vectors():
    with pytest.raises(ValueError):
        nb.compute_fans((10,))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("nonlinearity", ["linear", "tanh", "relu", "sigmoid"])
def test_xavier_std_formula_matches_torch_gain_and_fans(shape, nonlinearity):
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    gain = nn.init.calculate_gain(nonlinearity)
    expected = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    assert nb.xavier_std(*nb.compute_fans(shape), gain) == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("slope", [0.0, 0.01, 0.3])
@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_kaiming_std_formula_matches_torch_gain_and_fans(shape, slope, mode):
    w = torch.empty(shape)
    expected = nn.init.calculate_gain("leaky_relu", slope) / math.sqrt(
        nn.init._calculate_correct_fan(w, mode)
    )
    fan_in, fan_out = nb.compute_fans(shape)
    ours = nb.kaiming_std(fan_in if mode == "fan_in" else fan_out, slope)
    assert ours == pytest.approx(expected, rel=1e-14)


def test_notes_kaiming_is_sqrt2_too_large_and_lecun_is_square_xavier():
    for n in (10, 256, 1000, 4096):
        assert nb.notes_kaiming_std(n) / nb.kaiming_std(n) == pytest.approx(math.sqrt(2))
        assert nb.lecun_std(n) == pytest.approx(nb.xavier_std(n, n))


def test_same_seed_gives_torchs_exact_draws():
    shape = (123, 456)
    ours = nb.xavier_normal(shape, gain=1.7, generator=gen(11))
    theirs = nn.init.xavier_normal_(torch.empty(shape), gain=1.7, generator=gen(11))
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0)
    ours = nb.kaiming_normal(shape, negative_slope=0.1, mode="fan_out", generator=gen(12))
    theirs = nn.init.kaiming_normal_(
        torch.empty(shape), a=0.1, mode="fan_out", nonlinearity="leaky_relu", generator=gen(12)
    )
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0)


# Non-square on purpose: fan_in = 5000, fan_out = 200, so swapping the fans changes the std 5x,
# and the notes' 2/sqrt(n) is off by sqrt(2); sampling error on 10^6 entries is ~0.07%.
LARGE = (200, 5000)


def test_xavier_normal_std_matches_torch_on_large_matrix():
    ours = nb.xavier_normal(LARGE, gain=5 / 3, generator=gen(1))
    theirs = nn.init.xavier_normal_(torch.empty(LARGE), gain=5 / 3, generator=gen(2))
    assert ours.shape == LARGE and ours.dtype == torch.float32
    assert abs(ours.mean().item()) < 1e-3 * theirs.std().item() * 10
    assert ours.std().item() == pytest.approx(theirs.std().item(), rel=0.01)


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_kaiming_normal_std_matches_torch_on_large_matrix(mode):
    ours = nb.kaiming_normal(LARGE, mode=mode, generator=gen(3))
    theirs = nn.init.kaiming_normal_(
        torch.empty(LARGE), mode=mode, nonlinearity="relu", generator=gen(4)
    )
    assert ours.std().item() == pytest.approx(theirs.std().item(), rel=0.01)
    assert ours.std().item() == pytest.approx(
        math.sqrt(2 / (5000 if mode == "fan_in" else 200)), rel=0.01
    )


def test_kaiming_normal_float64():
    w = nb.kaiming_normal((400, 400), generator=gen(5), dtype=torch.float64)
    assert w.dtype == torch.float64
    assert w.std().item() == pytest.approx(math.sqrt(2 / 400), rel=0.02)


def test_forward_activations_matches_sequential():
    torch.manual_seed(0)
    x = torch.randn(6, 40)
    weights = nb.make_weights(3, 40, 0.2, generator=gen(6))
    assert len(weights) == 3 and weights[0].shape == (40, 40)
    net = nn.Sequential(*[m for W in weights for m in (nn.Linear(40, 40, bias=False), nn.Tanh())])
    with torch.no_grad():
        for layer, W in zip(net[::2], weights):
            layer.weight.copy_(W)
        acts = nb.forward_activations(x, weights, torch.tanh)
        torch.testing.assert_close(acts[-1], net(x))
        torch.testing.assert_close(acts[0], net[:2](x))


def test_gradient_variances_match_manual_backprop():
    torch.manual_seed(1)
    x, r = torch.randn(5, 30, dtype=torch.float64), torch.randn(5, 30, dtype=torch.float64)
    weights = [torch.randn(30, 30, dtype=torch.float64) / 5 for _ in range(3)]
    act_var, weight_var = nb.gradient_variances(x, weights, torch.relu, r)
    # manual backward pass
    a, zs, acts = x, [], [x]
    for W in weights:
        zs.append(a @ W.T)
        a = torch.relu(zs[-1])
        acts.append(a)
    grad_a = r
    exp_act, exp_w = [None] * 3, [None] * 3
    for l in reversed(range(3)):
        exp_act[l] = grad_a.var().item()
        delta = grad_a * (zs[l] > 0)
        exp_w[l] = (delta.T @ acts[l]).var().item()
        grad_a = delta @ weights[l]
    assert act_var == pytest.approx(exp_act, rel=1e-10)
    assert weight_var == pytest.approx(exp_w, rel=1e-10)
    assert all(not W.requires_grad for W in weights)  # the inputs are left untouched


def _small_problem():
    g = gen(7)
    X = torch.randn(32, 3, generator=g, dtype=torch.float64)
    y = torch.sin(2 * X[:, :1]) + X[:, 1:2] * X[:, 2:3]
    return X, y


def _small_net(value):
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1)).double()
    if value is not None:
        for p in net.parameters():
            nn.init.constant_(p, value)
    return net


def test_constant_init_keeps_hidden_units_identical():
    X, y = _small_problem()
    net = _small_net(-0.4)
    losses = nb.train_full_batch(net, X, y, steps=200, lr=0.1)
    assert len(losses) == 200 and losses[-1] < losses[0]  # it does train ...
    W = net[0].weight.detach()
    assert (W - (-0.4)).abs().max() > 0.05  # ... the weights moved ...
    assert nb.hidden_unit_spread(W) < 1e-12  # ... but the 5 units are still one unit
    assert nb.hidden_unit_spread(net[2].weight.detach().T) < 1e-12


def test_random_init_breaks_symmetry():
    X, y = _small_problem()
    net = _small_net(None)
    nb.train_full_batch(net, X, y, steps=50, lr=0.1)
    assert nb.hidden_unit_spread(net[0].weight.detach()) > 0.1


def test_zero_init_first_layer_never_moves():
    X, y = _small_problem()
    net = _small_net(0.0)
    nb.train_full_batch(net, X, y, steps=50, lr=0.1)
    assert net[0].weight.abs().max().item() == 0.0
    assert net[2].bias.item() == pytest.approx(y.mean().item(), abs=0.05)


def test_hidden_unit_spread():
    W = torch.tensor([[1.0, 2.0], [1.0, 2.5], [0.0, 2.0]])
    assert nb.hidden_unit_spread(W) == pytest.approx(1.0)
    assert nb.hidden_unit_spread(torch.ones(4, 3)) == 0.0


def test_make_mlp_uses_the_given_std():
    model = nb.make_mlp(3, 512, lambda fan_in, fan_out: nb.kaiming_std(fan_in), generator=gen(8))
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [
        (512, 784),
        (512, 512),
        (512, 512),
        (10, 512),
    ]
    for m in linears[:3]:
        assert m.weight.std().item() == pytest.approx(math.sqrt(2 / m.in_features), rel=0.02)
        assert m.bias.abs().max().item() == 0.0
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_make_mlp_default_keeps_pytorch_init():
    model = nb.make_mlp(2, 512)
    w = model[3].weight  # second hidden layer
    assert w.std().item() == pytest.approx(1 / math.sqrt(3 * 512), rel=0.02)


# ----------------------------------------------------------------- activation functions
Z = torch.cat([torch.linspace(-8, -1e-3, 400), torch.linspace(1e-3, 8, 400)]).double()


@pytest.mark.parametrize(
    "ours, prime, reference",
    [
        ("sigmoid", "sigmoid_prime", torch.sigmoid),
        (None, "tanh_prime", torch.tanh),
        ("leaky_relu", "leaky_relu_prime", F.leaky_relu),
        ("elu", "elu_prime", F.elu),
        ("gelu", "gelu_prime", F.gelu),
    ],
)
def test_activation_and_derivative_match_torch_and_autograd(ours, prime, reference):
    z = (Z + 0.01 * torch.randn(Z.shape, generator=gen(20), dtype=torch.float64)).requires_grad_(True)
    out = reference(z)
    (expected_prime,) = torch.autograd.grad(out.sum(), z)
    z = z.detach()
    if ours is not None:
        torch.testing.assert_close(getattr(nb, ours)(z), out.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(getattr(nb, prime)(z), expected_prime, rtol=0, atol=1e-12)


@pytest.mark.parametrize("slope", [0.0, 0.2])
def test_leaky_relu_with_other_slopes(slope):
    z = torch.randn(50, generator=gen(21), dtype=torch.float64)
    torch.testing.assert_close(nb.leaky_relu(z, slope), F.leaky_relu(z, slope))


def test_prelu_grads_match_autograd():
    z = torch.randn(7, 9, generator=gen(22), dtype=torch.float64)
    up = torch.randn(7, 9, generator=gen(23), dtype=torch.float64)
    layer = nn.PReLU(init=0.1).double()
    zz = z.clone().requires_grad_(True)
    (layer(zz) * up).sum().backward()
    dz, da = nb.prelu_grads(z, 0.1, up)
    torch.testing.assert_close(dz, zz.grad)
    torch.testing.assert_close(da, layer.weight.grad[0])


# ------------------------------------------------------------------------ preprocessing
def test_positive_inputs_give_single_sign_gradient_rows():
    X = torch.rand(30, 784, generator=gen(24))
    y = torch.randint(0, 10, (30,), generator=gen(25))
    assert nb.same_sign_share(X, y, n_examples=10) == 1.0
    assert nb.same_sign_share(X - X.mean(0), y, n_examples=10) < 0.05


def test_sgd_path_matches_a_manual_logistic_step():
    X = torch.rand(5, 2, generator=gen(26), dtype=torch.float64)
    y = torch.tensor([0.0, 1, 1, 0, 1], dtype=torch.float64)
    path = nb.sgd_path(X, y, lr=0.3, epochs=1)
    assert path.shape == (6, 2) and torch.equal(path[0], torch.zeros(2, dtype=torch.float64))
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    loss = F.binary_cross_entropy_with_logits(X[0] @ w + b, y[0])
    loss.backward()
    torch.testing.assert_close(path[1], -0.3 * w.grad)
    steps = path.diff(dim=0)
    assert (steps[:, 0] * steps[:, 1] > 0).all()  # positive inputs: both weights move together


# ---------------------------------------------------------------------- MNIST helpers
def test_train_sgd_and_dead_units():
    torch.manual_seed(0)
    model = nb.make_mlp(2, 16, lambda fan_in, fan_out: nb.kaiming_std(fan_in), generator=gen(27))
    X = torch.rand(64, 1, 28, 28, generator=gen(28))
    y = torch.randint(0, 10, (64,), generator=gen(29))
    losses = nb.train_sgd(model, X, y, lr=0.01, epochs=3, seed=0, batch_size=16)
    assert len(losses) == 12 and losses[-1] < losses[0] * 1.5
    assert 0.0 <= nb.accuracy_on(model, X, y) <= 1.0
    with torch.no_grad():
        model[1].bias.fill_(-1e6)  # every unit of the first hidden layer is now dead
    shares = nb.dead_unit_share(model, X)
    assert len(shares) == 2 and shares[0] == 1.0


def test_logistic_mle_matches_scipy_minimize():
    from scipy.optimize import minimize

    X = 0.5 + torch.rand(300, 2, generator=gen(30), dtype=torch.float64)
    logits = 3 * (X[:, 0] - 1) - 2 * (X[:, 1] - 1)
    y = torch.bernoulli(torch.sigmoid(logits), generator=gen(31))
    X1 = torch.cat([X, torch.ones(300, 1, dtype=torch.float64)], dim=1).numpy()
    yn = y.numpy()

    def loss_and_grad(theta):
        t = torch.tensor(theta, requires_grad=True)
        loss = F.binary_cross_entropy_with_logits(torch.from_numpy(X1) @ t, torch.from_numpy(yn))
        loss.backward()
        return loss.item(), t.grad.numpy()

    reference = minimize(loss_and_grad, [0.0, 0.0, 0.0], jac=True, method="BFGS", options={"gtol": 1e-10})
    torch.testing.assert_close(nb.logistic_mle(X, y), torch.from_numpy(reference.x[:2]), rtol=0, atol=1e-5)
