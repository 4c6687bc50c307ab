"""The course's small shared library: data, plots, training plumbing and checks.

Notebooks import what they need from here, e.g.::

    from utils import seed_everything, load_mnist, check_close, plot_losses
"""

from .checks import CheckFailed, check_close, check_group, check_shape, check_true
from .data import (
    DataError,
    DataIntegrityError,
    DataUnavailableError,
    UnknownDatasetError,
    cache_dir,
    fetch,
    load_chinese_names,
    load_english_names,
    load_foreign_names,
    load_mnist,
    load_mnist_split,
    sample_image,
)
from .plots import (
    PALETTE,
    plot_heatmap,
    plot_histograms,
    plot_losses,
    running_mean,
    show_images,
    use_course_style,
)
from .training import (
    accuracy,
    get_device,
    minibatches,
    n_batches,
    predict,
    progress_bar,
    seed_everything,
    train_classifier,
)

use_course_style()

__all__ = [
    "CheckFailed",
    "check_close",
    "check_group",
    "check_shape",
    "check_true",
    "DataError",
    "DataIntegrityError",
    "DataUnavailableError",
    "UnknownDatasetError",
    "cache_dir",
    "fetch",
    "load_chinese_names",
    "load_english_names",
    "load_foreign_names",
    "load_mnist",
    "load_mnist_split",
    "sample_image",
    "PALETTE",
    "plot_heatmap",
    "plot_histograms",
    "plot_losses",
    "running_mean",
    "show_images",
    "use_course_style",
    "get_device",
    "minibatches",
    "n_batches",
    "progress_bar",
    "seed_everything",
    "accuracy",
    "predict",
    "train_classifier",
]
