"""Faults during a search: a worker killed mid-trial, Ctrl-C on the driver."""

import os
import signal
import subprocess
import sys
import threading
import time

import optuna
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from search.cli import main

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _study(folder, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder}/optuna.db")


def _running_trial(folder, name, timeout=120.0):
    """Wait until a trial of the study runs in a worker; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # The driver creates optuna.db whole (built aside, then linked into place); opening
        # it any earlier would create its tables here and race the driver.
        if (folder / "optuna.db").exists():
            try:
                running = _study(folder, name).get_trials(states=(TrialState.RUNNING,))
            except KeyError:  # the file exists, the study not yet
                running = []
            for trial in running:
                if "worker_pid" in trial.user_attrs and "mlflow_run_id" in trial.user_attrs:
                    return trial
        time.sleep(0.3)
    raise AssertionError("no trial started running")


def test_killed_worker_trial_fails_is_retried_and_the_budget_holds(
    ray_runtime, cache_dir, workdir
):
    study_name = "killed-worker"
    killed = {}

    def kill_one_worker():
        trial = _running_trial(workdir, study_name)
        killed["pid"] = trial.user_attrs["worker_pid"]
        os.kill(killed["pid"], signal.SIGKILL)

    killer = threading.Thread(target=kill_one_worker, daemon=True)
    killer.start()
    code = main(
        [
            "--method",
            "student",
            "--study",
            study_name,
            "--trials",
            "4",
            "--epochs",
            "60",
            "--patience",
            "60",
            "--pruner",
            "none",
            "--workers",
            "2",
            "--teacher-epochs",
            "6",
            "--cache-dir",
            str(cache_dir),
        ]
    )
    killer.join(timeout=5)
    assert code == 0

    trials = _study(workdir, study_name).get_trials()
    assert sum(t.state in FINISHED for t in trials) == 4
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    victims = [t for t in trials if t.state == TrialState.FAIL]
    assert len(victims) == 1
    victim = victims[0]
    assert victim.user_attrs["worker_pid"] == killed["pid"]
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1
    assert retries[0].params == victim.params
    assert retries[0].state in FINISHED

    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    run = client.get_run(victim.user_attrs["mlflow_run_id"])
    assert run.info.status == "FAILED"
    assert run.data.tags["state"] == "FAIL"


def _descendants(pid):
    table = subprocess.run(
        ["ps", "-eo", "pid=,ppid="], capture_output=True, text=True, check=True
    ).stdout.split()
    parents = {
        int(child): int(parent) for child, parent in zip(table[::2], table[1::2], strict=True)
    }
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def test_ctrl_c_stops_within_seconds_and_leaves_nothing_running(cache_dir, workdir):
    study_name = "interrupted"
    command = [
        sys.executable,
        "-c",
        "import sys; from search.cli import main; sys.exit(main())",
        "--method",
        "student",
        "--study",
        study_name,
        "--trials",
        "6",
        "--epochs",
        "200",
        "--patience",
        "200",
        "--pruner",
        "none",
        "--workers",
        "2",
        "--teacher-epochs",
        "6",
        "--cache-dir",
        str(cache_dir),
    ]
    log = open(workdir / "driver.log", "w")  # noqa: SIM115 - closed with the driver below
    driver = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        _running_trial(workdir, study_name)
        time.sleep(1.0)
        helpers = _descendants(driver.pid)
        started = time.monotonic()
        driver.send_signal(signal.SIGINT)
        driver.wait(timeout=30)
        stopped_after = time.monotonic() - started
    finally:
        if driver.poll() is None:
            driver.kill()
        log.close()
    assert driver.returncode == 130
    assert stopped_after < 10.0

    time.sleep(2.0)
    alive = {pid for pid in helpers if os.path.exists(f"/proc/{pid}")}
    assert not alive, f"processes left behind: {alive}"

    trials = _study(workdir, study_name).get_trials()
    assert trials and not [t for t in trials if t.state == TrialState.RUNNING]
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    experiment = client.get_experiment_by_name("mmkd-basicmotions")
    parent = client.search_runs([experiment.experiment_id], "tags.kind = 'search'")[0]
    assert parent.info.status == "KILLED"
    for trial in trials:
        if trial.state == TrialState.FAIL:
            run = client.get_run(trial.user_attrs["mlflow_run_id"])
            assert run.info.status == "KILLED"
