"""A trivial baseline beside every model: logistic regression on downsampled pixels (scikit-learn, seconds).

If the ViT does not beat it on the validation split, the model has not learned what the data
allows (too few epochs, too small an image, a bad learning rate): the train stage says so loudly.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

#: Side of the downsampled image the baseline sees (or the image side, when smaller).
BASELINE_SIDE = 16
#: At most this many training images are used (the fit stays in seconds on large data sets).
BASELINE_MAX_TRAIN = 20_000


@dataclass(frozen=True)
class BaselineResult:
    """Top-1 of the baseline on val and test, and what it was."""

    val_top1: float
    test_top1: float
    description: str


def pixel_features(x: np.ndarray, side: int = BASELINE_SIDE) -> np.ndarray:
    """uint8 [N, H, W, C] -> float32 [N, side*side*C] by block averaging (H a multiple of side, else as is)."""
    n, h, w, c = x.shape
    factor = max(1, h // side)
    if h % factor or w % factor:
        factor = 1
    small = x.reshape(n, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))
    return (small.reshape(n, -1) / 255.0).astype(np.float32)


def fit_baseline(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
                 test: tuple[np.ndarray, np.ndarray], seed: int = 0) -> BaselineResult:
    """Standardised logistic regression (L2, C=1) on `pixel_features`, scored on val and test."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, y_train = train
    if len(y_train) > BASELINE_MAX_TRAIN:
        pick = np.random.default_rng(seed).choice(len(y_train), BASELINE_MAX_TRAIN, replace=False)
        x_train, y_train = x_train[pick], y_train[pick]
    features = pixel_features(x_train)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=500))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(features, y_train)
    side = round((features.shape[1] // x_train.shape[-1]) ** 0.5)
    score = {name: float(model.score(pixel_features(x), y)) for name, (x, y) in (("val", val), ("test", test))}
    return BaselineResult(score["val"], score["test"],
                          f"logistic regression on {side}x{side} "
                          f"block-averaged pixels, {len(y_train)} training images")
