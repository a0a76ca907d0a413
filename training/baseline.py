"""A trivial baseline beside every model: logistic regression on downsampled pixels (scikit-learn, seconds).

If the ViT does not beat it on the validation split, the model has not learned what the data
allows (too few epochs, too small an image, a bad learning rate): the train stage says so loudly.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Side of the downsampled image the baseline sees (or the image side, when smaller).
BASELINE_SIDE = 16
#: At most this many training images are used (the fit stays in seconds on large data sets).
BASELINE_MAX_TRAIN = 20_000


#: The mirror test uses at most this many training images (and as many mirrored copies).
MIRROR_MAX_TRAIN = 2_000
#: Mirroring counts as harmful when it costs the baseline more than this much val top-1 (or two
#: standard errors of the val accuracy, if larger).
MIRROR_TOLERANCE = 0.01


@dataclass(frozen=True)
class BaselineResult:
    """Top-1 of the baseline on val and test, and what it was."""

    val_top1: float
    test_top1: float
    description: str


@dataclass(frozen=True)
class MirrorCheck:
    """Does left-right mirroring keep the labels? The pixel baseline fitted on the training images alone
    and on the images plus their mirror images, both scored on val: a mirror image of a '2' teaches a
    wrong '2', and the second baseline loses val accuracy; a mirrored camera scene teaches nothing wrong."""

    val_top1: float
    mirrored_val_top1: float
    tolerance: float

    @property
    def keeps_labels(self) -> bool:
        """True unless training on mirror images costs more than the tolerance."""
        return self.mirrored_val_top1 >= self.val_top1 - self.tolerance

    def describe(self) -> str:
        """One line for the run's notes."""
        verdict = "on" if self.keeps_labels else "off"
        return (f"mirroring {verdict} (train.hflip null, decided from the data): the pixel baseline scores val top-1 "
                f"{self.val_top1:.3f} trained on the images and {self.mirrored_val_top1:.3f} trained on them and "
                f"their mirror images (tolerance {self.tolerance:.3f}); set train.hflip to override")


def _pixel_model() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=500))


def _fit(features: np.ndarray, labels: np.ndarray) -> Any:
    from sklearn.exceptions import ConvergenceWarning

    model = _pixel_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(features, labels)
    return model


def _subsample(x: np.ndarray, y: np.ndarray, limit: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if len(y) <= limit:
        return x, y
    pick = np.random.default_rng(seed).choice(len(y), limit, replace=False)
    return x[pick], y[pick]


def check_mirroring(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
                    seed: int = 0) -> MirrorCheck:
    """The mirror test of `MirrorCheck` on up to MIRROR_MAX_TRAIN training images (seconds)."""
    x, y = _subsample(*train, MIRROR_MAX_TRAIN, seed)
    val_features = pixel_features(val[0])
    plain = _fit(pixel_features(x), y).score(val_features, val[1])
    mirrored = _fit(pixel_features(np.concatenate([x, x[:, :, ::-1]])), np.concatenate([y, y]))
    p = float(plain)
    tolerance = max(MIRROR_TOLERANCE, 2 * (p * (1 - p) / max(1, len(val[1]))) ** 0.5)
    return MirrorCheck(p, float(mirrored.score(val_features, val[1])), tolerance)


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
    x_train, y_train = _subsample(*train, BASELINE_MAX_TRAIN, seed)
    features = pixel_features(x_train)
    model = _fit(features, y_train)
    side = round((features.shape[1] // x_train.shape[-1]) ** 0.5)
    score = {name: float(model.score(pixel_features(x), y)) for name, (x, y) in (("val", val), ("test", test))}
    return BaselineResult(score["val"], score["test"],
                          f"logistic regression on {side}x{side} "
                          f"block-averaged pixels, {len(y_train)} training images")
