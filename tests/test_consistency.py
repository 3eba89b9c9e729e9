"""Nothing lost, nothing stuck: Optuna and MLflow agree trial by trial after real searches."""

import subprocess
import sys

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from search.cli import main

EXPERIMENT = "mmkd-basicmotions"
NONFINITE = "loss became NaN or infinite"


def _trials(folder, study_name):
    storage = f"sqlite:///{folder}/optuna.db"
    return optuna.load_study(study_name=study_name, storage=storage).get_trials()


def _trial_runs(folder, study_name):
    """Every MLflow trial run of the study, keyed by run id."""
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs(
        [experiment.experiment_id],
        f"tags.kind = 'trial' and tags.study = '{study_name}'",
        max_results=1000,
    )
    return {run.info.run_id: run for run in runs}


def _assert_optuna_and_mlflow_agree(folder, study_name):
    """One MLflow run per Optuna trial and back, with the same state, value and params.

    Returns the trials, so that a test can go on with its own assertions.
    """
    trials = _trials(folder, study_name)
    runs = _trial_runs(folder, study_name)
    assert len({t.number for t in trials}) == len(trials)

    run_ids = [t.user_attrs["mlflow_run_id"] for t in trials]
    assert len(set(run_ids)) == len(trials)
    assert set(run_ids) == set(runs)
    for trial in trials:
        assert trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        run = runs[trial.user_attrs["mlflow_run_id"]]
        tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
        assert tags["trial_number"] == str(trial.number)
        assert tags["state"] == trial.state.name
        if trial.state == TrialState.FAIL:
            assert run.info.status in ("FAILED", "KILLED")
            continue
        assert run.info.status == "FINISHED"
        assert tags["stop_reason"] == trial.user_attrs["stop_reason"]
        assert metrics.get("test_acc") == trial.user_attrs.get("test_acc")
        assert metrics["epochs_run"] == trial.user_attrs["epochs_run"]
        assert {key: params[key] for key in trial.params} == {
            key: str(value) for key, value in trial.params.items()
        }
        if trial.value is not None:
            assert metrics["best_val_acc"] == trial.value
    return trials


def test_sixty_trials_on_four_workers_each_once_in_optuna_and_in_mlflow(
    ray_runtime, cache_dir, workdir
):
    study_name = "sixty"
    code = main(
        [
            "--method",
            "student",
            "--study",
            study_name,
            "--trials",
            "60",
            "--epochs",
            "2",
            "--workers",
            "4",
            "--cpus-per-trial",
            "0.5",
            "--cache-dir",
            str(cache_dir),
        ]
    )
    assert code == 0

    trials = _assert_optuna_and_mlflow_agree(workdir, study_name)
    assert len(trials) == 60
    assert sorted(t.number for t in trials) == list(range(60))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert len(_trial_runs(workdir, study_name)) == 60
    # Four workers really ran side by side, each in its own process.
    assert sorted({t.user_attrs["worker"] for t in trials}) == [0, 1, 2, 3]
    assert len({t.user_attrs["worker_pid"] for t in trials}) == 4


def test_same_seed_on_one_worker_gives_the_same_trials(ray_runtime, cache_dir, workdir):
    command = ["--method", "aver", "--teachers", "sig", "--teacher-epochs", "6", "--seed", "7"]
    command += ["--trials", "3", "--epochs", "2", "--workers", "1", "--cache-dir", str(cache_dir)]
    study_name = "aver-basicmotions-quick-sig-stratified-seed7"
    searches = []
    for folder in (workdir / "first", workdir / "second"):
        folder.mkdir()
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(folder)
            assert main(command) == 0
        searches.append(_assert_optuna_and_mlflow_agree(folder, study_name))

    first, second = searches
    assert [t.number for t in first] == [t.number for t in second] == [0, 1, 2]
    assert [t.state for t in first] == [t.state for t in second]
    assert [t.params for t in first] == [t.params for t in second]
    assert [t.value for t in first] == [t.value for t in second]
    assert [t.intermediate_values for t in first] == [t.intermediate_values for t in second]
    assert [t.user_attrs["test_acc"] for t in first] == [t.user_attrs["test_acc"] for t in second]
    # Three different points were tried, so the equality above is not that of constants.
    assert len({tuple(sorted(t.params.items())) for t in first}) == 3


def test_a_nonfinite_loss_prunes_its_trial_and_the_search_goes_on(ray_runtime, cache_dir, workdir):
    # Gradient clipping keeps lr=1000 finite; 1e12 overflows after its first epoch, 1e20
    # within the first epoch, before any validation. With seed 2 the sampler's first,
    # random trials try all three.
    space = workdir / "diverging.yaml"
    space.write_text("lr: {type: categorical, choices: [0.05, 1.0e12, 1.0e20]}\n")
    study_name = "diverging"
    code = main(
        [
            "--method",
            "student",
            "--study",
            study_name,
            "--space",
            str(space),
            "--seed",
            "2",
            "--trials",
            "6",
            "--epochs",
            "3",
            "--pruner",
            "none",
            "--workers",
            "1",
            "--cache-dir",
            str(cache_dir),
        ]
    )
    assert code == 0

    trials = _assert_optuna_and_mlflow_agree(workdir, study_name)
    runs = {
        run.data.tags["trial_number"]: run for run in _trial_runs(workdir, study_name).values()
    }
    assert len(trials) == 6
    assert {t.params["lr"] for t in trials} == {0.05, 1e12, 1e20}
    for trial in trials:
        run = runs[str(trial.number)]
        if trial.params["lr"] == 0.05:
            assert trial.state == TrialState.COMPLETE
            assert trial.user_attrs["stop_reason"].startswith("stopped after")
            continue
        assert trial.state == TrialState.PRUNED
        assert trial.user_attrs["stop_reason"] == NONFINITE
        assert run.data.tags["stop_reason"] == NONFINITE
        assert run.data.tags["state"] == "PRUNED"
        if trial.params["lr"] == 1e12:
            assert trial.user_attrs["epochs_run"] >= 1
            assert trial.value == run.data.metrics["best_val_acc"]
        else:
            assert trial.user_attrs["epochs_run"] == 0
            assert trial.value is None
            # Nothing was validated: no accuracy on either side, not a made-up 0.
            assert "test_acc" not in trial.user_attrs
            assert "best_val_acc" not in run.data.metrics
            assert "test_acc" not in run.data.metrics


def test_a_deleted_optuna_database_is_refused_rather_than_starting_the_study_again(
    ray_runtime, cache_dir, workdir, capsys
):
    command = ["--method", "student", "--study", "kept", "--trials", "1", "--epochs", "1"]
    command += ["--cache-dir", str(cache_dir)]
    assert main(command) == 0
    for name in ("optuna.db", "optuna.db-wal", "optuna.db-shm"):
        (workdir / name).unlink(missing_ok=True)
    capsys.readouterr()

    assert main(command) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert "holds trials of a study 'kept' that this Optuna storage does not have" in lines[0]
    assert not (workdir / "optuna.db").exists()
    assert len(_trial_runs(workdir, "kept")) == 1

    # Another Optuna database that has a study of that name, not started by this tool.
    optuna.create_study(storage="sqlite:///other.db", study_name="kept")
    capsys.readouterr()
    assert main([*command, "--storage", "sqlite:///other.db"]) == 2
    assert "that this Optuna storage does not have" in capsys.readouterr().err
    assert len(_trial_runs(workdir, "kept")) == 1

    # A new name starts a new study beside the old one's runs.
    assert main([*command[:2], "--study", "renewed", *command[4:]]) == 0
    assert len(_trial_runs(workdir, "renewed")) == 1


def test_a_lost_mlflow_store_or_an_older_optuna_copy_is_refused(
    ray_runtime, cache_dir, workdir, capsys
):
    import shutil

    command = ["--method", "student", "--study", "pair", "--epochs", "1"]
    command += ["--cache-dir", str(cache_dir)]
    assert main([*command, "--trials", "1"]) == 0
    (workdir / "backup").mkdir()
    for name in ("optuna.db", "optuna.db-wal", "optuna.db-shm"):
        if (workdir / name).exists():
            shutil.copy(workdir / name, workdir / "backup" / name)
    assert main([*command, "--trials", "2"]) == 0

    # The Optuna database put back as it was after the first trial.
    for name in ("optuna.db", "optuna.db-wal", "optuna.db-shm"):
        (workdir / name).unlink(missing_ok=True)
        if (workdir / "backup" / name).exists():
            shutil.copy(workdir / "backup" / name, workdir / name)
    capsys.readouterr()
    assert main([*command, "--trials", "3"]) == 2
    assert "the MLflow store holds trial 1 of study 'pair'" in capsys.readouterr().err
    assert len(_trial_runs(workdir, "pair")) == 2

    # The MLflow store gone while the Optuna database holds the study's trials. In a new
    # process: this one keeps MLflow's store of the deleted file open.
    for name in ("mlflow.db", "mlflow.db-wal", "mlflow.db-shm"):
        (workdir / name).unlink(missing_ok=True)
    shutil.rmtree(workdir / "mlruns")
    code = "import sys; from search.cli import main; sys.exit(main(sys.argv[1:]))"
    rerun = subprocess.run(
        [sys.executable, "-c", code, *command, "--trials", "3"], capture_output=True, text=True
    )
    assert rerun.returncode == 2, rerun.stderr
    error = rerun.stderr.splitlines()[-1]
    assert "study 'pair' has 1 trials but the MLflow store has no search of that name" in error
