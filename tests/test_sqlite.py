"""New sqlite databases appear whole: concurrent creators and interrupted creation."""

import multiprocessing
import sqlite3

import optuna
import pytest
from mlflow.tracking import MlflowClient

from search.cli import main
from search.sqlite import ensure_database
from search.study import make_storage


def _create_mlflow_database(url):
    ensure_database(url, lambda temporary: MlflowClient(temporary).search_experiments())
    MlflowClient(url).create_experiment(f"made-by-{multiprocessing.current_process().name}")


def test_two_processes_creating_one_mlflow_database_both_succeed(tmp_path):
    url = f"sqlite:///{tmp_path}/mlflow.db"
    context = multiprocessing.get_context("spawn")
    creators = [context.Process(target=_create_mlflow_database, args=(url,)) for _ in range(2)]
    for process in creators:
        process.start()
    for process in creators:
        process.join(timeout=120)

    assert [process.exitcode for process in creators] == [0, 0]
    names = {e.name for e in MlflowClient(url).search_experiments()}
    assert len(names - {"Default"}) == 2
    # No temporary file left; the write-ahead log and its index sit beside the database
    # while a connection (this test's client) is open.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "mlflow.db",
        "mlflow.db-shm",
        "mlflow.db-wal",
    ]
    assert _journal_mode(tmp_path / "mlflow.db") == "wal"


def _journal_mode(path):
    connection = sqlite3.connect(path)
    try:
        return connection.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        connection.close()


def test_databases_use_write_ahead_logging_and_temporary_ones_do_not(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    seen = {}

    def initialise(temporary):
        optuna.storages.RDBStorage(temporary)
        seen["mode"] = _journal_mode(temporary[len("sqlite:///") :])

    ensure_database(url, initialise)
    # Built in rollback mode, so the one file linked into place holds everything.
    assert seen["mode"] == "delete"
    assert _journal_mode(tmp_path / "optuna.db") == "delete"

    storage = make_storage(url)
    optuna.create_study(storage=storage, study_name="wal").optimize(lambda t: 1.0, n_trials=2)
    assert _journal_mode(tmp_path / "optuna.db") == "wal"
    assert len(optuna.load_study(study_name="wal", storage=url).trials) == 2


def test_interrupted_creation_leaves_no_database(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"

    def interrupted(temporary):
        optuna.storages.RDBStorage(temporary)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ensure_database(url, interrupted)
    assert list(tmp_path.iterdir()) == []

    ensure_database(url, optuna.storages.RDBStorage)
    assert optuna.get_all_study_summaries(url) == []


def test_a_tracking_file_that_is_no_database_is_refused_before_any_study(
    tmp_path, monkeypatch, capsys, cache_dir
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlflow.db").write_text("not a database\n")

    assert main(["--method", "student", "--cache-dir", str(cache_dir)]) == 2

    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--tracking-uri" in error[0] and "not a database" in error[0]
    assert not (tmp_path / "optuna.db").exists()


def test_probing_a_write_ahead_log_database_leaves_no_files(tmp_path, monkeypatch, capsys):
    from search.sqlite import existing_database_problem

    connection = sqlite3.connect(tmp_path / "optuna.db")
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE studies (study_id INTEGER)")
    connection.commit()
    connection.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["optuna.db"]

    assert existing_database_problem(tmp_path / "optuna.db", "studies") is None
    problem = existing_database_problem(tmp_path / "optuna.db", "experiments")
    assert problem == "a database without a 'experiments' table (another tool's?)"
    # A command refused after the probe leaves the folder as it was.
    monkeypatch.chdir(tmp_path)
    assert main(["--method", "ebkd", "--set", "lr=-1"]) == 2
    assert "lr" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["optuna.db"]
