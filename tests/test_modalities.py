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
    X = np.array(
        [
            [[0.0, 5.0, 10.0], [3.0, 3.0, 3.0]],
            [[4.0, 1.0, 2.0], [1.0, 1.0 + 1e-13, 1.0]],
        ]
    )

    scaled = minmax_windows(X)

    assert scaled.dtype == np.float32
    expected = np.array(
        [
            [[-1.0, 0.0, 1.0], [0.0, 0.0, 0.0]],
            [[1.0, -1.0, -1.0 / 3.0], [0.0, 0.0, 0.0]],
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


GAF_WINDOWS = np.array(
    [
        # 1 + 1e-9 stands for float error from scaling: it must be clipped, not rejected.
        [[-1.0, -0.5, 0.0, 0.5, 1.0 + 1e-9], [0.0, 0.0, 0.0, 0.0, 0.0]],
        [[0.3, -0.8, 0.6, 0.1, -0.2], [1.0, 0.5, -0.25, 0.0, 0.9]],
    ]
)


@pytest.fixture(scope="module")
def gaf_of_windows():
    return gaf_images(GAF_WINDOWS, image_size=5)


def test_gaf_matches_the_summation_identity_per_channel(gaf_of_windows):
    assert gaf_of_windows.shape == (2, 2, 5, 5)
    assert gaf_of_windows.dtype == np.float32
    for window, channel in [(0, 0), (1, 0), (1, 1)]:
        np.testing.assert_allclose(
            gaf_of_windows[window, channel], gasf(GAF_WINDOWS[window, channel]), atol=1e-6
        )


def test_gaf_of_a_flat_scaled_series_is_minus_one(gaf_of_windows):
    # x = 0 everywhere: 0 * 0 - 1 * 1.
    np.testing.assert_array_equal(gaf_of_windows[0, 1], -np.ones((5, 5)))


def test_gaf_averages_unequal_segments_when_length_is_not_a_multiple():
    # L = 5, s = 2: pyts's segment bounds are int(linspace(0, 5, 3)) = [0, 2, 5], so the
    # two points are mean(0.2, 0.4) = 0.3 and mean(-0.3, 0.6, 0.9) = 0.4.
    images = gaf_images(np.array([[[0.2, 0.4, -0.3, 0.6, 0.9]]]), image_size=2)

    np.testing.assert_allclose(images[0, 0], gasf([0.3, 0.4]), atol=1e-6)


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
