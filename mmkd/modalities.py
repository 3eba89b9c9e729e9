"""The three views of a window the teachers learn from: Sig, GAF and PI, with a disk cache.

- Sig: the raw signal, z-scored per channel with statistics of the training windows only.
- GAF: the Gramian Angular Summation Field of each channel (pyts), as pyts computes it with
  its default scaling: the series averaged down to the image size, then min-max scaled to
  [-1, 1] per window and channel.
- PI: the persistence image of each channel's 0-dimensional sublevel-set persistence diagram
  (gudhi), on the full-length series min-max scaled to [-1, 1] per window and channel.

`compute_modalities` computes the requested views once and keeps them as float16 ``.npy``
files, memory-mapped read-only on the next call. Importing `pyts.image` costs about 18 s
(numba compiles its kernels), so it happens only where a GAF is actually computed; gudhi
(with scikit-learn, about 1 s) and scipy are imported only where a persistence image is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

MODALITIES = ("sig", "gaf", "pi")

# Part of every cache key (and of `ModalitySettings.key`, which names cached teachers): raise
# it when a modality's computation changes, so that files written by the older code are not
# read back as if they were current.
_CACHE_FORMAT = 2

# Windows per computation chunk are chosen so that one chunk holds about this many image
# pixels; pyts works in float64, so a chunk costs about 8 bytes per pixel at its peak.
_PIXELS_PER_CHUNK = 1 << 24

# Series per batched matrix product in `persistence_images`; bounds the padded point arrays.
_SERIES_PER_PRODUCT = 256


@dataclass(frozen=True)
class ModalitySettings:
    """Image settings of the GAF and PI views; `key` identifies them in cache keys.

    Ranges are normalised to tuples of floats, so settings read from YAML (lists, integers)
    equal, and hash like, the same settings written in Python.
    """

    image_size: int = 32
    pi_spread: float = 0.015
    pi_birth_range: tuple[float, float] = (-1.0, 1.0)
    pi_persistence_range: tuple[float, float] = (0.0, 1.0)
    pi_min_lifetime: float = 0.01

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", int(self.image_size))
        object.__setattr__(self, "pi_spread", float(self.pi_spread))
        object.__setattr__(self, "pi_min_lifetime", float(self.pi_min_lifetime))
        for name in ("pi_birth_range", "pi_persistence_range"):
            low, high = (float(value) for value in getattr(self, name))
            if not low < high:
                raise ValueError(f"{name} must be (low, high) with low < high, got {(low, high)}")
            object.__setattr__(self, name, (low, high))

        if self.image_size < 1:
            raise ValueError(f"image_size must be at least 1, got {self.image_size}")
        if not self.pi_spread > 0:
            raise ValueError(f"pi_spread must be positive, got {self.pi_spread}")
        if not self.pi_persistence_range[1] > 0:
            raise ValueError(
                "pi_persistence_range must end above 0 (it scales the persistence weight), "
                f"got {self.pi_persistence_range}"
            )
        if self.pi_min_lifetime < 0:
            raise ValueError(f"pi_min_lifetime must be >= 0, got {self.pi_min_lifetime}")

    def key(self) -> str:
        """A short hash of all settings, stable across processes and runs.

        It includes the format number of the image computations, so that what is keyed by
        it (cached views, and teachers trained on them) is not reused after they change.
        """
        text = json.dumps({**dataclasses.asdict(self), "format": _CACHE_FORMAT}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def minmax_windows(X: np.ndarray) -> np.ndarray:
    """Scale each (window, channel) series of ``X`` (n, channels, length) to [-1, 1].

    Its minimum goes to -1 and its maximum to 1. A flat series (max - min at most 1e-12
    times the larger of 1 and its largest absolute value) becomes all -1, where pyts and
    scikit-learn's ``MinMaxScaler`` put a constant series. Returns float32.
    """
    return _minmax_scaled(_as_windows(X)).astype(np.float32)


def standardise_signal(X: np.ndarray, train_index: np.ndarray) -> np.ndarray:
    """The Sig view: per-channel z-score with the mean and std of the training windows only.

    The statistics of a channel run over all training windows and time steps (population
    std); a channel whose training std is below 1e-8 is only centred. Returns float32.
    """
    X = _as_windows(X)
    train = X[np.asarray(train_index)]
    if train.shape[0] == 0:
        raise ValueError("train_index selects no windows; the Sig statistics need at least one")

    mean = train.mean(axis=(0, 2), keepdims=True)
    std = train.std(axis=(0, 2), keepdims=True)
    std = np.where(std < 1e-8, 1.0, std)
    return ((X - mean) / std).astype(np.float32)


def gaf_images(X: np.ndarray, image_size: int) -> np.ndarray:
    """Gramian Angular Summation Field of each channel: (n, c, L) -> (n, c, s, s) float32.

    The images of ``pyts.image.GramianAngularField(image_size=s, method="summation",
    sample_range=(-1, 1))`` on the unscaled windows, to float32 rounding. Per series:

    1. Average down to s points (pyts's piecewise aggregate approximation, non-overlapping):
       when s == L the series is used as is; otherwise point j is the mean of samples
       ``[b_j, b_{j+1})`` with ``b = numpy.linspace(0, L, s + 1)`` truncated to integers,
       i.e. about floor(j * L / s). When L is not a multiple of s the segments have unequal
       lengths (floor(L / s) or ceil(L / s) samples), and a boundary that falls exactly on
       an integer can land one sample early through float rounding (L = 30, s = 22 is one
       such case). ``image_size`` must not exceed L: pyts does not upsample.
    2. Min-max scale the s averages to x in [-1, 1], as `minmax_windows` scales a series.
       Averaging first means that every image spans the full range: a short spike that
       dominates the raw window's range is averaged down before the scaling.
    3. Pixel (i, j) is cos(phi_i + phi_j) = x_i x_j - sqrt(1 - x_i^2) sqrt(1 - x_j^2).

    A flat series (step 2) has x = -1 everywhere, so its image is all ones, as pyts gives
    for an exactly constant series. pyts treats only a spread of the averages below
    2.2e-15 as flat; the averages of a constant series such as 123.4 over unequal segments
    differ by rounding error beyond that, and pyts stretches that error to the whole of
    [-1, 1]. Here such a series is flat.

    Steps 1 and 2 are done here, vectorised over all series in float64; step 3 by pyts
    (``sample_range=None``; its own averaging is the identity on s points).
    """
    X = _as_windows(X)
    n_windows, n_channels, length = X.shape
    if not 1 <= image_size <= length:
        raise ValueError(
            f"image_size must be between 1 and the window length {length}, got {image_size}"
        )

    from pyts.image import GramianAngularField

    averages = _piecewise_averages(X.reshape(n_windows * n_channels, length), image_size)
    field = GramianAngularField(image_size=image_size, method="summation", sample_range=None)
    images = field.transform(_minmax_scaled(averages))
    return images.reshape(n_windows, n_channels, image_size, image_size).astype(np.float32)


def h0_diagram(series: np.ndarray) -> np.ndarray:
    """0-dimensional sublevel-set persistence diagram of one 1-D series, computed by gudhi.

    A component is born at a local minimum and dies where it merges with an older one (the
    elder rule). Returns the finite (birth, death) pairs as a (k, 2) float64 array: the
    point of the global minimum, which never dies, is dropped, and pairs of zero lifetime
    are not reported, so a flat or monotone series gives an empty (0, 2) array.
    """
    series = np.asarray(series, dtype=np.float64)
    if series.ndim != 1:
        raise ValueError(f"h0_diagram takes one 1-D series, got shape {series.shape}")
    return _h0_diagrams(series[np.newaxis])[0]


def persistence_images(X_scaled: np.ndarray, settings: ModalitySettings) -> np.ndarray:
    """Persistence image of each channel's H0 diagram: (n, c, L) -> (n, c, s, s) float32.

    Per series: the H0 diagram (`h0_diagram`), points with lifetime death - birth above
    ``settings.pi_min_lifetime``, mapped to (birth, persistence = death - birth) and weighted
    linearly, w = persistence / pi_persistence_range[1]. Each point adds its weight times an
    isotropic Gaussian of std ``pi_spread`` integrated over every pixel (exactly, but for
    tails beyond 8 spreads, below 1e-15). The s x s grid splits ``pi_birth_range``
    (columns, left to right) and ``pi_persistence_range`` (rows; row 0 holds the lowest
    persistence) into s equal bins each.

    Each image is divided by its maximum, so its largest pixel is 1; a series without a
    kept point gives an all-zero image, never NaN. A point outside the ranges still adds
    the tail of its Gaussian that reaches the grid: on [-1, 1] series a persistence can
    reach 2, above the default persistence range.
    """
    X_scaled = _as_windows(X_scaled)
    n_windows, n_channels, length = X_scaled.shape
    size = settings.image_size
    n_series = n_windows * n_channels

    diagrams = _h0_diagrams(X_scaled.reshape(n_series, length))
    points = np.concatenate([np.empty((0, 2)), *diagrams])
    owner = np.repeat(np.arange(n_series), [len(diagram) for diagram in diagrams])
    kept = points[:, 1] - points[:, 0] > settings.pi_min_lifetime
    birth = points[kept, 0]
    persistence = points[kept, 1] - birth
    owner = owner[kept]

    # The Gaussian is separable, so a point's image is the outer product of its mass per
    # persistence bin (rows, weighted) and its mass per birth bin (columns). Points are
    # grouped by series (diagrams were concatenated in order); padding every series of a
    # chunk to the same number of points with zeros turns the per-series sums of outer
    # products into one batched matrix product.
    weight = persistence / settings.pi_persistence_range[1]
    counts = np.bincount(owner, minlength=n_series)
    first_point = np.concatenate([[0], np.cumsum(counts)])
    slot = np.arange(len(owner)) - np.repeat(first_point[:-1], counts)
    images = np.zeros((n_series, size, size), dtype=np.float32)
    for start in range(0, n_series, _SERIES_PER_PRODUCT):
        stop = min(start + _SERIES_PER_PRODUCT, n_series)
        chunk = slice(first_point[start], first_point[stop])
        padded = (owner[chunk] - start, slot[chunk])
        n_slots = int(counts[start:stop].max(initial=0))

        rows = np.zeros((stop - start, n_slots, size), dtype=np.float32)
        rows[padded] = _gaussian_mass_per_bin(
            persistence[chunk], settings.pi_persistence_range, size, settings.pi_spread
        )
        rows[padded] *= weight[chunk, np.newaxis]
        columns = np.zeros((stop - start, n_slots, size), dtype=np.float32)
        columns[padded] = _gaussian_mass_per_bin(
            birth[chunk], settings.pi_birth_range, size, settings.pi_spread
        )
        np.matmul(rows.transpose(0, 2, 1), columns, out=images[start:stop])

    peak = images.max(axis=(1, 2), keepdims=True)
    images /= np.where(peak > 0, peak, 1.0)
    return images.reshape(n_windows, n_channels, size, size)


def compute_modalities(
    X: np.ndarray,
    train_index: np.ndarray,
    settings: ModalitySettings,
    cache_dir: str | os.PathLike,
    modalities: Sequence[str] = MODALITIES,
) -> dict[str, np.ndarray]:
    """Sig, GAF and PI views of ``X`` (n, c, L), computed once and cached on disk.

    Returns ``{"sig": (n, c, L), "gaf": (n, c, s, s), "pi": (n, c, s, s)}`` (only the
    requested keys) as float16 arrays memory-mapped read-only from
    ``{cache_dir}/{modality}-{key}.npy``. The key hashes X (bytes, shape, dtype), the
    modality and what that modality depends on: the training indices for Sig, the image
    size for GAF, all of ``settings`` for PI; so a new PI spread does not recompute the
    GAF. Files are written to a temporary name in ``cache_dir`` and renamed when complete,
    so an interrupted run leaves no partial file. A file that cannot be read back as the
    expected float16 array is recomputed, with a warning.

    Sig values beyond the float16 range (a test window tens of thousands of training stds
    away) are clipped to it, with a warning.
    """
    if isinstance(modalities, str):
        modalities = (modalities,)
    unknown = [name for name in modalities if name not in MODALITIES]
    if unknown:
        raise ValueError(f"unknown modalities {unknown}; choose from {list(MODALITIES)}")
    X = np.asarray(X)
    data_hash = _hash_parts(str(X.dtype).encode(), repr(X.shape).encode(), X)
    X = _as_windows(X)
    train_index = np.asarray(train_index)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)

    n_windows, n_channels, _ = X.shape
    size = settings.image_size
    dependencies = {
        "sig": (train_index.dtype.str.encode(), repr(train_index.shape).encode(), train_index),
        "gaf": (f"image_size={size}".encode(),),
        "pi": (settings.key().encode(),),
    }
    shapes = {"sig": X.shape, "gaf": (n_windows, n_channels, size, size)}
    shapes["pi"] = shapes["gaf"]

    views = {}
    for modality in modalities:
        key = _hash_parts(
            f"{modality}:{_CACHE_FORMAT}:{data_hash}".encode(), *dependencies[modality]
        )[:16]
        path = cache_dir / f"{modality}-{key}.npy"
        cached = _load_cached(path, shapes[modality])
        if cached is not None:
            logger.debug("loaded the %s view from %s", modality, path)
            views[modality] = cached
            continue

        logger.info("computing the %s view of %d windows into %s", modality, n_windows, path)
        if modality == "sig":
            blocks = [_signal_to_float16(standardise_signal(X, train_index))]
        else:
            blocks = _image_blocks(modality, X, settings)
        _write_atomically(path, shapes[modality], blocks)
        views[modality] = np.load(path, mmap_mode="r")
    return views


def _as_windows(X: np.ndarray) -> np.ndarray:
    """``X`` as a float64 array of shape (n, channels, length), or a clear error."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 3:
        raise ValueError(f"expected windows of shape (n, channels, length), got {X.shape}")
    return X


def _minmax_scaled(series: np.ndarray) -> np.ndarray:
    """Each series along the last axis of float64 ``series`` mapped onto [-1, 1], float64.

    x -> x * scale + (-1 - min * scale) with scale = 2 / (max - min): the arithmetic of
    scikit-learn's ``MinMaxScaler``, which pyts uses, so that the same inputs give the same
    values as in pyts; then clipped to [-1, 1], as rounding can leave the range by an ulp.
    A flat series (max - min at most 1e-12 times the larger of 1 and its largest absolute
    value) becomes all -1.
    """
    low = series.min(axis=-1, keepdims=True)
    high = series.max(axis=-1, keepdims=True)
    span = high - low
    flat = span <= 1e-12 * np.maximum(1.0, np.maximum(np.abs(low), np.abs(high)))
    scale = 2.0 / np.where(flat, 1.0, span)
    scaled = np.clip(series * scale + (-1.0 - low * scale), -1.0, 1.0)
    return np.where(flat, -1.0, scaled)


def _piecewise_averages(series: np.ndarray, n_points: int) -> np.ndarray:
    """Rows of ``series`` (m, L) averaged over pyts's ``n_points`` PAA segments: (m, n_points).

    Each segment's sum divided by its length, as pyts computes a mean: the same averages to
    float64 rounding (bit for bit where segments are shorter than 8 samples; numpy sums
    longer ones in a different order).
    """
    bounds = np.linspace(0, series.shape[-1], n_points + 1).astype(np.int64)
    sums = np.add.reduceat(series, bounds[:-1], axis=-1)
    return sums / np.diff(bounds)


def _gaussian_mass_per_bin(
    centres: np.ndarray, value_range: tuple[float, float], n_bins: int, spread: float
) -> np.ndarray:
    """Mass of N(centre, spread^2) in each of ``n_bins`` equal bins of ``value_range``.

    The normal CDF is evaluated only within 8 spreads of a centre and taken as 0 or 1
    beyond, where it is within 1e-15 of those; that skips most evaluations and halves the
    time. float32 keeps far more precision than the float16 cache holds.
    """
    from scipy.special import ndtr

    edges = np.linspace(value_range[0], value_range[1], n_bins + 1, dtype=np.float32)
    standardised = edges[np.newaxis, :] - centres.astype(np.float32)[:, np.newaxis]
    standardised /= spread
    cdf = (standardised > 0).astype(np.float32)
    near = np.abs(standardised) < 8
    cdf[near] = ndtr(standardised[near])
    return cdf[:, 1:] - cdf[:, :-1]


def _h0_diagrams(series: np.ndarray) -> list[np.ndarray]:
    """Finite H0 diagrams of the rows of ``series`` (m, L), one (k, 2) array per row."""
    from gudhi.sklearn.cubical_persistence import CubicalPersistence

    # A 1-D array of top-dimensional cells is a path of edges; its H0 equals that of the
    # series' sublevel sets, and gudhi has a fast path for this case.
    persistence = CubicalPersistence(homology_dimensions=0, homology_coeff_field=2)
    diagrams = persistence.fit_transform(series)
    return [np.asarray(d[np.isfinite(d[:, 1])], dtype=np.float64).reshape(-1, 2) for d in diagrams]


def _image_blocks(
    modality: str, X: np.ndarray, settings: ModalitySettings
) -> Iterator[np.ndarray]:
    """The GAF or PI images of unscaled windows ``X``, a chunk of windows at a time.

    The GAF scales each series after averaging it down (`gaf_images`); the PI is computed
    from the full-length series min-max scaled to [-1, 1], the birth range it expects.
    """
    n_windows, n_channels, _ = X.shape
    windows_per_chunk = max(1, _PIXELS_PER_CHUNK // (n_channels * settings.image_size**2))
    for start in range(0, n_windows, windows_per_chunk):
        chunk = X[start : start + windows_per_chunk]
        if modality == "gaf":
            yield gaf_images(chunk, settings.image_size)
        else:
            yield persistence_images(minmax_windows(chunk), settings)


def _signal_to_float16(values: np.ndarray) -> np.ndarray:
    """Sig ``values`` as float16, clipped to its finite range with a warning when beyond."""
    limit = float(np.finfo(np.float16).max)
    if values.size and float(np.abs(values).max()) > limit:
        logger.warning("Sig values beyond the float16 range +-%g were clipped to it", limit)
        values = np.clip(values, -limit, limit)
    return values.astype(np.float16)


def _hash_parts(*parts: bytes | np.ndarray) -> str:
    """SHA-256 of ``parts``, each prefixed with its size so that boundaries count."""
    digest = hashlib.sha256()
    for part in parts:
        buffer = memoryview(np.ascontiguousarray(part) if isinstance(part, np.ndarray) else part)
        digest.update(buffer.nbytes.to_bytes(8, "little"))
        digest.update(buffer)
    return digest.hexdigest()


def _load_cached(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached float16 array at ``path``; None when missing or unreadable (warned)."""
    if not path.exists():
        return None
    try:
        cached = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as error:
        logger.warning("recomputing the unreadable cache file %s (%s)", path, error)
        return None
    if cached.dtype != np.float16 or cached.shape != shape:
        logger.warning(
            "recomputing the cache file %s: it holds %s %s, expected float16 %s",
            path,
            cached.dtype,
            cached.shape,
            shape,
        )
        return None
    return cached


def _write_atomically(path: Path, shape: tuple[int, ...], blocks: Iterable[np.ndarray]) -> None:
    """Write consecutive ``blocks`` (along axis 0) as one float16 ``.npy`` of ``shape``.

    The file appears at ``path`` only once complete; an error or interruption while the
    blocks are computed removes the partial file.
    """
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(descriptor)
    try:
        out = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.float16, shape=shape)
        start = 0
        for block in blocks:
            out[start : start + len(block)] = block
            start += len(block)
        out.flush()
        del out
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
