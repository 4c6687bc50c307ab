"""Lecture 5 (MNIST CNN): the notebook's training loop, mini-batch count, models, feature maps,
augmentation, confusion matrix and digit prediction, on synthetic inputs (no data download needed). The preprocessing of
outside digits lives in utils.digits and is tested in test_digits.py."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from drawn_digits import digit_image
from nbdefs import definitions

nb = definitions("05_mnist_cnn")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ------------------------------------------------------------------------ models
def test_course_cnn_shapes_and_parameters():
    model = nb.CourseCNN()
    x = torch.rand(6, 1, 28, 28)
    h = model.pool1(torch.relu(model.conv1(x)))
    assert h.shape == (6, 20, 6, 6)
    assert model(x).shape == (6, 10)
    assert nb.n_parameters(model) == 20 * 25 + 20 + 720 * 10 + 10 == 7730


def test_course_cnn_returns_logits_not_probabilities():
    # The notebook's model must return logits (cross_entropy applies log-softmax itself).
    out = nb.CourseCNN()(torch.rand(5, 1, 28, 28))
    assert not torch.allclose(out.sum(dim=1), torch.ones(5), atol=1e-3)


def test_improved_cnn_shapes_train_and_eval():
    model = nb.ImprovedCNN()
    x = torch.rand(8, 1, 28, 28)
    assert model(x).shape == (8, 10)
    model.eval()
    with torch.no_grad():
        out = model(x)
        assert out.shape == (8, 10)
        # eval mode uses running statistics: one image gives the same answer alone or in a batch
        torch.testing.assert_close(model(x[:1]), out[:1], atol=1e-5, rtol=1e-5)
    assert nb.ImprovedCNN(c1=8, c2=16)(x).shape == (8, 10)


@pytest.mark.parametrize("name", ["CourseCNN", "ImprovedCNN"])
def test_a_few_training_steps_lower_the_loss(name):
    # Two classes that differ in where the ink is: a vertical vs a horizontal bar, plus noise.
    n = 64
    x = 0.1 * torch.rand(n, 1, 28, 28)
    y = torch.arange(n) % 2
    x[y == 0, :, 4:24, 12:16] += 0.9
    x[y == 1, :, 12:16, 4:24] += 0.9
    model = getattr(nb, name)()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


# ------------------------------------------------------------------ augmentation
def test_shift_images_matches_roll_and_zero_fills():
    x = torch.zeros(5, 1, 28, 28)
    x[:, :, 3:25, 3:25] = torch.rand(5, 1, 22, 22)
    shifts = torch.tensor([[0, 0], [2, -1], [-3, 3], [1, 2], [-2, -2]])
    out = nb.shift_images(x, shifts)
    for k, s in enumerate(shifts.tolist()):
        torch.testing.assert_close(out[k], torch.roll(x[k], tuple(s), dims=(1, 2)), atol=0, rtol=0)
    # a pixel that leaves the frame is gone, and zeros come in (no wrap-around)
    full = torch.ones(1, 2, 4, 4)
    moved = nb.shift_images(full, torch.tensor([[1, -1]]))
    assert moved[0, :, 0, :].sum() == 0 and moved[0, :, :, -1].sum() == 0
    assert moved.sum() == 2 * 9


def test_random_shift_keeps_shape_and_mass():
    x = torch.zeros(10, 1, 28, 28)
    x[:, :, 5:23, 5:23] = torch.rand(10, 1, 18, 18)
    g = torch.Generator().manual_seed(0)
    out = nb.random_shift(x, 2, g)
    assert out.shape == x.shape
    torch.testing.assert_close(out.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))
    assert not torch.equal(out, x)


# ------------------------------------------------------------ mini-batches, conv1
@pytest.mark.parametrize("seed", range(3))
def test_count_minibatches_is_the_ceiling(seed):
    import math

    from utils import n_batches

    rng = np.random.default_rng(seed)
    pairs = [(1, 1), (1, 200), (200, 200), (201, 200), (10_000, 200), (14_690, 128)]
    pairs += [(int(n), int(m)) for n, m in zip(rng.integers(1, 50_000, 200), rng.integers(1, 600, 200))]
    for n, m in pairs:
        k = nb.count_minibatches(n, m)
        assert k == n_batches(n, m) == math.ceil(n / m) == len(range(0, n, m)), (n, m, k)
        assert (k - 1) * m < n <= k * m  # the last batch holds 1 to m observations


@pytest.mark.parametrize("stride, shape", [(2, (28, 28)), (1, (9, 13)), (3, (20, 17))])
def test_feature_map_by_hand_matches_conv2d(stride, shape):
    conv = torch.nn.Conv2d(1, 4, 5, stride=stride)
    x = torch.randn(1, 1, *shape)
    with torch.no_grad():
        expected = torch.relu(conv(x))[0]
        for c in range(4):
            got = nb.feature_map(conv, x, c)
            assert got.shape == expected[c].shape
            torch.testing.assert_close(got, expected[c], atol=1e-5, rtol=1e-5)
    assert (expected > 0).any() and (expected == 0).any()  # both sides of the ReLU were tested


# ------------------------------------------------------------- confusion matrix
def test_confusion_matrix_against_a_loop():
    y_true = torch.randint(0, 10, (500,))
    y_pred = torch.randint(0, 10, (500,))
    expected = np.zeros((10, 10), dtype=np.int64)
    np.add.at(expected, (y_true.numpy(), y_pred.numpy()), 1)
    cm = nb.confusion_matrix(y_true, y_pred)
    np.testing.assert_array_equal(cm.numpy(), expected)
    # rows are the true classes: an asymmetric example catches a transposed matrix
    cm2 = nb.confusion_matrix(torch.tensor([3, 3]), torch.tensor([5, 5]))
    assert cm2[3, 5] == 2 and cm2[5, 3] == 0


def test_worst_mistakes_orders_by_confidence():
    logits = torch.tensor([[5.0, 0, 0], [0, 9.0, 0], [0, 0, 1.0], [2.0, 0, 0]])
    y = torch.tensor([1, 0, 2, 0])  # wrong: 0 (conf high), 1 (conf highest); right: 2, 3
    idx, conf = nb.worst_mistakes(logits, y, k=5)
    assert idx.tolist() == [1, 0]
    assert conf[0] > conf[1]


# ------------------------------------------------------------------ training loop
def _two_bar_data(n=64, seed=0):
    # Two classes that differ in where the ink is: a vertical vs a horizontal bar, plus noise.
    g = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.rand(n, 1, 28, 28, generator=g)
    y = torch.arange(n) % 2
    x[y == 0, :, 4:24, 12:16] += 0.9
    x[y == 1, :, 12:16, 4:24] += 0.9
    return x, y


@pytest.mark.parametrize("make_model", ["logistic_regression", "CourseCNN"])
def test_train_one_epoch_equals_utils_train_classifier(make_model):
    from utils import train_classifier

    x, y = torch.rand(230, 1, 28, 28), torch.randint(0, 10, (230,))  # 230: a short last batch
    ours = getattr(nb, make_model)()
    library = getattr(nb, make_model)()
    library.load_state_dict(ours.state_dict())
    losses = nb.train_one_epoch(ours, torch.optim.Adam(ours.parameters(), lr=1e-2), x, y, 50,
                                torch.Generator().manual_seed(3))
    reference = train_classifier(library, torch.optim.Adam(library.parameters(), lr=1e-2), x, y,
                                 epochs=1, batch_size=50,
                                 generator=torch.Generator().manual_seed(3))
    assert len(losses) == 5 and losses == pytest.approx(reference, abs=0)
    for p, q in zip(ours.parameters(), library.parameters()):
        torch.testing.assert_close(p, q, atol=0, rtol=0)


def test_train_one_epoch_steps_the_scheduler_and_applies_the_transform():
    model = nb.logistic_regression()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    seen = []

    def transform(xb):
        seen.append(len(xb))
        return xb

    x, y = _two_bar_data(70)
    nb.train_one_epoch(model, opt, x, y, 32, scheduler=sched, transform=transform)
    assert seen == [32, 32, 6]
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)


def test_evaluate_matches_cross_entropy_and_accuracy_in_eval_mode():
    from utils import predict

    model = nb.ImprovedCNN()
    model.train()
    x, y = torch.rand(37, 1, 28, 28), torch.randint(0, 10, (37,))
    loss, acc = nb.evaluate(model, x, y, batch_size=10)
    logits = predict(model, x)  # eval mode, no graph
    assert loss == pytest.approx(F.cross_entropy(logits, y).item(), abs=1e-5)
    assert acc == pytest.approx((logits.argmax(1) == y).float().mean().item(), abs=1e-7)
    assert model.training  # the mode is restored
    with torch.no_grad():
        running_mean = model.features[1].running_mean.clone()
    nb.evaluate(model, x, y)
    torch.testing.assert_close(model.features[1].running_mean, running_mean)  # eval: no update


def test_fit_records_one_validation_accuracy_per_epoch_and_learns():
    x, y = _two_bar_data(64)
    xv, yv = _two_bar_data(40, seed=1)
    torch.manual_seed(0)
    model = nb.CourseCNN()
    history = nb.fit(model, torch.optim.Adam(model.parameters(), lr=3e-3), x, y, xv, yv,
                     epochs=4, batch_size=16, generator=torch.Generator().manual_seed(0))
    assert len(history["loss"]) == 16 and len(history["val_acc"]) == 4
    assert history["val_acc"][-1] == 1.0


def test_train_course_cnn_is_reproducible_and_first_epochs_agree():
    x, y = _two_bar_data(60)
    m1, h1 = nb.train_course_cnn(x, y, x, y, epochs=3, seed=4)
    m2, h2 = nb.train_course_cnn(x, y, x, y, epochs=1, seed=4)
    # a shorter run with the same seed is the start of the longer one (constant learning rate)
    assert h1["loss"][: len(h2["loss"])] == h2["loss"]
    assert h1["val_acc"][0] == h2["val_acc"][0]


def test_flat_gradient_matches_autograd_of_the_sum_of_parameters():
    model = nb.logistic_regression().double()
    x, y = torch.rand(20, 1, 28, 28, dtype=torch.float64), torch.randint(0, 10, (20,))
    g = nb.flat_gradient(model, x, y)
    params = list(model.parameters())
    expected = torch.autograd.grad(F.cross_entropy(model(x), y), params)
    torch.testing.assert_close(g, torch.cat([e.flatten() for e in expected]))


def test_conv_without_bias_is_linear():
    conv = torch.nn.Conv2d(1, 4, 5, stride=2)
    x, z = torch.rand(3, 1, 28, 28), torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(nb.conv_without_bias(conv, 2.0 * x - 0.5 * z),
                                   2.0 * nb.conv_without_bias(conv, x)
                                   - 0.5 * nb.conv_without_bias(conv, z), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(nb.conv_without_bias(conv, torch.zeros(1, 1, 28, 28)),
                                   torch.zeros(1, 4, 12, 12))


def test_mistake_labels_format():
    labels = nb.mistake_labels(torch.tensor([1]), torch.tensor([0.876]), torch.tensor([3, 7]),
                               torch.tensor([3, 1]))
    assert labels == ["7→1 (0.88)"]


# ----------------------------------------------------------------- own digit
def test_predict_digit_returns_probabilities(tmp_path):
    path = tmp_path / "seven.png"
    digit_image().save(path)
    x, probs = nb.predict_digit(nb.CourseCNN(), path)
    assert x.shape == (1, 1, 28, 28) and probs.shape == (10,)
    torch.testing.assert_close(probs.sum(), torch.tensor(1.0))
