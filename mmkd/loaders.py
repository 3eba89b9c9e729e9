"""Readers for data sets on local disk, each returning a checked `mmkd.data.Dataset`.

Nothing here downloads anything: data sets published elsewhere are read from where the
user keeps them. Formats, told apart by suffix and layout:

- UEA/UCR archive files: ``.ts``; ``.arff`` (univariate, or multivariate with one
  relational attribute); the UCR text layout (``.txt``, ``.tsv``, ``.csv`` or no suffix:
  one series a line, the label first, then the values, separated by tabs, commas or
  spaces). Labels may be strings or numbers. A folder holding ``NAME_TRAIN.*`` and
  ``NAME_TEST.*`` reads both, and the ``NAME_TEST`` series are the test part. Unequal
  lengths: missing values (``?``, ``NaN``) at the end of a series are padding and are
  dropped; then every series is resampled linearly to the longest length in the data set.
  Missing values inside a series are an error.
- NumPy ``.npz``: ``X`` (n, channels, length) or (n, length), ``y`` (n,), optionally
  ``subject`` (n,) and ``split`` (n,) with values ``"train"`` / ``"test"`` marking the test
  part. Saved without pickling (plain number or string arrays).
- PAMAP2 (``subject1NN.dat`` protocol files: 54 space-separated columns at 100 Hz; one
  file, or a folder of them or its ``Protocol`` sub-folder). Kept: heart rate and, for
  each of the hand, chest and ankle IMUs, temperature, the 16 g and 6 g accelerometers,
  gyroscope and magnetometer (40 channels; timestamp, activity id and the orientation
  columns are dropped). Gaps (NaN; the ~9 Hz heart rate is mostly NaN) are filled by
  linear interpolation over the samples of one subject, holding the first and last known
  value at the ends; then every third sample is kept (about 33 Hz). Windows of 100
  samples, step 22, inside each run of one activity; only the 12 protocol activities
  (`PAMAP2_ACTIVITIES`) are kept (0, the transient activity, is dropped).
- UCI-HAR (the data set's folder, holding ``train/`` and ``test/``, each with
  ``Inertial Signals/``; the folder itself or one below it): the 9 inertial signals
  (`UCI_HAR_SIGNALS`), 128-sample windows as given, labels from ``y_*.txt`` (named by
  ``activity_labels.txt`` when present), subjects from ``subject_*.txt``; the data set's
  own test part is the test part.
- WISDM v1.1 raw text (``user,activity,timestamp,x,y,z;`` records, 20 Hz): records that do
  not have that form (wrong field count, non-numbers, empty fields) are skipped and their
  number is logged as a warning. Windows of 200 samples (10 s), step 100, inside each run
  of consecutive records of one user and one activity; timestamps are not used (they hold
  zeros and repeats in v1.1).

Raw recordings (PAMAP2, WISDM) may be cut differently with ``window`` and ``step`` (in
samples at the rate after downsampling); windows are counted per run as
``floor((run_length - window) / step) + 1``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mmkd.data import DataError, Dataset, from_arrays, label_text, resample

logger = logging.getLogger(__name__)

# Raw recordings and their default (window, step), in samples.
WINDOWING = {"pamap2": (100, 22), "wisdm": (200, 100)}

PAMAP2_ACTIVITIES = {
    1: "lying",
    2: "sitting",
    3: "standing",
    4: "walking",
    5: "running",
    6: "cycling",
    7: "Nordic walking",
    12: "ascending stairs",
    13: "descending stairs",
    16: "vacuum cleaning",
    17: "ironing",
    24: "rope jumping",
}
_PAMAP2_WIDTH = 54
_PAMAP2_IMUS = (("hand", 3), ("chest", 20), ("ankle", 37))
_IMU_CHANNELS = (
    "temperature",
    *(f"{sensor}_{axis}" for sensor in ("acc16", "acc6", "gyro", "mag") for axis in "xyz"),
)
PAMAP2_CHANNELS = (
    "heart_rate",
    *(f"{imu}_{channel}" for imu, _ in _PAMAP2_IMUS for channel in _IMU_CHANNELS),
)
# Column 1 is the activity id, 2 the heart rate; each IMU's first 13 columns are kept.
_PAMAP2_COLUMNS = (1, 2, *(first + k for _, first in _PAMAP2_IMUS for k in range(13)))
_PAMAP2_DOWNSAMPLE = 3

UCI_HAR_SIGNALS = tuple(
    f"{signal}_{axis}" for signal in ("body_acc", "body_gyro", "total_acc") for axis in "xyz"
)

# Archive suffixes in order of preference when a folder holds several versions of one set.
_ARCHIVE_SUFFIXES = (".ts", ".arff", ".tsv", ".txt", ".csv", "")
_ARCHIVE_PART = re.compile(r"^(?P<name>.+)_TRAIN(?P<suffix>\.[A-Za-z]+)?$")


def _pamap2_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("subject*.dat"))
    if not files and (folder / "Protocol").is_dir():
        files = sorted((folder / "Protocol").glob("subject*.dat"))
    return files


def _uci_har_root(folder: Path) -> Path | None:
    """The UCI-HAR folder at or above ``folder`` (up to two levels), if any."""
    for candidate in (folder, folder.parent, folder.parent.parent):
        if all((candidate / part / "Inertial Signals").is_dir() for part in ("train", "test")):
            return candidate
    return None


def _archive_pair(folder: Path) -> tuple[Path, Path] | None:
    """``NAME_TRAIN.x`` and ``NAME_TEST.x`` in ``folder``, preferring the folder's own NAME."""
    pairs: dict[str, dict[str, tuple[Path, Path]]] = {}
    for train in folder.iterdir():
        match = _ARCHIVE_PART.match(train.name)
        suffix = (match["suffix"] or "") if match else None
        if not train.is_file() or suffix is None or suffix.lower() not in _ARCHIVE_SUFFIXES:
            continue
        test = folder / f"{match['name']}_TEST{suffix}"
        if test.is_file():
            pairs.setdefault(match["name"], {})[suffix.lower()] = (train, test)
    if not pairs:
        return None

    names = sorted(pairs)
    if len(names) > 1:
        names = [name for name in names if name.lower() == folder.name.lower()]
        if len(names) != 1:
            raise DataError(
                f"{folder}: holds several data sets ({', '.join(sorted(pairs))}); "
                "move one into a folder of its own, or pass one file"
            )
    versions = pairs[names[0]]
    return versions[next(s for s in _ARCHIVE_SUFFIXES if s in versions)]


def _first_line(path: Path) -> str:
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if line.strip():
                return line.strip()
    return ""


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@contextlib.contextmanager
def _readable(path: Path) -> Iterator[None]:
    """Turn an operating-system error while reading ``path`` into a `DataError`."""
    try:
        yield
    except OSError as error:
        where = error.filename or path
        raise DataError(f"{where}: cannot be read ({error.strerror or error})") from None


def detect_format(path: Path) -> str:
    """The format of a file or folder: archive, ts, arff, ucr, npz, pamap2, uci-har, wisdm."""
    if path.is_dir():
        if _pamap2_files(path):
            return "pamap2"
        if _uci_har_root(path) is not None:
            return "uci-har"
        if _archive_pair(path) is not None:
            return "archive"
        raise DataError(
            f"{path}: no data set found; a folder must hold NAME_TRAIN.* and NAME_TEST.* "
            "(UEA/UCR), subject*.dat files (PAMAP2), or train/ and test/ with "
            "'Inertial Signals' (UCI-HAR)"
        )

    suffix = path.suffix.lower()
    if suffix == ".npz":
        return "npz"
    if suffix == ".dat":
        return "pamap2"
    if suffix in (".ts", ".arff"):
        return suffix[1:]
    if suffix == ".txt":
        fields = _first_line(path).split(",")
        return "wisdm" if len(fields) >= 4 and not _is_number(fields[1]) else "ucr"
    if suffix in (".tsv", ".csv", ""):
        return "ucr"
    raise DataError(
        f"{path}: unknown format {suffix!r}; known: .ts, .arff, .txt, .tsv, .csv (UEA/UCR), "
        ".npz, .dat (PAMAP2), .txt (WISDM), or a folder"
    )


def windowing(
    fmt: str | None, source: str | Path, window: int | None, step: int | None
) -> tuple[int, int] | None:
    """The (window, step) for a raw-recording format; None for data cut into windows already.

    Raises `DataError` when a window length or step is given for windowed data, or is out
    of range.
    """
    if fmt not in WINDOWING:
        if window is not None or step is not None:
            raise DataError(
                f"{source} is cut into windows already; a window length and step apply to "
                "raw recordings only (PAMAP2, WISDM)"
            )
        return None
    window = WINDOWING[fmt][0] if window is None else int(window)
    step = WINDOWING[fmt][1] if step is None else int(step)
    if window < 2 or step < 1:
        raise DataError(
            f"window length must be at least 2 and step at least 1, got {window}, {step}"
        )
    return window, step


def source_name(path: Path, window: int | None = None, step: int | None = None) -> str:
    """``stem-hash`` of a file or folder (plus ``-wWsS`` for a non-default windowing).

    The hash is of the resolved path, so the same data reached by another relative path
    keeps its name, and two folders of the same name elsewhere do not share one.
    """
    with _readable(path):
        fmt = detect_format(path)
        root = (_uci_har_root(path) if fmt == "uci-har" else path).resolve()
    cut = windowing(fmt, path, window, step)
    stem = root.name if root.is_dir() else root.stem
    slug = re.sub(r"[^a-z0-9_.-]+", "-", stem.lower()).strip("-.")[:32] or "data"
    name = f"{slug}-{hashlib.sha256(str(root).encode()).hexdigest()[:8]}"
    if cut is not None and cut != WINDOWING[fmt]:
        name += f"-w{cut[0]}s{cut[1]}"
    return name


def read_source(
    path: Path, name: str, window: int | None = None, step: int | None = None
) -> Dataset:
    """Read a file or folder in any known format as a data set called ``name``."""
    with _readable(path):
        fmt = detect_format(path)
        cut = windowing(fmt, path, window, step)
        if fmt == "npz":
            return _read_npz(path, name)
        if fmt == "pamap2":
            return _read_pamap2(path, name, *cut)
        if fmt == "wisdm":
            return _read_wisdm(path, name, *cut)
        if fmt == "uci-har":
            return _read_uci_har(_uci_har_root(path), name)
        if fmt == "archive":
            train, test = _archive_pair(path)
            return _read_archive(name, path, [(train, False), (test, True)])
        return _read_archive(name, path, [(path, False)])


# --- UEA / UCR archives ----------------------------------------------------------------


def _numbers(tokens: list[str], path: Path, number: int) -> np.ndarray:
    """Values of one series; ``?`` is a missing value (NaN)."""
    try:
        return np.array([token.strip().replace("?", "nan") for token in tokens], dtype=float)
    except ValueError:
        shown = ",".join(tokens)[:40]
        raise DataError(f"{path}, line {number}: not a list of numbers: {shown!r}") from None


def _parse_ts(path: Path) -> tuple[list[list[np.ndarray]], list[str]]:
    """A ``.ts`` file: ``@`` header lines, ``@data``, then ``dim1:dim2:...:label`` lines."""
    cases, labels = [], []
    in_data, has_labels = False, False
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                words = line.lower().split()
                if words[0] == "@timestamps" and words[1:2] == ["true"]:
                    raise DataError(f"{path}: time-stamped series are not supported")
                if words[0] == "@classlabel":
                    has_labels = words[1:2] == ["true"]
                elif words[0] == "@data":
                    in_data = True
                elif not words[0].startswith("@"):
                    raise DataError(f"{path}, line {number}: expected a header line (@...)")
                continue
            if not has_labels:
                raise DataError(f"{path}: no class labels (the header needs @classLabel true)")
            *dimensions, label = line.split(":")
            if not dimensions:
                raise DataError(f"{path}, line {number}: expected values:...:label")
            cases.append([_numbers(text.split(","), path, number) for text in dimensions])
            labels.append(label.strip())
    if not in_data:
        raise DataError(f"{path}: not a .ts file (no @data line)")
    return cases, labels


def _parse_arff(path: Path) -> tuple[list[list[np.ndarray]], list[str]]:
    """An ``.arff`` file; the class is the last attribute.

    Multivariate UEA files hold one quoted relational value per line, its dimensions
    separated by a literal ``\\n``: ``'1,2,3\\n4,5,6',label``.
    """
    cases, labels = [], []
    in_data = False
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("%"):
                continue
            if not in_data:
                in_data = line.lower() == "@data"
                if not line.startswith("@"):
                    raise DataError(f"{path}, line {number}: expected a header line (@...)")
                continue
            if line.startswith("{"):
                raise DataError(f"{path}, line {number}: sparse ARFF data is not supported")
            if line[0] in "'\"":
                end = line.rfind(line[0])
                if end <= 0:
                    raise DataError(f"{path}, line {number}: unbalanced quote")
                dimensions = line[1:end].split("\\n")
                label = line[end + 1 :].lstrip(" ,")
            else:
                *values, label = line.split(",")
                dimensions = [",".join(values)]
            cases.append([_numbers(text.split(","), path, number) for text in dimensions])
            labels.append(label.strip().strip("'\""))
    if not in_data:
        raise DataError(f"{path}: not an ARFF file (no @data line)")
    return cases, labels


def _parse_ucr(path: Path) -> tuple[list[list[np.ndarray]], list[str]]:
    """The UCR text layout: ``label value value ...`` a line (tabs, commas or spaces)."""
    cases, labels = [], []
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            tokens = re.split(r"[\s,]+", line.strip())
            if tokens == [""]:
                continue
            if len(tokens) < 2:
                raise DataError(f"{path}, line {number}: expected a label and values")
            cases.append([_numbers(tokens[1:], path, number)])
            labels.append(tokens[0])
    return cases, labels


_PARSERS = {".ts": _parse_ts, ".arff": _parse_arff}


def _without_padding(series: np.ndarray) -> np.ndarray:
    known = np.flatnonzero(~np.isnan(series))
    return series[: known[-1] + 1] if len(known) else series[:0]


def _read_archive(name: str, source: Path, parts: list[tuple[Path, bool]]) -> Dataset:
    """Series of one or two archive files (the second the test part), aligned in length."""
    cases, labels, test_mask = [], [], []
    for path, is_test in parts:
        file_cases, file_labels = _PARSERS.get(path.suffix.lower(), _parse_ucr)(path)
        if not file_cases:
            raise DataError(f"{path}: holds no series")
        dimensions = {len(case) for case in file_cases} | {len(c) for c in cases[:1]}
        if len(dimensions) > 1:
            raise DataError(f"{path}: series with different numbers of dimensions {dimensions}")
        series = [[_without_padding(s) for s in case] for case in file_cases]
        if any(len(s) == 0 for case in series for s in case):
            raise DataError(f"{path}: a series without values")
        if any(np.isnan(s).any() for case in series for s in case):
            raise DataError(f"{path}: missing values inside a series; fill or drop them")
        cases += series
        labels += file_labels
        test_mask += [is_test] * len(file_cases)

    lengths = np.array([[len(s) for s in case] for case in cases])
    longest = int(lengths.max())
    if lengths.min() != longest:
        logger.info(
            "%s: series of %d to %d samples, resampled to %d",
            source,
            lengths.min(),
            longest,
            longest,
        )
    X = np.empty((len(cases), lengths.shape[1], longest))
    for length in np.unique(lengths):
        where = np.argwhere(lengths == length)
        stacked = np.stack([cases[i][d] for i, d in where])
        X[where[:, 0], where[:, 1]] = resample(stacked, longest)

    if all(_is_number(label) for label in labels):
        labels = np.array(labels, dtype=float)
    return from_arrays(name, X, labels, np.array(test_mask), origin=str(source))


# --- NumPy ------------------------------------------------------------------------------


def _read_npz(path: Path, name: str) -> Dataset:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        reason = str(error) or type(error).__name__
        raise DataError(f"{path}: not a readable NumPy .npz archive ({reason})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: holds one array; save X and y together with np.savez")
    with archive:
        missing = [key for key in ("X", "y") if key not in archive.files]
        if missing:
            raise DataError(
                f"{path}: no {' or '.join(missing)} array; an .npz needs X (n, channels, "
                "length) and y (n,), and may hold subject (n,) and split (n,)"
            )
        try:
            arrays = {k: archive[k] for k in ("X", "y", "subject", "split") if k in archive.files}
        except ValueError as error:
            raise DataError(
                f"{path}: {error}; save labels, subjects and split as number or string arrays"
            ) from None

    test_mask = None
    if "split" in arrays:
        split = np.char.lower(label_text(arrays["split"], str(path)))
        unknown = sorted(set(split.tolist()) - {"train", "test"})
        if unknown:
            raise DataError(f"{path}: split values must be 'train' or 'test', found {unknown[:5]}")
        test_mask = split == "test"
    return from_arrays(
        name, arrays["X"], arrays["y"], test_mask, arrays.get("subject"), origin=str(path)
    )


# --- raw recordings: windows ------------------------------------------------------------


def run_windows(keys: np.ndarray, window: int, step: int) -> np.ndarray:
    """Start indices of windows of ``window`` samples, ``step`` apart, inside each run of
    equal consecutive ``keys``; a run of length L gives floor((L - window) / step) + 1."""
    bounds = np.r_[0, np.flatnonzero(keys[1:] != keys[:-1]) + 1, len(keys)]
    starts = [
        begin + step * np.arange((end - begin - window) // step + 1)
        for begin, end in zip(bounds[:-1], bounds[1:], strict=True)
        if end - begin >= window
    ]
    return np.concatenate(starts) if starts else np.zeros(0, np.int64)


def _cut(samples: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
    """Windows (n, channels, window) of ``samples`` (time, channels) at ``starts``."""
    views = np.lib.stride_tricks.sliding_window_view(samples, window, axis=0)
    return views[starts]


def _read_table(path: Path, usecols=None, what: str = "numbers") -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: missing")
    try:
        return np.loadtxt(path, dtype=np.float64, usecols=usecols, ndmin=2)
    except ValueError as error:
        raise DataError(f"{path}: not {what}: {error}") from None


# --- PAMAP2 -----------------------------------------------------------------------------


def _fill_gaps(columns: np.ndarray, path: Path) -> None:
    """Fill non-finite values of each column by linear interpolation over the sample index."""
    index = np.arange(len(columns))
    for position in range(columns.shape[1]):
        column = columns[:, position]
        known = np.isfinite(column)
        if known.all():
            continue
        if not known.any():
            raise DataError(f"{path}: {PAMAP2_CHANNELS[position]} holds no values at all")
        column[~known] = np.interp(index[~known], index[known], column[known])


def _pamap2_recording(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The 40 kept channels (gaps filled, every third sample) and activity ids of one file."""
    what = f"a PAMAP2 protocol file ({_PAMAP2_WIDTH} space-separated numbers a line)"
    width = len(_first_line(path).split())
    if width != _PAMAP2_WIDTH:
        raise DataError(f"{path}: not {what}; the first line has {width}")
    table = _read_table(path, usecols=_PAMAP2_COLUMNS, what=what)

    activity = table[:, 0]
    if not np.isfinite(activity).all():
        raise DataError(f"{path}: activity ids are missing in some lines")
    signals = table[:, 1:]
    _fill_gaps(signals, path)
    keep = slice(None, None, _PAMAP2_DOWNSAMPLE)
    return signals[keep].astype(np.float32), activity[keep].astype(np.int64)


def _read_pamap2(path: Path, name: str, window: int, step: int) -> Dataset:
    files = _pamap2_files(path) if path.is_dir() else [path]
    windows, labels, subjects = [], [], []
    for file in files:
        signals, activity = _pamap2_recording(file)
        starts = run_windows(activity, window, step)
        starts = starts[np.isin(activity[starts], list(PAMAP2_ACTIVITIES))]
        match = re.fullmatch(r"subject(\d+)", file.stem)
        windows.append(_cut(signals, starts, window))
        labels += [PAMAP2_ACTIVITIES[code] for code in activity[starts].tolist()]
        subjects += [match[1] if match else file.stem] * len(starts)
    if not labels:
        raise DataError(
            f"{path}: no window of {window} samples within one protocol activity; "
            "try a shorter window"
        )
    return from_arrays(
        name, np.concatenate(windows), np.array(labels), subjects=subjects, origin=str(path)
    )


# --- UCI-HAR ----------------------------------------------------------------------------


def _uci_har_activity_names(root: Path) -> dict[int, str]:
    path = root / "activity_labels.txt"
    if not path.is_file():
        return {}
    names = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        code, _, label = line.strip().partition(" ")
        if code.isdigit() and label.strip():
            names[int(code)] = label.strip()
    return names


def _read_uci_har(root: Path, name: str) -> Dataset:
    names = _uci_har_activity_names(root)
    windows, labels, subjects, test_mask = [], [], [], []
    for part in ("train", "test"):
        signals = root / part / "Inertial Signals"
        channels = [_read_table(signals / f"{s}_{part}.txt") for s in UCI_HAR_SIGNALS]
        shapes = sorted({channel.shape for channel in channels})
        if len(shapes) != 1:
            raise DataError(f"{signals}: the nine signal files differ in shape: {shapes}")
        count = shapes[0][0]
        for kind, collected in (("y", labels), ("subject", subjects)):
            path = root / part / f"{kind}_{part}.txt"
            values = _read_table(path)
            if values.shape != (count, 1):
                raise DataError(
                    f"{path}: {values.shape[0]} lines of {values.shape[1]} values; expected "
                    f"one value for each of the {count} windows in {signals}"
                )
            collected.append(label_text(values[:, 0], str(path)))
        windows.append(np.stack(channels, axis=1))
        test_mask.append(np.full(count, part == "test"))

    codes = np.concatenate(labels)
    y = np.array([names.get(int(code), code) if code.isdigit() else code for code in codes])
    return from_arrays(
        name,
        np.concatenate(windows),
        y,
        np.concatenate(test_mask),
        np.concatenate(subjects),
        origin=str(root),
    )


# --- WISDM ------------------------------------------------------------------------------


def _read_wisdm(path: Path, name: str, window: int, step: int) -> Dataset:
    users, activities, runs, samples = [], [], [], []
    malformed, first_malformed = 0, 0
    previous, run = None, -1
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            for record in line.split(";"):
                record = record.strip()
                if not record:
                    continue
                fields = [field.strip() for field in record.split(",")]
                try:
                    if len(fields) != 6 or not fields[0] or not fields[1]:
                        raise ValueError(record)
                    float(fields[2])
                    xyz = (float(fields[3]), float(fields[4]), float(fields[5]))
                    if not all(map(math.isfinite, xyz)):
                        raise ValueError(record)
                except ValueError:
                    malformed += 1
                    first_malformed = first_malformed or number
                    continue
                key = (fields[0], fields[1])
                if key != previous:
                    previous, run = key, run + 1
                users.append(fields[0])
                activities.append(fields[1])
                runs.append(run)
                samples.append(xyz)

    if malformed:
        logger.warning(
            "%s: skipped %d malformed records (the first on line %d)",
            path,
            malformed,
            first_malformed,
        )
    if not samples:
        raise DataError(f"{path}: no WISDM records (user,activity,timestamp,x,y,z;)")
    starts = run_windows(np.array(runs), window, step)
    if not len(starts):
        raise DataError(
            f"{path}: no run of one user and activity is {window} samples long; "
            "try a shorter window"
        )
    X = _cut(np.array(samples, dtype=np.float32), starts, window)
    return from_arrays(
        name,
        X,
        np.array(activities)[starts],
        subjects=np.array(users)[starts],
        origin=str(path),
    )
