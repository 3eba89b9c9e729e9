"""New sqlite databases appear whole: concurrent creators and interrupted creation."""

import multiprocessing

import optuna
import pytest
from mlflow.tracking import MlflowClient

from search.cli import main
from search.sqlite import ensure_database


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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]


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
