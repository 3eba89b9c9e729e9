"""Sig, GAF and PI views, and their disk cache, checked against hand computations.

The first GAF in a process imports `pyts.image` (about 18 s), so the GAF checks share one
module-scoped computation; later GAFs in the same process are fast.
"""

import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmkd import modalities
from mmkd.modalities import (
    ModalitySettings,
    compute_modalities,
    gaf_images,
    h0_diagram,
    minmax_windows,
    persistence_images,
    standardise_signal,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def gasf(series):
    """cos(phi_i + phi_j) = x_i x_j - sqrt(1 - x_i^2) sqrt(1 - x_j^2), written out."""
    x = np.clip(np.asarray(series, dtype=np.float64), -1.0, 1.0)
    return np.outer(x, x) - np.outer(np.sqrt(1 - x**2), np.sqrt(1 - x**2))


def pixel_mass(centre, low, high, sigma):
    """Mass of N(centre, sigma^2) on [low, high], from math.erf."""

    def phi(z):
        return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))

    return phi((high - centre) / sigma) - phi((low - centre) / sigma)


def test_minmax_windows_scales_each_series_to_minus_one_one():
    # Flat: a constant, a spread of 1e-13 (below 1e-12) and a spread of 1e-8 on values of
    # 1e5 (below 1e-12 * 1e5): all -1, where pyts puts a constant series.
    X = np.array(
        [
            [[0.0, 5.0, 10.0], [3.0, 3.0, 3.0]],
            [[4.0, 1.0, 2.0], [1.0, 1.0 + 1e-13, 1.0]],
            [[-2.0, 0.0, 2.0], [1e5, 1e5 + 1e-8, 1e5]],
        ]
    )

    scaled = minmax_windows(X)

    assert scaled.dtype == np.float32
    expected = np.array(
        [
            [[-1.0, 0.0, 1.0], [-1.0, -1.0, -1.0]],
            [[1.0, -1.0, -1.0 / 3.0], [-1.0, -1.0, -1.0]],
            [[-1.0, 0.0, 1.0], [-1.0, -1.0, -1.0]],
        ]
    )
    np.testing.assert_allclose(scaled, expected, atol=1e-7)


def test_standardise_signal_uses_training_windows_only():
    # Channel 0: training values 1, 3, 5, 7 -> mean 4, population variance 5.
    # Channel 1: constant 2 over the training windows -> std 0, replaced by 1.
    X = np.array(
        [
            [[1.0, 3.0], [2.0, 2.0]],
            [[5.0, 7.0], [2.0, 2.0]],
            [[100.0, 100.0], [3.0, 2.0]],
        ]
    )

    signal = standardise_signal(X, np.array([0, 1]))

    assert signal.dtype == np.float32
    root5 = math.sqrt(5.0)
    expected = np.array(
        [
            [[-3 / root5, -1 / root5], [0.0, 0.0]],
            [[1 / root5, 3 / root5], [0.0, 0.0]],
            [[96 / root5, 96 / root5], [1.0, 0.0]],
        ]
    )
    np.testing.assert_allclose(signal, expected, rtol=1e-6)


def test_standardise_signal_rejects_an_empty_training_set():
    with pytest.raises(ValueError, match="train_index"):
        standardise_signal(np.zeros((2, 1, 3)), np.array([], dtype=int))


# Unscaled windows; with image_size = L = 5 there is no averaging, only the min-max scaling:
# [3, -1, 1, 0, 2] (min -1, span 4) -> [1, -1, 0, -0.5, 0.5];
# [8, 6, 3, 4, 7.6] (min 3, span 5) -> [1, 0.2, -1, -0.6, 0.84].
GAF_WINDOWS = np.array(
    [
        [[3.0, -1.0, 1.0, 0.0, 2.0], [10.0, 10.0, 10.0, 10.0, 10.0]],
        [[8.0, 6.0, 3.0, 4.0, 7.6], [-1.0, -3.0, 1.0, 0.0, 2.0]],
    ]
)


@pytest.fixture(scope="module")
def gaf_of_windows():
    return gaf_images(GAF_WINDOWS, image_size=5)


def test_gaf_without_averaging_is_the_field_of_the_scaled_series(gaf_of_windows):
    assert gaf_of_windows.shape == (2, 2, 5, 5)
    assert gaf_of_windows.dtype == np.float32
    scaled = {
        (0, 0): [1.0, -1.0, 0.0, -0.5, 0.5],
        (1, 0): [1.0, 0.2, -1.0, -0.6, 0.84],
        # [-1, -3, 1, 0, 2] (min -3, span 5) -> [-0.2, -1, 0.6, 0.2, 1]
        (1, 1): [-0.2, -1.0, 0.6, 0.2, 1.0],
    }
    for (window, channel), x in scaled.items():
        np.testing.assert_allclose(gaf_of_windows[window, channel], gasf(x), atol=1e-6)


def test_gaf_scales_the_averages_not_the_raw_series(gaf_of_windows):
    # L = 6, s = 3: segments [0, 2), [2, 4), [4, 6); averages 1, 7, 2; min 1, span 6:
    # x = -1, 1, -2/3 and sqrt(1 - x^2) = 0, 0, sqrt(5)/3. The second channel, 5 x - 3, has
    # the same image: min-max scaling removes offset and amplitude.
    series = np.array([0.0, 2.0, 4.0, 10.0, 1.0, 3.0])

    images = gaf_images(np.array([[series, 5 * series - 3]]), image_size=3)

    expected = [
        [1.0, -1.0, 2 / 3],
        [-1.0, 1.0, -2 / 3],
        [2 / 3, -2 / 3, 4 / 9 - 5 / 9],
    ]
    np.testing.assert_allclose(images[0, 0], expected, atol=1e-6)
    np.testing.assert_allclose(images[0, 1], expected, atol=1e-6)


def test_gaf_of_a_spike_depends_on_averaging_first():
    # [0, 0, 1, 0, 0, 9], s = 3: averages 0, 0.5, 4.5 -> x = -1, -7/9, 1, so the spike's
    # segment sits at the top: pixel (2, 2) = 1. Scaling the raw series first would give
    # [-1, -1, -7/9, -1, -1, 1], averages -1, -8/9, 0 and pixel (2, 2) = -1.
    images = gaf_images(np.array([[[0.0, 0.0, 1.0, 0.0, 0.0, 9.0]]]), image_size=3)

    sine = math.sqrt(32) / 9  # sqrt(1 - 49/81)
    expected = [
        [1.0, 7 / 9, -1.0],
        [7 / 9, 49 / 81 - sine**2, -7 / 9],
        [-1.0, -7 / 9, 1.0],
    ]
    np.testing.assert_allclose(images[0, 0], expected, atol=1e-6)


def test_gaf_averages_unequal_segments_when_length_is_not_a_multiple():
    # L = 5, s = 3: pyts's segment bounds are int(linspace(0, 5, 4)) = [0, 1, 3, 5], so the
    # averages are 0.2, mean(0.4, -0.3) = 0.05 and mean(0.6, 0.9) = 0.75; min 0.05, span
    # 0.7: x = -4/7, -1, 1, and sqrt(1 - 16/49) = sqrt(33)/7.
    images = gaf_images(np.array([[[0.2, 0.4, -0.3, 0.6, 0.9]]]), image_size=3)

    expected = [
        [16 / 49 - 33 / 49, 4 / 7, -4 / 7],
        [4 / 7, 1.0, -1.0],
        [-4 / 7, -1.0, 1.0],
    ]
    np.testing.assert_allclose(images[0, 0], expected, atol=1e-6)


def test_gaf_of_a_flat_series_is_all_ones(gaf_of_windows):
    # x = -1 everywhere: (-1)(-1) - 0 * 0. The averages of 123.4 over L = 12, s = 5
    # (segments of 2 and 3 samples) differ by rounding; pyts would stretch that to [-1, 1].
    np.testing.assert_array_equal(gaf_of_windows[0, 1], np.ones((5, 5)))
    flat = np.array([[[123.4] * 12, [0.0] * 12, [1e5 + 0.1] * 12]])

    images = gaf_images(flat, image_size=5)

    np.testing.assert_array_equal(images, np.ones((1, 3, 5, 5)))


@pytest.mark.parametrize(("length", "image_size"), [(100, 64), (30, 22), (64, 64)])
def test_gaf_equals_pyts_with_its_own_scaling_on_the_unscaled_series(
    gaf_of_windows, length, image_size
):
    from pyts.image import GramianAngularField

    rng = np.random.default_rng(length)
    X = rng.normal(size=(5, 3, length)) * 40 + 7
    X[:, :, rng.integers(length, size=3)] += 300  # a few spikes

    ours = gaf_images(X, image_size)

    field = GramianAngularField(image_size, method="summation", sample_range=(-1, 1))
    reference = field.transform(X.reshape(-1, length)).reshape(ours.shape)
    np.testing.assert_allclose(ours, reference, atol=1e-6)


def test_gaf_refuses_an_image_larger_than_the_window():
    with pytest.raises(ValueError, match="window length 3"):
        gaf_images(np.zeros((1, 1, 3)), image_size=4)


def test_h0_diagram_follows_the_elder_rule():
    # Minima 0 (t=0), 1 (t=2), -1 (t=4). At 2 the components born at 0 and 1 merge: the
    # younger dies, (1, 2). At 3 the components born at 0 and -1 merge: (0, 3). The
    # component born at -1 never dies and is dropped.
    diagram = h0_diagram(np.array([0.0, 2.0, 1.0, 3.0, -1.0]))

    assert diagram.dtype == np.float64
    np.testing.assert_array_equal(diagram[np.argsort(diagram[:, 0])], [[0.0, 3.0], [1.0, 2.0]])


@pytest.mark.parametrize("series", [[0.5, 0.5, 0.5, 0.5], [-1.0, -0.2, 0.4, 1.0]])
def test_h0_diagram_of_a_flat_or_monotone_series_is_empty(series):
    assert h0_diagram(np.array(series)).shape == (0, 2)


def test_persistence_image_of_one_point():
    # Diagram of [0, 0.5, 0.2, 1]: one finite point, birth 0.2, death 0.5, persistence 0.3.
    # 32 x 32 grid: birth bins of 0.0625 from -1 (0.2 is in column 19, [0.1875, 0.25]),
    # persistence bins of 0.03125 from 0 (0.3 is in row 9, [0.28125, 0.3125]).
    settings = ModalitySettings(image_size=32, pi_spread=0.015)

    image = persistence_images(np.array([[[0.0, 0.5, 0.2, 1.0]]]), settings)[0, 0]

    assert image.shape == (32, 32)
    assert np.unravel_index(np.argmax(image), image.shape) == (9, 19)
    assert image.max() == 1.0

    def column_mass(column):
        return pixel_mass(0.2, -1 + column * 0.0625, -1 + (column + 1) * 0.0625, 0.015)

    def row_mass(row):
        return pixel_mass(0.3, row * 0.03125, (row + 1) * 0.03125, 0.015)

    peak = row_mass(9) * column_mass(19)
    for row, column in [(8, 18), (10, 19), (9, 18)]:
        expected = row_mass(row) * column_mass(column) / peak
        assert image[row, column] == pytest.approx(expected, rel=1e-5)


def test_persistence_image_weights_points_linearly_in_persistence():
    # Diagram of [-0.8, 0.05, -0.47, 0.6, 0.21, 1]: (-0.47, 0.05) dies when it meets the
    # component of -0.8, persistence 0.52 (row 16, column 8); (0.21, 0.6) has persistence
    # 0.39 (row 12, column 19). The two Gaussians are over 10 spreads apart.
    settings = ModalitySettings(image_size=32, pi_spread=0.015)

    image = persistence_images(np.array([[[-0.8, 0.05, -0.47, 0.6, 0.21, 1.0]]]), settings)

    def pixel(birth, persistence, row, column):
        column_mass = pixel_mass(birth, -1 + column * 0.0625, -1 + (column + 1) * 0.0625, 0.015)
        row_mass = pixel_mass(persistence, row * 0.03125, (row + 1) * 0.03125, 0.015)
        weight = persistence / 1.0  # linear: persistence over the top of its range
        return weight * row_mass * column_mass

    first = pixel(-0.47, 0.52, 16, 8)
    second = pixel(0.21, 0.39, 12, 19)
    assert image[0, 0, 16, 8] == pytest.approx(first / max(first, second), rel=1e-5)
    assert image[0, 0, 12, 19] == pytest.approx(second / max(first, second), rel=1e-5)


def test_persistence_image_drops_short_lived_points_and_flat_series():
    # Finite points: (0.1, 0.105) lifetime 0.005 and (0.0, 0.01) lifetime exactly 0.01 are
    # dropped (the filter keeps lifetimes above 0.01); (0.1, 0.12) lifetime 0.02 is kept.
    X = np.array(
        [
            [[0.1, 0.105, 0.0, 1.0], [0.3, 0.3, 0.3, 0.3]],
            [[0.0, 0.01, -0.5, 1.0], [0.1, 0.12, 0.0, 1.0]],
        ]
    )

    images = persistence_images(X, ModalitySettings(image_size=8))

    assert images.shape == (2, 2, 8, 8)
    assert images.dtype == np.float32
    assert not np.isnan(images).any()
    for window, channel in [(0, 0), (0, 1), (1, 0)]:
        np.testing.assert_array_equal(images[window, channel], np.zeros((8, 8)))
    assert images[1, 1].max() == 1.0


def test_settings_key_is_stable_and_tells_settings_apart():
    default = ModalitySettings()

    assert ModalitySettings(pi_birth_range=[-1, 1], pi_spread=0.015).key() == default.key()
    assert ModalitySettings(pi_spread=0.02).key() != default.key()
    assert ModalitySettings(image_size=64).key() != default.key()
    with pytest.raises(ValueError, match="pi_birth_range"):
        ModalitySettings(pi_birth_range=(1.0, -1.0))


def test_settings_key_changes_with_the_format_of_the_computation(monkeypatch):
    # Teachers are cached under this key: a new GAF or PI computation must not reuse them.
    before = ModalitySettings().key()

    monkeypatch.setattr(modalities, "_CACHE_FORMAT", modalities._CACHE_FORMAT + 1)

    assert ModalitySettings().key() != before


WINDOWS = np.random.default_rng(0).normal(size=(4, 2, 12))
TRAIN_INDEX = np.array([0, 1, 2])
SETTINGS = ModalitySettings(image_size=6)


def cache_files(cache_dir):
    return sorted(path.name for path in Path(cache_dir).iterdir())


def test_compute_modalities_writes_float16_views_and_reads_them_back(tmp_path, monkeypatch):
    views = compute_modalities(WINDOWS, TRAIN_INDEX, SETTINGS, tmp_path)

    files = cache_files(tmp_path)
    assert [name.split("-")[0] for name in files] == ["gaf", "pi", "sig"]
    assert all(name.endswith(".npy") for name in files)
    assert views["sig"].shape == (4, 2, 12)
    assert views["gaf"].shape == views["pi"].shape == (4, 2, 6, 6)
    for view in views.values():
        assert view.dtype == np.float16
        assert not view.flags.writeable

    train = WINDOWS[TRAIN_INDEX]
    mean = train.mean(axis=(0, 2), keepdims=True)
    std = np.sqrt(((train - mean) ** 2).mean(axis=(0, 2), keepdims=True))
    np.testing.assert_allclose(views["sig"], (WINDOWS - mean) / std, rtol=1e-3, atol=1e-3)
    # The GAF from the unscaled windows (it scales after averaging), the PI from the
    # full-length scaled ones; float16 keeps about 3 decimal digits of values up to 1.
    np.testing.assert_allclose(views["gaf"], gaf_images(WINDOWS, 6), atol=1e-3)
    expected_pi = persistence_images(minmax_windows(WINDOWS), SETTINGS)
    np.testing.assert_allclose(views["pi"], expected_pi, atol=1e-3)

    def must_not_run(*args, **kwargs):
        raise AssertionError("a cached view was computed again")

    for name in ("standardise_signal", "minmax_windows", "gaf_images", "persistence_images"):
        monkeypatch.setattr(modalities, name, must_not_run)
    again = compute_modalities(WINDOWS, TRAIN_INDEX, SETTINGS, tmp_path)
    for name, view in views.items():
        np.testing.assert_array_equal(again[name], view)
    assert cache_files(tmp_path) == files


def test_an_unreadable_cache_file_is_recomputed_with_a_warning(tmp_path, caplog):
    first = np.array(compute_modalities(WINDOWS, TRAIN_INDEX, SETTINGS, tmp_path, ("pi",))["pi"])
    (pi_file,) = tmp_path.iterdir()
    pi_file.write_bytes(pi_file.read_bytes()[: pi_file.stat().st_size // 2])

    with caplog.at_level(logging.WARNING, logger="mmkd.modalities"):
        again = compute_modalities(WINDOWS, TRAIN_INDEX, SETTINGS, tmp_path, ("pi",))["pi"]

    assert any(pi_file.name in record.getMessage() for record in caplog.records)
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(np.load(pi_file), first)


def test_each_view_is_keyed_by_what_it_depends_on(tmp_path):
    compute_modalities(WINDOWS, TRAIN_INDEX, SETTINGS, tmp_path)
    before = set(cache_files(tmp_path))

    compute_modalities(
        WINDOWS, TRAIN_INDEX, ModalitySettings(image_size=6, pi_spread=0.03), tmp_path
    )
    new = set(cache_files(tmp_path)) - before
    assert [name.split("-")[0] for name in new] == ["pi"]

    before = set(cache_files(tmp_path))
    compute_modalities(WINDOWS, TRAIN_INDEX, ModalitySettings(image_size=4), tmp_path)
    new = set(cache_files(tmp_path)) - before
    assert sorted(name.split("-")[0] for name in new) == ["gaf", "pi"]

    before = set(cache_files(tmp_path))
    compute_modalities(WINDOWS, np.array([0, 1]), SETTINGS, tmp_path)
    new = set(cache_files(tmp_path)) - before
    assert [name.split("-")[0] for name in new] == ["sig"]


def test_an_interrupted_computation_leaves_no_file(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(modalities, "persistence_images", interrupted)

    with pytest.raises(KeyboardInterrupt):
        compute_modalities(WINDOWS, TRAIN_INDEX, SETTINGS, tmp_path, ("pi",))
    assert cache_files(tmp_path) == []


def test_unknown_modalities_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown modalities"):
        compute_modalities(WINDOWS, TRAIN_INDEX, SETTINGS, tmp_path, ("sig", "fft"))


def test_a_cache_hit_imports_neither_pyts_image_nor_gudhi(tmp_path):
    np.save(tmp_path / "windows.npy", WINDOWS)
    cache_dir = tmp_path / "cache"
    compute_modalities(WINDOWS, TRAIN_INDEX, SETTINGS, cache_dir)
    script = (
        "import sys, numpy as np\n"
        "from mmkd.modalities import ModalitySettings, compute_modalities\n"
        f"X = np.load({str(tmp_path / 'windows.npy')!r})\n"
        f"views = compute_modalities(X, np.array([0, 1, 2]), ModalitySettings(image_size=6),"
        f" {str(cache_dir)!r})\n"
        "assert sorted(views) == ['gaf', 'pi', 'sig']\n"
        "print(sorted(m for m in sys.modules if m.startswith(('pyts', 'gudhi'))))\n"
    )
    search_path = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(search_path)}

    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
