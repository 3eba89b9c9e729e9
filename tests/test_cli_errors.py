"""Mistakes on the command line: one line on stderr, exit code 2, nothing created.

All but the last two tests call `main` in-process, so they cost no interpreter start.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest

from mmkd.methods import METHODS
from search.cli import main

BAD_SPACES = {
    "bad.yaml": "lr: {type: float, low: 0.01\n",
    "unknown.yaml": "lamda3: 1.0\n",
    "empty.npz": "",
    "junk.db": "not a database\n",
    "huge.yaml": "temperature: {type: float, low: 1.0, high: 1.0e200}\n",
    "heads.yaml": "heads: {type: int, low: 3, high: 4}\n",
}

# Each case: the arguments, and the words the error line must contain (the option or file).
CASES = {
    "unknown method": (["--method", "nosuch"], ["--method", "nosuch"]),
    "missing method": ([], ["--method"]),
    "unknown dataset": (["--method", "ebkd", "--dataset", "nosuch"], ["--dataset", "nosuch"]),
    "zero trials": (["--method", "ebkd", "--trials", "0"], ["--trials"]),
    "zero workers": (["--method", "ebkd", "--workers", "0"], ["--workers"]),
    "negative epochs": (["--method", "ebkd", "--epochs", "-1"], ["--epochs"]),
    "fractional trials": (["--method", "ebkd", "--trials", "2.5"], ["--trials"]),
    "validation share above 1": (["--method", "ebkd", "--val-share", "1.5"], ["--val-share"]),
    "unknown preset": (["--method", "ebkd", "--preset", "huge"], ["--preset"]),
    "missing space file": (
        ["--method", "ebkd", "--space", "missing.yaml"],
        ["missing.yaml", "cannot read"],
    ),
    "invalid space YAML": (["--method", "ebkd", "--space", "bad.yaml"], ["bad.yaml", "YAML"]),
    "unknown space key": (
        ["--method", "ebkd", "--space", "unknown.yaml"],
        ["unknown.yaml", "lamda3"],
    ),
    "set without a value": (["--method", "ebkd", "--set", "lr"], ["--set", "lr"]),
    "set of a zero temperature": (
        ["--method", "ebkd", "--set", "temperature=0"],
        ["--set", "temperature"],
    ),
    "set of a parameter the method lacks": (
        ["--method", "student", "--set", "beta=0.5"],
        ["--set", "beta"],
    ),
    "unknown teacher": (["--method", "ebkd", "--teachers", "sig,gaf,foo"], ["--teachers"]),
    "teachers the method cannot do without": (
        ["--method", "ebkd", "--teachers", "pi"],
        ["--teachers", "sig", "gaf"],
    ),
    "storage not a URL": (["--method", "ebkd", "--storage", "not-a-url"], ["--storage"]),
    "storage in a missing folder": (
        ["--method", "ebkd", "--storage", "sqlite:////nonexistent/dir/x.db"],
        ["--storage", "/nonexistent/dir"],
    ),
    "tracking URI not a URL": (
        ["--method", "ebkd", "--tracking-uri", "mlflow.db"],
        ["--tracking-uri"],
    ),
    "negative learning rate": (["--method", "ebkd", "--set", "lr=-1"], ["lr", "positive"]),
    "momentum of 1 or more": (["--method", "ebkd", "--set", "momentum=5"], ["momentum"]),
    "negative loss weight": (["--method", "ebkd", "--set", "lambda1=-1"], ["lambda1"]),
    "heads that do not divide the width": (
        ["--method", "ebkd", "--set", "heads=3"],
        ["heads", "64"],
    ),
    "more CPUs per trial than the machine has": (
        ["--method", "student", "--cpus-per-trial", "999"],
        ["--cpus-per-trial"],
    ),
    "empty npz file": (["--method", "student", "--dataset", "empty.npz"], ["empty.npz"]),
    "windows shorter than the images": (
        ["--method", "student", "--dataset", "synthetic:n=60,length=16"],
        ["16 samples", "32x32"],
    ),
    "storage file that is no database": (
        ["--method", "student", "--storage", "sqlite:///junk.db"],
        ["--storage", "junk.db", "not a database"],
    ),
    "study name with a quote": (["--method", "student", "--study", "my'study"], ["--study"]),
    "storage in memory": (
        ["--method", "student", "--storage", "sqlite:///:memory:"],
        ["--storage", ":memory:"],
    ),
    "cache folder that is a file": (
        ["--method", "student", "--cache-dir", "junk.db"],
        ["--cache-dir", "junk.db", "not a folder"],
    ),
    "storage server that cannot be reached": (
        ["--method", "student", "--storage", "postgresql://127.0.0.1:1/x"],
        ["--storage", "cannot open"],
    ),
    "learning rate beyond float32": (
        ["--method", "ebkd", "--set", "lr=1e300"],
        ["--set", "lr", "1e+300", "beyond 1e+30"],
    ),
    "temperature range beyond float32": (
        ["--method", "ebkd", "--space", "huge.yaml"],
        ["huge.yaml", "temperature", "high 1e+200"],
    ),
    "storage sqlite URL without a file": (
        ["--method", "student", "--storage", "sqlite:///"],
        ["--storage", "no file"],
    ),
    "tracking sqlite URL in memory": (
        ["--method", "student", "--tracking-uri", "sqlite://"],
        ["--tracking-uri", "no file"],
    ),
    "a range of heads with one that does not divide the width": (
        ["--method", "ebkd", "--space", "heads.yaml"],
        ["heads: 3", "64"],
    ),
    "Ray address without a port, by name": (
        ["--method", "student", "--ray-address", "localhost"],
        ["--ray-address", "HOST:PORT"],
    ),
    "negative seed": (["--method", "student", "--seed", "-1"], ["--seed", "-1"]),
    "seed beyond the generators' range": (
        ["--method", "student", "--seed", str(2**32)],
        ["--seed", "2147483647"],
    ),
    "Ray address where nothing answers": (
        ["--method", "student", "--ray-address", "127.0.0.1:1"],
        ["--ray-address", "nothing answers at 127.0.0.1:1"],
    ),
    "Ray address without a port": (
        ["--method", "student", "--ray-address", "127.0.0.1:x"],
        ["--ray-address", "HOST:PORT"],
    ),
    "best before any search": (["best", "--method", "ebkd"], ["--tracking-uri", "mlflow.db"]),
    "best of an unknown method": (["best", "--method", "nosuch"], ["--method"]),
    "studies before any search": (["studies"], ["--storage", "optuna.db"]),
}


@pytest.mark.parametrize("argv, words", CASES.values(), ids=CASES.keys())
def test_mistake_is_one_error_line_and_creates_nothing(tmp_path, monkeypatch, capsys, argv, words):
    monkeypatch.chdir(tmp_path)
    for name, text in BAD_SPACES.items():
        (tmp_path / name).write_text(text)

    code = main(argv)

    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 2
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("mmkd-search: error:")
    for word in words:
        assert word in lines[0]
    for name in ("optuna.db", "mlflow.db", "mlruns", ".mmkd-cache"):
        assert not (tmp_path / name).exists(), name
    assert sorted(os.listdir(tmp_path)) == sorted(BAD_SPACES)


def test_help_lists_every_method(tmp_path):
    executable = shutil.which("mmkd-search")
    assert executable, "the mmkd-search console script is not installed (pip install -e .)"

    result = subprocess.run(
        [executable, "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )

    assert result.returncode == 0, result.stderr
    for name in METHODS:
        assert re.search(rf"^\s+{re.escape(name)}\s", result.stdout, re.MULTILINE), name
    assert os.listdir(tmp_path) == []


def test_help_and_argument_checks_import_nothing_heavy(tmp_path):
    code = (
        "import contextlib, io, sys\n"
        "import search.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    search.cli.main(['--help'])\n"
        "with contextlib.redirect_stderr(io.StringIO()):\n"
        "    assert search.cli.main(['--method', 'ebkd', '--set', 'temperature=0']) == 2\n"
        "heavy = ('torch', 'ray', 'mlflow', 'optuna', 'pyts')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def _make_unwritable(folder):
    """A folder or file that cannot be written: root ignores permission bits, so as root it
    is made immutable instead."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return lambda: folder.chmod(0o755)
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: no way to make a folder unwritable")
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"chattr +i failed here: {done.stderr.decode().strip()}")
    return lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_a_working_folder_that_cannot_be_written_is_refused_before_any_work(
    tmp_path, monkeypatch, capsys
):
    folder = tmp_path / "read-only"
    folder.mkdir()
    restore = _make_unwritable(folder)
    try:
        assert not os.access(folder, os.W_OK)
        monkeypatch.chdir(folder)
        code = main(["--method", "student", "--cache-dir", str(tmp_path / "cache")])
        captured = capsys.readouterr()
        assert os.listdir(folder) == []
    finally:
        restore()
    lines = captured.err.splitlines()
    assert code == 2
    assert len(lines) == 1, captured.err
    assert "not writable" in lines[0] and str(folder) in lines[0]
    assert not (tmp_path / "cache").exists()


def test_each_database_of_the_other_tool_is_refused_and_left_unchanged(
    tmp_path, monkeypatch, capsys
):
    import optuna
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    optuna.create_study(storage="sqlite:///optuna.db", study_name="kept")
    MlflowClient("sqlite:///mlflow.db").search_experiments()
    before = {name: (tmp_path / name).read_bytes() for name in ("optuna.db", "mlflow.db")}

    swapped = ["--storage", "sqlite:///mlflow.db", "--tracking-uri", "sqlite:///optuna.db"]
    for option in ("--storage", "--tracking-uri"):
        argv = (
            ["--method", "student", *swapped[:2]]
            if option == "--storage"
            else [
                "--method",
                "student",
                *swapped[2:],
            ]
        )
        assert main(argv) == 2
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1 and option in lines[0] and "another tool" in lines[0], lines

    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    assert not (tmp_path / "mlruns").exists()


def test_a_database_file_that_cannot_be_written_is_refused_and_left_unchanged(
    tmp_path, monkeypatch, capsys
):
    import optuna

    monkeypatch.chdir(tmp_path)
    optuna.create_study(storage="sqlite:///optuna.db", study_name="kept")
    capsys.readouterr()
    before = (tmp_path / "optuna.db").read_bytes()
    files = sorted(os.listdir(tmp_path))  # with the write-ahead log's files, when in use
    restore = _make_unwritable(tmp_path / "optuna.db")
    try:
        code = main(["--method", "student", "--cache-dir", str(tmp_path / "cache")])
        captured = capsys.readouterr()
        assert sorted(os.listdir(tmp_path)) == files
        # `studies` only reads: the same file is listed.
        assert main(["studies"]) == 0
        listed = capsys.readouterr().out
    finally:
        restore()
    lines = captured.err.splitlines()
    assert code == 2
    assert lines == [
        f"mmkd-search: error: --storage: {tmp_path / 'optuna.db'} is read-only; a search "
        "writes to it"
    ]
    assert listed == "kept: no trials; no complete trial\n"
    assert (tmp_path / "optuna.db").read_bytes() == before


def test_an_artifact_folder_that_is_a_file_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlruns").write_text("not a folder\n")
    assert main(["--method", "student", "--cache-dir", str(tmp_path / "cache")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"mmkd-search: error: {tmp_path / 'mlruns'} (MLflow's artifacts) is not a writable folder"
    ]
    assert sorted(os.listdir(tmp_path)) == ["mlruns"]
