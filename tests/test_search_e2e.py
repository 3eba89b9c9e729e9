"""One real search end to end: two Ray workers, sqlite Optuna and MLflow, then `best`."""

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from search.cli import main

STUDY = "ebkd-basicmotions-quick-sig+gaf+pi-stratified-seed0"
SEARCH = ["--method", "ebkd", "--trials", "6", "--epochs", "4", "--workers", "2"]
SEARCH += ["--teacher-epochs", "6"]


@pytest.fixture(scope="module")
def finished_search(ray_runtime, cache_dir, tmp_path_factory):
    """`mmkd-search --method ebkd --trials 6 --epochs 4 --workers 2` in a fresh folder."""
    folder = tmp_path_factory.mktemp("search")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        code = main([*SEARCH, "--cache-dir", str(cache_dir)])
    assert code == 0
    return folder


def _study(folder):
    return optuna.load_study(study_name=STUDY, storage=f"sqlite:///{folder}/optuna.db")


def test_budget_holds_exactly(finished_search):
    trials = _study(finished_search).get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 6
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert (finished_search / "optuna.db").is_file()
    assert (finished_search / "mlflow.db").is_file()


def test_every_trial_has_one_nested_mlflow_run(finished_search):
    client = MlflowClient(f"sqlite:///{finished_search}/mlflow.db")
    experiment = client.get_experiment_by_name("mmkd-basicmotions")
    runs = client.search_runs([experiment.experiment_id], "tags.kind = 'trial'")
    parents = client.search_runs([experiment.experiment_id], "tags.kind = 'search'")
    assert len(parents) == 1
    assert len(runs) == 6
    assert {run.data.tags["mlflow.parentRunId"] for run in runs} == {parents[0].info.run_id}

    trials = {t.number: t for t in _study(finished_search).get_trials()}
    for run in runs:
        trial = trials[int(run.data.tags["trial_number"])]
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        assert run.data.tags["state"] == trial.state.name
        assert 0.0 <= run.data.metrics["best_val_acc"] <= 1.0
        assert "test_acc" in run.data.metrics
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.yaml", "checkpoint.pt"} <= artifacts
        if trial.state == TrialState.COMPLETE:
            assert run.data.metrics["best_val_acc"] == pytest.approx(trial.value)


def test_best_prints_the_study_best_trial(finished_search, monkeypatch, capsys):
    monkeypatch.chdir(finished_search)
    output = finished_search / "best.yaml"
    assert main(["best", "--method", "ebkd", "--output", str(output)]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    best = _study(finished_search).best_trial
    assert printed["trial"] == best.number
    assert printed["params"] == best.params
    assert printed["best_val_acc"] == pytest.approx(best.value)
    assert yaml.safe_load(output.read_text()) == printed

    assert main(["best", "--method", "ebkd", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == best.params


def test_rerun_resumes_to_the_same_total(finished_search, cache_dir, monkeypatch):
    monkeypatch.chdir(finished_search)
    assert main([*SEARCH, "--cache-dir", str(cache_dir)]) == 0
    trials = _study(finished_search).get_trials()
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 6


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_optuna_dashboard_serves_the_study(finished_search):
    port = _free_port()
    command = Path(sys.executable).with_name("optuna-dashboard")
    dashboard = subprocess.Popen(
        [
            str(command),
            f"sqlite:///{finished_search}/optuna.db",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        body = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/studies", timeout=5
                ) as r:
                    body = json.loads(r.read())
            except OSError:
                time.sleep(0.5)
        assert body is not None, "optuna-dashboard did not answer"
        names = [study["study_name"] for study in body["study_summaries"]]
        assert names == [STUDY]
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=30)


def test_best_of_an_unknown_study_lists_the_known_ones(finished_search, monkeypatch, capsys):
    monkeypatch.chdir(finished_search)
    assert main(["best", "--method", "ebkd", "--study", "nosuch"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1
    assert "no study 'nosuch'" in error[0] and STUDY in error[0]


def test_config_artifact_holds_only_the_methods_keys(finished_search, monkeypatch, capsys):
    monkeypatch.chdir(finished_search)
    assert main(["best", "--method", "ebkd"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)["config"]
    assert set(config) == {
        "optimizer",
        "lr",
        "momentum",
        "weight_decay",
        "schedule",
        "batch_size",
        "grad_clip",
        "lambda1",
        "lambda2",
        "lambda3",
        "temperature",
        "beta",
        "heads",
        "branches",
    }


def test_the_best_student_is_rebuilt_from_what_best_prints(
    finished_search, cache_dir, monkeypatch, capsys
):
    import torch

    from mmkd.data import SplitSettings, load_dataset, split_dataset
    from mmkd.modalities import ModalitySettings, compute_modalities
    from mmkd.nets import load_student
    from mmkd.train import accuracy
    from search.presets import PRESETS

    monkeypatch.chdir(finished_search)
    assert main(["best", "--method", "ebkd"]) == 0
    best = yaml.safe_load(capsys.readouterr().out)
    assert best["student"]["branches"] == best["config"]["branches"].split("+")
    assert best["student"]["heads"] == best["config"]["heads"]
    student = load_student(best["student"], best["checkpoint"])

    # Its test accuracy, measured again here, is the one the trial recorded.
    dataset = load_dataset("basicmotions")
    split = split_dataset(dataset, SplitSettings(), 0)
    settings = ModalitySettings(image_size=PRESETS["quick"].image_size)
    arrays = compute_modalities(dataset.X, split.train, settings, cache_dir)
    inputs = {name: torch.from_numpy(arrays[name]) for name in best["student"]["branches"]}
    labels = torch.from_numpy(dataset.y).long()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the worker
    try:
        measured = accuracy(student, inputs, labels, torch.as_tensor(split.test))
    finally:
        torch.set_num_threads(threads)
    assert measured == best["test_acc"]
