"""The actors a search shares and the MLflow side of trials that do not finish: a failed
trial's run written by the tracker, a dead worker's run found again, runs closed when a
search is interrupted, actors restarted after their process died; and workers that never
import mlflow."""

import os
import subprocess
import sys
import time
import uuid

import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from mmkd.data import SplitSettings, load_dataset, split_dataset
from search import tracking
from search.runner import _fail_unfinished
from search.space import load_space
from search.study import FINISHED, fail_and_retry, open_study
from search.workers import (
    MAX_CONSECUTIVE_FAILURES,
    BudgetCounter,
    TrialContext,
    TrialTracker,
    start_search,
)

DATASET = "synthetic:n=60,length=32,channels=3"


def _databases(folder):
    storage_url = f"sqlite:///{folder}/optuna.db"
    tracking_uri = f"sqlite:///{folder}/mlflow.db"
    client = MlflowClient(tracking_uri)
    experiment_id = tracking.ensure_experiment(client, DATASET, folder / "mlruns")
    return storage_url, tracking_uri, client, experiment_id


def _open(folder, name, space):
    storage_url, tracking_uri, client, experiment_id = _databases(folder)
    identity = {"method": "student", "dataset": DATASET, "epochs": 2, "seed": 0}
    study = open_study(storage_url, name, identity, space, tracking_uri)
    parent = tracking.open_parent_run(client, experiment_id, name, identity, {})
    return study, client, experiment_id, parent


def _start(folder, name, space, budget, workers, epochs=2):
    """A search of the Sig student on a small synthetic data set, as the runner starts one
    once its data is ready; returns the study, the MLflow client and experiment, and the
    running search."""
    study, client, experiment_id, parent = _open(folder, name, space)
    dataset = load_dataset(DATASET)
    context = TrialContext(
        method="student",
        dataset=DATASET,
        study=name,
        storage_url=f"sqlite:///{folder}/optuna.db",
        tracking_uri=f"sqlite:///{folder}/mlflow.db",
        experiment_id=experiment_id,
        parent_run_id=parent,
        space=space,
        teachers=(),
        epochs=epochs,
        patience=epochs,
        pruner="none",
        seed=0,
        num_classes=dataset.num_classes,
        in_channels=dataset.in_channels,
        student_depth=10,
        student_width=1,
        image_depth=10,
        threads=1,
        search_id=uuid.uuid4().hex,
    )
    search = start_search(
        context,
        budget=budget,
        workers=workers,
        cpus=1,
        arrays={"sig": dataset.X},
        labels=dataset.y,
        split=split_dataset(dataset, SplitSettings(), 0),
        teacher_records={},
    )
    return study, client, experiment_id, search


def test_a_trial_that_fails_before_training_ends_its_run_as_failed(ray_runtime, tmp_path):
    # A key no configuration has: suggest passes it through, the configuration refuses it.
    space = {**load_space("student", None, None, []), "not_a_key": {"value": 1}}
    study, client, experiment_id, search = _start(tmp_path, "bad-key", space, 5, 1)
    with pytest.raises(ray_runtime.exceptions.RayTaskError) as raised:
        ray_runtime.get(search.tasks)
    search.stop()
    message = "ValueError: unknown configuration keys: not_a_key"
    assert f"{MAX_CONSECUTIVE_FAILURES} trials failed in a row; last error: {message}" in str(
        raised.value
    )

    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * MAX_CONSECUTIVE_FAILURES
    runs = {run.info.run_id: run for run in tracking.trial_runs(client, experiment_id, "bad-key")}
    assert sorted(runs) == sorted(t.user_attrs["mlflow_run_id"] for t in trials)
    for trial in trials:
        assert trial.user_attrs["error"] == message
        run = runs[trial.user_attrs["mlflow_run_id"]]
        assert run.info.status == "FAILED"
        assert run.data.tags["state"] == "FAIL"
        assert run.data.tags["error"] == message
        assert run.data.tags["trial_number"] == str(trial.number)
        details = client.download_artifacts(run.info.run_id, "error.txt", str(tmp_path))
        text = open(details).read()
        assert text.startswith("Traceback") and message in text


def test_a_search_outlives_the_death_of_its_counter_and_tracker_processes(ray_runtime, tmp_path):
    space = load_space("student", None, None, [])
    study, client, experiment_id, search = _start(tmp_path, "actors", space, 8, 2, epochs=6)
    deadline = time.monotonic() + 120
    while not study.get_trials(states=FINISHED) and time.monotonic() < deadline:
        time.sleep(0.2)
    # Ray restarts an actor killed this way, as it does one whose process died.
    ray_runtime.kill(search.counter, no_restart=False)
    ray_runtime.kill(search.tracker, no_restart=False)

    results = ray_runtime.get(search.tasks)
    search.stop()

    trials = study.get_trials()
    finished = [t for t in trials if t.state in FINISHED]
    assert len(finished) == 8
    assert sum(result["ran"] for result in results) == 8
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    runs = {run.info.run_id: run for run in tracking.trial_runs(client, experiment_id, "actors")}
    for trial in finished:
        run = runs[trial.user_attrs["mlflow_run_id"]]
        assert run.info.status == "FINISHED"
        assert run.data.tags["state"] == trial.state.name
        assert run.data.metrics["epochs_run"] == trial.user_attrs["epochs_run"]


def test_a_rebuilt_tracker_writes_no_trial_twice(ray_runtime, tmp_path):
    # What a worker sends again after the tracker's process died: the same start, the same
    # finish. The run and its metrics must exist once.
    study, client, experiment_id, parent = _open(tmp_path, "twice", {"lr": {"value": 0.1}})
    tracker = TrialTracker.remote(f"sqlite:///{tmp_path}/mlflow.db", experiment_id, parent)
    tags = {"kind": "trial", "study": "twice", "trial_number": 0, "search_id": "s"}
    tags["state"] = "RUNNING"
    run_id = ray_runtime.get(tracker.start.remote("trial-0", tags))
    history = [(1, {"val_acc": 0.5}), (2, {"val_acc": 0.75})]
    record = ({"lr": 0.1}, history, {"best_val_acc": 0.75}, {"state": "COMPLETE"})
    files = {"config.yaml": b"lr: 0.1\n"}
    ray_runtime.get(tracker.finish.remote(run_id, *record, files))

    pid = ray_runtime.get(tracker.__ray_call__.remote(lambda _: os.getpid()))
    ray_runtime.kill(tracker, no_restart=False)
    deadline = time.monotonic() + 60
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.1)  # ray.kill returns at once; the next calls must reach the new one
    assert ray_runtime.get(tracker.start.remote("trial-0", tags)) == run_id
    ray_runtime.get(tracker.finish.remote(run_id, *record, files))

    assert [m.value for m in client.get_metric_history(run_id, "val_acc")] == [0.5, 0.75]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert len(tracking.trial_runs(client, experiment_id, "twice")) == 1
    other = ray_runtime.get(tracker.start.remote("trial-1", {**tags, "trial_number": 1}))
    assert other != run_id
    ray_runtime.kill(tracker)


def test_a_dead_workers_run_is_found_by_its_tags_when_its_id_was_not_stored(tmp_path):
    study, client, experiment_id, parent = _open(tmp_path, "dead", {"lr": {"value": 0.1}})
    trial = study.ask()
    trial.suggest_float("lr", 0.01, 1.0)
    tags = {"kind": "trial", "study": "dead", "trial_number": trial.number, "state": "RUNNING"}
    run_id = tracking.start_child_run(client, experiment_id, parent, "trial-0", tags)
    other = tracking.start_child_run(
        client, experiment_id, parent, "trial-1", {**tags, "trial_number": 1}
    )

    fail_and_retry(study, study.get_trials()[0], f"sqlite:///{tmp_path}/mlflow.db")

    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["state"] == "FAIL"
    assert run.data.tags["error"] == "its worker stopped sending heartbeats (killed?)"
    assert client.get_run(other).info.status == "RUNNING"
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].params == {"lr": trials[0].params["lr"]}

    # The retry (trial 1) carries its predecessor's run id until its own run is known; its
    # worker dies before that: its own run, trial 1's, is closed.
    retry = study.ask()
    retry.set_user_attr("mlflow_run_id", run_id)
    fail_and_retry(study, study.get_trials()[1], f"sqlite:///{tmp_path}/mlflow.db")
    assert client.get_run(other).info.status == "FAILED"
    assert client.get_run(run_id).data.tags["state"] == "FAIL"

    # A worker killed after the tracker finished its run, before it told Optuna.
    late = study.ask()
    late_run = tracking.start_child_run(
        client, experiment_id, parent, "trial-3", {**tags, "trial_number": late.number}
    )
    client.set_tag(late_run, "state", "COMPLETE")
    client.set_terminated(late_run, status="FINISHED")
    fail_and_retry(study, study.get_trials()[late.number], f"sqlite:///{tmp_path}/mlflow.db")
    run = client.get_run(late_run)
    assert (run.info.status, run.data.tags["state"]) == ("FAILED", "FAIL")


def test_claims_take_turns_while_retried_trials_wait(ray_runtime, tmp_path):
    # Optuna takes a waiting trial with a read and then a write: two workers asking at the
    # same moment could both run it, so the counter lets one claim through at a time.
    study, *_ = _open(tmp_path, "turns", {"lr": {"value": 0.1}})
    for _ in range(2):
        study.enqueue_trial({})
    counter = BudgetCounter.remote(
        3, f"sqlite:///{tmp_path}/optuna.db", "turns", f"sqlite:///{tmp_path}/mlflow.db"
    )
    verdict, first = ray_runtime.get(counter.claim.remote())
    assert verdict == "run"
    assert ray_runtime.get(counter.claim.remote()) == ("wait", None)

    trial = study.ask()  # the first claimant takes a waiting trial and tags it
    trial.set_user_attr("claim", first)
    verdict, second = ray_runtime.get(counter.claim.remote())
    assert verdict == "run" and second != first
    assert ray_runtime.get(counter.claim.remote()) == ("wait", None)

    study.ask().set_user_attr("claim", second)
    # No trial waits any more: the third slot is handed out at once, then the budget is used.
    assert ray_runtime.get(counter.claim.remote())[0] == "run"
    assert ray_runtime.get(counter.claim.remote()) == ("wait", None)
    ray_runtime.kill(counter)


def test_an_interrupted_search_closes_running_and_just_finished_runs(tmp_path):
    study, client, experiment_id, parent = _open(tmp_path, "stopped", {"lr": {"value": 0.1}})
    runs = []
    for number, search_id in enumerate(("this", "this", "other")):
        trial = study.ask()
        tags = {"kind": "trial", "study": "stopped", "trial_number": number}
        run_id = tracking.start_child_run(
            client, experiment_id, parent, f"trial-{number}", {**tags, "state": "RUNNING"}
        )
        trial.set_user_attr("search_id", search_id)
        trial.set_user_attr("worker_pid", 1)
        if number != 0:  # trial 0's worker was stopped before it stored its run's id
            trial.set_user_attr("mlflow_run_id", run_id)
        runs.append(run_id)
    # Trial 1's run was finished by the tracker; its worker was stopped before telling Optuna.
    client.set_tag(runs[1], "state", "COMPLETE")
    client.set_terminated(runs[1], status="FINISHED")

    _fail_unfinished(study, client, experiment_id, "this")

    assert [t.state for t in study.get_trials()] == [
        TrialState.FAIL,
        TrialState.FAIL,
        TrialState.RUNNING,
    ]
    for run_id in runs[:2]:
        run = client.get_run(run_id)
        assert (run.info.status, run.data.tags["state"]) == ("KILLED", "FAIL")
        assert run.data.tags["error"] == "search interrupted"
    assert client.get_run(runs[2]).info.status == "RUNNING"
    assert study.get_trials()[0].user_attrs["mlflow_run_id"] == runs[0]


def test_the_modules_a_worker_imports_do_not_import_mlflow():
    # Everything `search_worker` and `TrialRunner` import, and a runner built, in a fresh
    # interpreter.
    modules = [
        "search.workers",
        "search.study",
        "search.space",
        "mmkd.config",
        "mmkd.methods",
        "mmkd.nets",
        "mmkd.train",
        "mmkd.teachers",
        "optuna.storages",
    ]
    code = (
        f"import sys; import {', '.join(modules)}; "
        "search.workers.TrialRunner(0, None, {}, [0], None, None, None); "
        "print('mlflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_a_failed_run_is_ended_even_when_its_error_file_cannot_be_stored(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (tmp_path / "not-a-folder").write_text("a file\n")
    experiment = client.create_experiment(
        "blocked", artifact_location=(tmp_path / "not-a-folder" / "artifacts").as_uri()
    )
    run_id = client.create_run(experiment).info.run_id

    with pytest.raises(OSError):
        tracking.close_failed_run(client, run_id, "ValueError: bad", details="Traceback ...")

    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert (run.data.tags["state"], run.data.tags["error"]) == ("FAIL", "ValueError: bad")
