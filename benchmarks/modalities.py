"""Modalities: GAF + PI images with `mmkd.modalities` against the reference recipe.

1000 windows of 6 x 100 (synthetic data), 64 x 64 images, the reference settings of the
design (PI: 0-dim sublevel-set persistence, infinite point dropped, lifetime > 0.01,
spread 0.015, birth range [-1, 1], persistence range [0, 1], linear weight, image / max).

- ours: `gaf_images` on the unscaled windows, `minmax_windows` + `persistence_images`
  (batched: gudhi diagrams, separable Gaussian mass per bin); and `compute_modalities`,
  which adds the float16 disk cache, into an empty cache folder;
- reference: pyts's ``GramianAngularField`` (its default ``sample_range=(-1, 1)``) on the
  batch of unscaled series; ripser H0 diagrams of each min-max scaled series' lower-star
  filtration and persim's legacy ``PersImage``, one series at a time.

Everything is timed after imports and a warm-up call (``import pyts.image`` alone costs
about 18 s). The images are compared after normalising each to max 1: max and mean abs
difference and the correlation of all pixels (the legacy ``PersImage`` is flipped to put
low persistence in row 0, as ours does). The legacy ``PersImage`` rasterises on a grid of
its own: bins of width maxBD / 64 = 1/64 starting at ``linspace(minBD, maxBD, 64)`` for
birth (so they cover half of [-1, 1]) and at ``linspace(0, maxBD, 64)`` for persistence,
where ours are 64 contiguous bins of [-1, 1] and of [0, 1]. So our PI is also compared with
persim's current ``PersistenceImager`` set to our grid, on the ripser diagrams (untimed).
The cached reload is `compute_modalities` again on the filled cache folder.

    python benchmarks/modalities.py            # 1000 windows, 3 repeats
    python benchmarks/modalities.py --quick    # 200 windows
"""

from __future__ import annotations

import time

import harness
import numpy as np

IMAGE_SIZE = 64
SPREAD = 0.015
MIN_LIFETIME = 0.01


def reference_diagram(series: np.ndarray) -> np.ndarray:
    """H0 diagram of a series' sublevel sets with ripser (lower-star filtration of a path)."""
    from ripser import ripser
    from scipy import sparse

    n = len(series)
    edges = np.arange(n - 1)
    rows = np.concatenate([edges, np.arange(n)])
    columns = np.concatenate([edges + 1, np.arange(n)])
    values = np.concatenate([np.maximum(series[:-1], series[1:]), series])
    distances = sparse.coo_matrix((values, (rows, columns)), shape=(n, n)).tocsr()
    diagram = ripser(distances, maxdim=0, distance_matrix=True)["dgms"][0]
    return diagram[np.isfinite(diagram[:, 1])]


def reference_kept_diagram(series: np.ndarray) -> np.ndarray:
    """The reference recipe's diagram of one raw series: min-max scaled to [-1, 1], ripser
    H0, points of lifetime above the minimum kept."""
    low, high = series.min(), series.max()
    scaled = 2.0 * (series - low) / (high - low) - 1.0 if high > low else np.zeros_like(series)
    diagram = reference_diagram(scaled)
    return diagram[diagram[:, 1] - diagram[:, 0] > MIN_LIFETIME]


def reference_images(windows: np.ndarray):
    """The reference recipe: pyts GAF on the batch, ripser + persim PI one series at a time.

    Returns the GAF and PI images."""
    from persim import PersImage
    from pyts.image import GramianAngularField

    n, channels, length = windows.shape
    series = windows.reshape(n * channels, length)
    gaf = GramianAngularField(image_size=IMAGE_SIZE, method="summation", sample_range=(-1, 1))
    gaf_images = gaf.fit_transform(series)

    imager = PersImage(
        pixels=(IMAGE_SIZE, IMAGE_SIZE),
        spread=SPREAD,
        specs={"maxBD": 1.0, "minBD": -1.0},
        verbose=False,
    )
    pi_images = np.zeros((n * channels, IMAGE_SIZE, IMAGE_SIZE))
    for index, one in enumerate(series):
        diagram = reference_kept_diagram(one)
        if len(diagram) == 0:
            continue
        image = imager.transform(diagram)
        pi_images[index] = image / image.max()
    shape = (n, channels, IMAGE_SIZE, IMAGE_SIZE)
    return gaf_images.reshape(shape), pi_images.reshape(shape)


def persistence_imager_on_our_grid(diagrams: list) -> np.ndarray:
    """persim's ``PersistenceImager`` on our grid, one diagram at a time, each image / max.

    Its pixels are square; ours are 2/64 wide (birth) by 1/64 high (persistence). With
    pixels of 1/64 it covers birth [-1, 1] in 128 columns and persistence [0, 1] in 64
    rows; summing each pair of adjacent birth columns gives our birth bins exactly (a
    Gaussian's mass over two adjacent bins is the sum of its masses over each). Same
    kernel (isotropic Gaussian, variance spread^2, integrated over each pixel) and weight
    (persistence^1); returned with low persistence in row 0, as ours."""
    from persim import PersistenceImager

    imager = PersistenceImager(
        birth_range=(-1.0, 1.0),
        pers_range=(0.0, 1.0),
        pixel_size=1.0 / IMAGE_SIZE,
        weight="persistence",
        weight_params={"n": 1.0},
        kernel="gaussian",
        kernel_params={"sigma": SPREAD**2},
    )
    assert imager.resolution == (2 * IMAGE_SIZE, IMAGE_SIZE), imager.resolution
    images = np.zeros((len(diagrams), IMAGE_SIZE, IMAGE_SIZE))
    for index, diagram in enumerate(diagrams):
        if len(diagram) == 0:
            continue
        image = imager.transform(diagram, skew=True)  # (birth, persistence)
        image = image.reshape(IMAGE_SIZE, 2, IMAGE_SIZE).sum(axis=1).T
        images[index] = image / image.max()
    return images


def our_images(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from mmkd.modalities import (
        ModalitySettings,
        gaf_images,
        minmax_windows,
        persistence_images,
    )

    settings = ModalitySettings(image_size=IMAGE_SIZE, pi_spread=SPREAD)
    return gaf_images(windows, IMAGE_SIZE), persistence_images(minmax_windows(windows), settings)


def our_cached(windows: np.ndarray, train_index: np.ndarray, cache_dir) -> dict:
    from mmkd.modalities import ModalitySettings, compute_modalities

    settings = ModalitySettings(image_size=IMAGE_SIZE, pi_spread=SPREAD)
    return compute_modalities(windows, train_index, settings, cache_dir, ("sig", "gaf", "pi"))


def compare(ours: np.ndarray, reference: np.ndarray, flip_rows: bool = False) -> dict:
    """Max and mean abs difference and correlation after scaling each image to max 1."""
    ours = np.asarray(ours, dtype=np.float64).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    reference = np.asarray(reference, dtype=np.float64).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    if flip_rows:
        reference = reference[:, ::-1, :]

    def unit(images):
        peak = np.abs(images).max(axis=(1, 2), keepdims=True)
        return images / np.where(peak > 0, peak, 1.0)

    difference = np.abs(unit(ours) - unit(reference))
    correlation = np.corrcoef(unit(ours).ravel(), unit(reference).ravel())[0, 1]
    per_image = [
        np.corrcoef(a.ravel(), b.ravel())[0, 1]
        for a, b in zip(unit(ours), unit(reference), strict=True)
        if a.std() > 0 and b.std() > 0
    ]
    return {
        "max_abs": float(difference.max()),
        "mean_abs": float(difference.mean()),
        "correlation": float(correlation),
        "worst_image_correlation": float(min(per_image)),
    }


def main() -> None:
    args = harness.arguments(__doc__.splitlines()[0]).parse_args()
    harness.say_load("start")
    harness.quiet()
    n = 200 if args.quick else 1000

    from mmkd.data import load_dataset

    windows = load_dataset(f"synthetic:n={n},length=100,channels=6").X.astype(np.float64)
    train_index = np.arange(n // 2)

    # Imports and first calls (numba, ripser, gudhi) stay outside every timing.
    started = time.perf_counter()
    import persim  # noqa: F401
    import pyts.image  # noqa: F401
    import ripser  # noqa: F401

    harness.say(f"imports (pyts.image, ripser, persim): {time.perf_counter() - started:.1f} s")
    reference_images(windows[:2])
    our_images(windows[:2])

    timings = {"ours": [], "reference": [], "ours + cache": [], "cached reload": []}
    for repeat in range(args.repeats):
        started = time.perf_counter()
        ours = our_images(windows)
        timings["ours"].append(time.perf_counter() - started)

        started = time.perf_counter()
        reference = reference_images(windows)
        timings["reference"].append(time.perf_counter() - started)

        with harness.scratch_folder("modalities") as folder:
            started = time.perf_counter()
            our_cached(windows, train_index, folder)
            timings["ours + cache"].append(time.perf_counter() - started)
            started = time.perf_counter()
            cached = our_cached(windows, train_index, folder)
            timings["cached reload"].append(time.perf_counter() - started)
            cached = {name: np.array(array) for name, array in cached.items()}
        harness.say(
            "  repeat {}: {}".format(
                repeat + 1, ", ".join(f"{k} {v[-1]:.2f} s" for k, v in timings.items())
            )
        )

    reference_seconds = harness.median(timings["reference"])
    harness.say()
    harness.say(
        f"GAF + PI, {IMAGE_SIZE}x{IMAGE_SIZE}, {n} windows of 6x100 ({6 * n} series), "
        "seconds after imports:"
    )
    harness.say(
        harness.table(
            ["what", "seconds, median [min-max]", "/ reference"],
            [
                [name, harness.spread(values), f"{harness.median(values) / reference_seconds:.3f}"]
                for name, values in timings.items()
            ],
        )
    )
    ratio = harness.median(timings["ours"]) / reference_seconds
    reload = harness.median(timings["cached reload"])
    harness.say(f"target ours <= 0.2 x reference: {ratio:.3f} -> {harness.verdict(ratio <= 0.2)}")
    harness.say(f"target cached reload < 0.5 s: {reload:.3f} s -> {harness.verdict(reload < 0.5)}")

    # Untimed: the reference recipe's diagrams, and persim's PersistenceImager on our grid.
    reference_diagrams = [
        reference_kept_diagram(one) for one in windows.reshape(-1, windows.shape[-1])
    ]
    on_our_grid = persistence_imager_on_our_grid(reference_diagrams)

    harness.say()
    harness.say("Same images? (each image scaled to max 1 first)")
    rows = []
    for name, mine, theirs, flip in (
        (
            "GAF, ours vs the reference recipe (pyts, sample_range=(-1, 1))",
            ours[0],
            reference[0],
            False,
        ),
        ("GAF, float16 cache vs the reference recipe", cached["gaf"], reference[0], False),
        ("PI, ours vs ripser + persim PersistenceImager on our grid", ours[1], on_our_grid, False),
        ("PI, float16 cache vs the same", cached["pi"], on_our_grid, False),
        ("PI, ours vs ripser + legacy PersImage (its own grid)", ours[1], reference[1], True),
        ("PI, float16 cache vs the same", cached["pi"], reference[1], True),
    ):
        result = compare(mine, theirs, flip_rows=flip)
        rows.append(
            [
                name,
                f"{result['max_abs']:.2g}",
                f"{result['mean_abs']:.2g}",
                f"{result['correlation']:.4f}",
                f"{result['worst_image_correlation']:.4f}",
            ]
        )
    harness.say(
        harness.table(
            ["images", "max abs diff", "mean abs diff", "correlation", "worst image corr."],
            rows,
        )
    )

    # The legacy PI differs in its grid; the diagrams themselves agree.
    from mmkd.modalities import h0_diagram, minmax_windows

    scaled = minmax_windows(windows)
    worst, mismatched = 0.0, 0
    for series, theirs in zip(
        scaled.reshape(-1, scaled.shape[-1]), reference_diagrams, strict=True
    ):
        mine = h0_diagram(series)
        mine = mine[mine[:, 1] - mine[:, 0] > MIN_LIFETIME]
        if len(mine) != len(theirs):
            mismatched += 1
            continue
        if len(mine):
            order_mine = np.lexsort(mine.T[::-1])
            order_theirs = np.lexsort(theirs.T[::-1])
            worst = max(worst, float(np.abs(mine[order_mine] - theirs[order_theirs]).max()))
    harness.say(
        f"H0 diagrams, gudhi (ours) vs ripser, {len(reference_diagrams)} series: "
        f"{mismatched} differ in their number of points; max abs difference of the points "
        f"{worst:.2g}"
    )
    harness.say_load("end")


if __name__ == "__main__":
    main()
