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


def _driver_command(study_name, cache_dir, trials, epochs):
    """A search of the Sig student as its own process, without pruning or early stop."""
    return [
        sys.executable,
        "-c",
        "import sys; from search.cli import main; sys.exit(main())",
        *("--method", "student", "--study", study_name, "--workers", "2"),
        *("--trials", str(trials), "--epochs", str(epochs), "--patience", str(epochs)),
        *("--pruner", "none", "--teacher-epochs", "6", "--cache-dir", str(cache_dir)),
    ]


def test_ctrl_c_stops_within_seconds_leaves_nothing_running_and_the_study_resumes(
    cache_dir, workdir
):
    study_name = "interrupted"
    command = _driver_command(study_name, cache_dir, trials=6, epochs=200)
    log = open(workdir / "driver.log", "w")  # noqa: SIM115 - closed with the driver below
    # A shell that starts this test in the background ignores SIGINT for it, and the
    # driver would inherit that; a user's terminal delivers Ctrl-C, so restore it.
    driver = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        _running_trial(workdir, study_name)
        time.sleep(1.0)
        helpers = _descendants(driver.pid)
        started = time.monotonic()
        # An impatient user presses Ctrl-C three times; the later ones land in the clean-up.
        for _ in range(3):
            driver.send_signal(signal.SIGINT)
            time.sleep(0.2)
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
    runs = client.search_runs([experiment.experiment_id], "tags.kind = 'trial'")
    assert runs and [run for run in runs if run.info.status == "RUNNING"] == []

    # The same command resumes the study to the same total.
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    trials = _study(workdir, study_name).get_trials()
    assert sum(t.state in FINISHED for t in trials) == 6
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    parents = client.search_runs([experiment.experiment_id], "tags.kind = 'search'")
    assert [run.info.status for run in parents] == ["FINISHED"]


def _alive(pids, within):
    """Wait up to ``within`` seconds for ``pids`` to exit; return those still running (a
    zombie that nobody reaps has exited too)."""

    def running(pid):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + within
    while any(map(running, pids)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return {pid for pid in pids if running(pid)}


def test_sigkilled_driver_leaves_nothing_behind_and_a_rerun_completes_the_study(
    cache_dir, workdir
):
    study_name = "driver-killed"
    # About 30 ms an epoch here: 600 epochs keep a trial running for the kill below.
    command = _driver_command(study_name, cache_dir, trials=2, epochs=600)
    log = open(workdir / "driver.log", "w")  # noqa: SIM115 - closed with the driver below
    driver = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    helpers = set()
    try:
        seen = _running_trial(workdir, study_name)
        helpers = _descendants(driver.pid)
        driver.kill()
        driver.wait(timeout=30)
        killed_at = time.monotonic()

        # The trials' workers die with the driver's Ray runtime within seconds.
        running = _study(workdir, study_name).get_trials(states=(TrialState.RUNNING,))
        workers = {t.user_attrs["worker_pid"] for t in running if "worker_pid" in t.user_attrs}
        assert not _alive(workers, within=30)
        killed = _study(workdir, study_name).get_trials(states=(TrialState.RUNNING,))
        assert seen.number in {t.number for t in killed}

        rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)

        # Ray's dashboard and runtime-env agents outlive a SIGKILLed driver by about a
        # minute: before exiting they try to report the dead raylet to the dead GCS.
        left = _alive(helpers, within=max(0.0, killed_at + 120 - time.monotonic()))
        assert not left, f"processes of the killed driver left behind: {sorted(left)}"
    finally:
        if driver.poll() is None:
            driver.kill()
        log.close()
        for pid in _alive(helpers, within=0):
            os.kill(pid, signal.SIGKILL)

    assert rerun.returncode == 0, rerun.stderr
    trials = _study(workdir, study_name).get_trials()
    assert sum(t.state in FINISHED for t in trials) == 2
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    by_number = {t.number: t for t in trials}
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    for victim in killed:
        assert by_number[victim.number].state == TrialState.FAIL
        if "mlflow_run_id" in victim.user_attrs:  # killed before its run was created: none
            run = client.get_run(victim.user_attrs["mlflow_run_id"])
            assert run.info.status in ("FAILED", "KILLED")
            assert run.data.tags["state"] == "FAIL"
        retries = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
        assert len(retries) == 1
        assert retries[0].params == victim.params
        assert retries[0].state in FINISHED

    experiment = client.get_experiment_by_name("mmkd-basicmotions")
    runs = client.search_runs([experiment.experiment_id], "tags.kind = 'trial'")
    numbers = [int(run.data.tags["trial_number"]) for run in runs]
    assert len(set(numbers)) == len(numbers)
    for run, number in zip(runs, numbers, strict=True):
        trial = by_number[number]
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        assert run.data.tags["state"] == trial.state.name
        if trial.state in FINISHED:
            assert run.info.status == "FINISHED"
            assert run.data.metrics["best_val_acc"] == trial.value
    assert {t.number for t in trials if t.state in FINISHED} <= set(numbers)
    parents = client.search_runs([experiment.experiment_id], "tags.kind = 'search'")
    assert [run.info.status for run in parents] == ["FINISHED"]
