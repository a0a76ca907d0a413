"""The pixel baseline and the mirror test that decides the default augmentation, on real data
(scikit-learn's handwritten digits, 8x8): a mirrored '2' is not a '2', a mirrored camera scene is."""

from __future__ import annotations

import numpy as np
import pytest

from edge.training.baseline import MIRROR_TOLERANCE, check_mirroring, fit_baseline


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    raw = load_digits()
    return (raw.images * 255 / 16).astype(np.uint8)[..., None], raw.target.astype(np.int64)


def _split(x: np.ndarray, y: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    return (x[:1200], y[:1200]), (x[1200:1500], y[1200:1500]), (x[1500:], y[1500:])


def test_the_baseline_reads_digits_well(digits):
    base = fit_baseline(*_split(*digits))
    assert base.val_top1 > 0.9 and base.test_top1 > 0.85  # the last writers are harder
    assert base.description == "logistic regression on 8x8 block-averaged pixels, 1200 training images"


def test_mirroring_is_switched_off_for_digits(digits):
    train, val, _ = _split(*digits)
    check = check_mirroring(train, val)
    assert not check.keeps_labels
    assert check.val_top1 - check.mirrored_val_top1 > 0.03  # mirror images teach wrong digits
    assert check.describe().startswith("mirroring off (train.hflip null, decided from the data)")


def test_mirroring_stays_on_when_the_data_does_not_care(digits):
    x, y = digits
    flip = np.random.default_rng(0).random(len(y)) < 0.5  # every class is seen both ways already
    x = np.where(flip[:, None, None, None], x[:, :, ::-1], x)
    train, val, _ = _split(x, y)
    check = check_mirroring(train, val)
    assert check.keeps_labels and check.tolerance >= MIRROR_TOLERANCE
    assert check.describe().startswith("mirroring on")
