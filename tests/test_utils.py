"""checks, training plumbing and plots."""

from __future__ import annotations

import random

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import utils  # noqa: E402
from utils import training  # noqa: E402


# ---------------------------------------------------------------------------------- checks
def test_check_close_passes_and_reports_the_error(capsys):
    err = utils.check_close("sum", torch.tensor([1.0, 2.0]), np.array([1.0, 2.0 + 1e-9]))
    assert 0 < err < 2e-9
    assert capsys.readouterr().out.startswith("PASS  sum: max |error| = 1.0e-09")


def test_check_close_fails_loudly(capsys):
    with pytest.raises(utils.CheckFailed, match="max \\|error\\| = 1.00e-03 exceeds"):
        utils.check_close("grad", [1.0, 2.001], [1.0, 2.0], atol=1e-6, hint="check the sign")
    out = capsys.readouterr().out
    assert out.startswith("FAIL  grad") and "hint: check the sign" in out


def test_check_close_refuses_broadcasting_and_nan():
    with pytest.raises(utils.CheckFailed, match="shape"):
        utils.check_close("b", torch.zeros(3, 1), torch.zeros(3))
    with pytest.raises(utils.CheckFailed, match="NaN"):
        utils.check_close("n", [float("nan")], [0.0])
    with pytest.raises(utils.CheckFailed, match="not numeric"):
        utils.check_close("s", "abc", [0.0])


def test_check_close_relative_tolerance():
    utils.check_close("big", [1e6 + 1.0], [1e6], atol=0.0, rtol=1e-5)
    with pytest.raises(utils.CheckFailed):
        utils.check_close("big", [1e6 + 100.0], [1e6], atol=0.0, rtol=1e-5)


def test_check_shape_and_true(capsys):
    utils.check_shape("conv out", torch.zeros(6, 20, 12, 12), (None, 20, 12, 12))
    with pytest.raises(utils.CheckFailed, match=r"shape \(6, 20, 12, 12\), expected \(6, 720\)"):
        utils.check_shape("flat", torch.zeros(6, 20, 12, 12), (6, 720))
    utils.check_true("accuracy", 0.98 > 0.97, "98 % > 97 %")
    with pytest.raises(utils.CheckFailed, match="too low"):
        utils.check_true("accuracy", False, "too low")
    assert "PASS  accuracy: 98 % > 97 %" in capsys.readouterr().out


# -------------------------------------------------------------------------------- training
def test_seed_everything_makes_runs_repeatable():
    def draw(seed):
        g = utils.seed_everything(seed)
        return (
            random.random(),
            np.random.rand(),
            torch.rand(1).item(),
            torch.randperm(5, generator=g).tolist(),
        )

    assert draw(123) == draw(123)
    assert all(a != b for a, b in zip(draw(123), draw(124)))


def test_get_device_prints_its_choice(capsys):
    device = utils.get_device()
    assert device.type in ("cpu", "cuda", "mps")
    assert f"Using device: {device.type}" in capsys.readouterr().out


def test_minibatches_cover_the_data_once_per_epoch():
    X, y = torch.arange(10).float().unsqueeze(1), torch.arange(10)
    batches = list(
        utils.minibatches(X, y, batch_size=4, generator=torch.Generator().manual_seed(0))
    )
    assert [len(b[1]) for b in batches] == [4, 4, 2] == [4, 4, 10 - 8]
    assert len(batches) == utils.n_batches(10, 4) == 3
    seen = torch.cat([b[1] for b in batches])
    assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))
    for xb, yb in batches:  # rows stay aligned
        assert torch.equal(xb.squeeze(1).long(), yb)
    ordered = torch.cat([b[1] for b in utils.minibatches(X, y, batch_size=3, shuffle=False)])
    assert ordered.tolist() == list(range(10))
    with pytest.raises(ValueError, match="same length"):
        next(utils.minibatches(X, y[:5], batch_size=2))


@pytest.mark.parametrize(("n", "m", "expected"), [(10_000, 200, 50), (10_001, 200, 51), (5, 10, 1)])
def test_n_batches(n, m, expected):
    assert utils.n_batches(n, m) == expected


def test_plain_progress_prints_one_line(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_PLAIN_PROGRESS", "1")
    bar = utils.progress_bar(range(50), desc="epochs")
    for _ in bar:
        bar.set_postfix(loss=0.5)
    out = capsys.readouterr()
    assert out.out.count("\n") == 1 and "\r" not in out.out
    assert out.out.startswith("epochs: 100%") and "50/50" in out.out and "loss=0.5" in out.out
    assert out.err == ""


def test_interactive_progress_is_a_text_bar_not_a_widget(monkeypatch, capsys):
    monkeypatch.delenv("COURSE_PLAIN_PROGRESS", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    bar = utils.progress_bar(range(3), desc="live")
    assert type(bar).__module__ == "tqdm.std"  # never tqdm.notebook's widget
    list(bar)
    assert "live: 100%" in capsys.readouterr().out
    monkeypatch.setenv("CI", "true")
    assert isinstance(utils.progress_bar(range(3)), training._PlainBar)


def test_train_classifier_learns_a_separable_problem(monkeypatch):
    monkeypatch.setenv("COURSE_PLAIN_PROGRESS", "1")
    g = utils.seed_everything(0)
    X = torch.randn(400, 2)
    y = (X[:, 0] + X[:, 1] > 0).long()
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = utils.train_classifier(model, opt, X, y, epochs=5, batch_size=50, generator=g)
    assert len(losses) == 5 * 8
    assert np.mean(losses[-8:]) < 0.5 * np.mean(losses[:8])
    assert utils.accuracy(model, X, y) > 0.95
    assert utils.predict(model, X, batch_size=64).shape == (400, 2)
    assert model.training  # predict() restores the mode


# ----------------------------------------------------------------------------------- plots
def test_plots_draw_what_they_are_given():
    ax = utils.plot_losses({"SGD": [3, 2, 1], "Adam": torch.tensor([3.0, 1.0, 0.5])}, logy=True)
    assert [line.get_label() for line in ax.get_lines()] == ["SGD", "Adam"]
    assert ax.get_yscale() == "log"
    fig = utils.show_images(torch.rand(10, 1, 28, 28), labels=list(range(10)), ncols=5)
    assert len(fig.axes) == 10 and fig.axes[3].get_title() == "3"
    fig = utils.plot_histograms({"layer 1": np.random.randn(100), "layer 2": np.random.randn(100)})
    assert [a.get_title() for a in fig.axes] == ["layer 1", "layer 2"]
    ax = utils.plot_heatmap(np.eye(3), xticklabels=list("abc"), yticklabels=list("xyz"), annot=True)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]


def test_tile_images_and_image_rows_place_every_image():
    from utils.plots import image_rows, tile_images

    images = torch.arange(5 * 6, dtype=torch.float32).view(5, 6) / 30  # five 2×3 "images"
    canvas = tile_images(images, 2, shape=(2, 3), fill=-1.0)
    assert canvas.shape == (3 * 2, 2 * 3)
    np.testing.assert_allclose(canvas[2:4, 3:6], images[3].view(2, 3).numpy())  # row 1, column 1
    np.testing.assert_allclose(canvas[4:6, 3:6], -1.0)  # the empty sixth cell
    fig = image_rows({"a": torch.rand(4, 784), "b": torch.rand(2, 28, 28)})
    assert len(fig.axes) == 8 and fig.axes[0].get_title(loc="left") == "a"
    assert fig.axes[4].get_title(loc="left") == "b"
    assert not fig.axes[6].images  # row "b" has 2 of the 4 images
    plt.close(fig)


def test_running_mean_is_a_trailing_window_of_the_same_length():
    values = np.array([4.0, 2.0, 6.0, 0.0, 8.0])
    expected = [4.0, 3.0, 4.0, 8 / 3, 14 / 3]  # windows of 3, shorter at the start
    np.testing.assert_allclose(utils.running_mean(values, 3), expected)
    np.testing.assert_allclose(utils.running_mean(torch.tensor(values), 1), values)
    noisy = np.random.default_rng(0).normal(size=10_000)
    assert utils.running_mean(noisy, 100)[100:].std() < 0.2 * noisy.std()
    with pytest.raises(ValueError, match="window"):
        utils.running_mean(values, 0)


def test_plot_losses_smooth_draws_the_running_mean():
    ax = utils.plot_losses({"noisy": [0.0, 2.0, 0.0, 2.0]}, smooth=2)
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [0.0, 1.0, 1.0, 1.0])
    plt.close("all")


def test_course_style_is_colour_blind_safe_and_opaque():
    utils.use_course_style()
    cycle = [c["color"] for c in matplotlib.rcParams["axes.prop_cycle"]]
    assert cycle[:3] == utils.PALETTE[:3] == ["#0072B2", "#E69F00", "#009E73"]
    assert matplotlib.rcParams["figure.facecolor"] == "white"


# ------------------------------------------------------------- noise, groups, results
def test_paired_comparison_matches_hand_computation():
    import numpy as np
    from scipy.stats import binomtest

    from utils.stats import paired_comparison

    rng = np.random.default_rng(0)
    a = rng.random(2000) < 0.9
    b = rng.random(2000) < 0.88
    r = paired_comparison(a, b)
    d = a.astype(float) - b.astype(float)
    assert abs(r.diff - d.mean()) < 1e-12
    assert abs(r.se_diff - d.std(ddof=1) / np.sqrt(2000)) < 1e-12
    n01, n10 = int((a & ~b).sum()), int((~a & b).sum())
    assert (r.only_a, r.only_b) == (n01, n10)
    assert abs(r.p_mcnemar - binomtest(n01, n01 + n10, 0.5).pvalue) < 1e-12
    # identical classifiers: a tie with p = 1
    same = paired_comparison(a, a)
    assert same.p_mcnemar == 1.0 and not same.significant and "tie" in str(same)
    # a clearly better classifier is flagged
    better = paired_comparison(np.ones(500, bool), rng.random(500) < 0.8)
    assert better.significant and "real difference" in str(better)


def test_mean_spread():
    from utils.stats import mean_spread

    s = mean_spread([0.9, 0.92, 0.94])
    assert abs(s.mean - 0.92) < 1e-12 and abs(s.sd - 0.02) < 1e-12
    assert "3 seeds" in str(s) and "0.9000–0.9400" in str(s)


def test_check_group_prints_one_line_and_still_fails(capsys):
    import pytest

    from utils.checks import CheckFailed, check_close, check_group, check_true

    with check_group("two things"):
        check_close("a", 1.0, 1.0 + 1e-9)
        check_true("b", True)
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["PASS  two things: 2 checks, max |error| = 1.0e-09"]
    with pytest.raises(CheckFailed):
        with check_group("broken"):
            check_close("c", 1.0, 2.0, hint="look here")
    out = capsys.readouterr().out
    assert "FAIL  c" in out and "look here" in out and "PASS  broken" not in out


def test_report_results_round_trip(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    from utils.results import read_results

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from utils.results import report_results\n"
            "report_results('99', [{'quantity': 'accuracy', 'validation': 0.91234, "
            "'test': 0.9, 'note': '3 seeds'}, {'quantity': 'loss', 'validation': 1.5}])"
        )
    ]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    rows = read_results(path)
    assert [r["quantity"] for r in rows] == ["accuracy", "loss"]
    assert rows[0]["validation"] == 0.91234 and rows[1]["test"] is None
    text = nb.cells[0].outputs[0]["data"]["text/plain"]
    assert "Headline results of lecture 99" in text and "0.9123" in text


def test_chinese_characters_render_without_missing_glyphs(tmp_path):
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import utils  # noqa: F401  (registers the course style and its CJK font)

    fig, ax = plt.subplots(figsize=(4, 2))
    ax.set_xticks([0, 1, 2], ["李清照", "丁尼生", "张伟"])
    ax.set_title("反向传播 (backpropagation) · 批归一化 · ŷ = σ(z)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.savefig(tmp_path / "cjk.png")
    plt.close(fig)
    missing = [str(w.message) for w in caught if "missing from font" in str(w.message)]
    assert not missing, missing[:3]


def test_cjk_font_covers_every_character_of_the_names_data():
    from fontTools.ttLib import TTFont

    from utils import load_chinese_names, load_foreign_names
    from utils.plots import CJK_FONT_FILE

    cmap = TTFont(CJK_FONT_FILE).getBestCmap()
    names = list(load_chinese_names()["姓名"]) + load_foreign_names()
    chars = {c for name in names for c in str(name)}
    uncovered = sorted(c for c in chars if ord(c) not in cmap and not c.isascii())
    assert not uncovered, uncovered[:20]
    assert len(chars) > 2000  # the data really are thousands of distinct characters


def test_compare_seeds_uses_student_t():
    from scipy.stats import ttest_rel

    from utils.stats import compare_seeds

    a, b = [0.4351, 0.4434, 0.4420], [0.4295, 0.4404, 0.4296]
    r = compare_seeds(a, b)
    assert abs(r.p_value - ttest_rel(a, b).pvalue) < 1e-12
    assert abs(r.mean - (sum(a) - sum(b)) / 3) < 1e-12
    # 2.5 standard errors with 3 seeds is not significant under t with 2 df
    assert 2 < r.mean / r.se < 4.3 and not r.significant and "tie" in str(r)
    big = compare_seeds([0.93, 0.94, 0.935], [0.91, 0.92, 0.916])
    assert big.significant and "real difference" in str(big)


def test_draw_unrolled_rnn_draws_one_box_per_input_state_and_output():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    from utils.plots import draw_unrolled_rnn

    for n_in, n_out, aligned, states in [(1, 4, False, 4), (3, 1, False, 3), (4, 4, True, 4),
                                         (3, 3, False, 6)]:
        fig, ax = plt.subplots()
        draw_unrolled_rnn(ax, n_in, n_out, aligned=aligned)
        boxes = [p for p in ax.patches if isinstance(p, FancyBboxPatch)]
        arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
        assert len(boxes) == n_in + states + n_out
        assert len(arrows) == (states - 1) + n_in + n_out
        plt.close(fig)
