"""The MLflow side of a search: experiment, parent run, trial runs, best-config queries.

Everything goes through an explicit `MlflowClient` (no global active run), so the same
code runs in the driver and in the search's `TrialTracker` actor (the workers never import
mlflow). Runs are told apart by tags:
``kind`` (search, teacher, trial), ``study``, ``method``, ``dataset``, ``trial_number``
and ``state`` (COMPLETE, PRUNED, FAIL).
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from pathlib import Path

import yaml
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

logger = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"


def experiment_name(dataset: str) -> str:
    return f"mmkd-{dataset}"


def ensure_experiment(client: MlflowClient, dataset: str, artifact_root: Path) -> str:
    """The data set's experiment id, created with an absolute artifact folder if missing."""
    name = experiment_name(dataset)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=artifact_root.resolve().as_uri())


def _find_run(client: MlflowClient, experiment_id: str, filter_string: str):
    runs = client.search_runs([experiment_id], filter_string=filter_string, max_results=1)
    return runs[0] if runs else None


def find_parent_run(client: MlflowClient, experiment_id: str, study: str):
    """The search's parent run of ``study``, or None."""
    return _find_run(client, experiment_id, f"tags.kind = 'search' and tags.study = '{study}'")


def open_parent_run(
    client: MlflowClient, experiment_id: str, study: str, params: dict, tags: dict
) -> str:
    """The search's parent run: created once per study, reopened when the study resumes.

    Params are logged only when the run is created (MLflow refuses a param's new value);
    tags such as provenance are refreshed on every start.
    """
    existing = find_parent_run(client, experiment_id, study)
    if existing is not None:
        run_id = existing.info.run_id
        client.update_run(run_id, status="RUNNING")
    else:
        run = client.create_run(
            experiment_id, tags={"kind": "search", "study": study}, run_name=study
        )
        run_id = run.info.run_id
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
    return run_id


def start_child_run(
    client: MlflowClient, experiment_id: str, parent_run_id: str, name: str, tags: dict
) -> str:
    """A run nested under the search's parent run (works from any process)."""
    all_tags = {PARENT_TAG: parent_run_id, **{k: str(v) for k, v in tags.items()}}
    return client.create_run(experiment_id, tags=all_tags, run_name=name).info.run_id


def log_trial_result(
    client: MlflowClient,
    run_id: str,
    params: dict,
    history: list[tuple[int, dict[str, float]]],
    summary: dict,
    tags: dict,
) -> None:
    """One batch: params, per-epoch metrics (``(epoch, {name: value})``, logged with step =
    epoch), summary metrics and tags. Non-finite values are left out."""
    now = int(time.time() * 1000)
    metrics = []
    for epoch, values in history:
        for name, value in values.items():
            if math.isfinite(value):
                metrics.append(Metric(name, value, now, epoch))
    for name, value in summary.items():
        if value is not None and math.isfinite(value):
            metrics.append(Metric(name, value, now, 0))
    client.log_batch(
        run_id,
        metrics=metrics,
        params=[Param(k, str(v)) for k, v in params.items()],
        tags=[RunTag(k, str(v)) for k, v in tags.items()],
    )


def log_files(client: MlflowClient, run_id: str, files: dict[str, bytes]) -> None:
    """Store ``{name: content}`` as the run's artifacts, in one call."""
    with tempfile.TemporaryDirectory() as folder:
        for name, content in files.items():
            (Path(folder) / name).write_bytes(content)
        client.log_artifacts(run_id, folder)


def close_failed_run(
    client: MlflowClient, run_id: str, error: str, status: str = "FAILED", details: str = ""
) -> None:
    """End a trial's run that did not finish: state FAIL, the error, ``details`` (e.g. the
    traceback) as ``error.txt``, and ``status`` (FAILED, or KILLED when stopped by the user)."""
    client.log_batch(run_id, tags=[RunTag("state", "FAIL"), RunTag("error", error[:500])])
    try:
        if details:
            log_files(client, run_id, {"error.txt": details.encode()})
    finally:
        # Ended even when the artifact store refuses the file (e.g. the same error again).
        client.set_terminated(run_id, status=status)


def find_trial_run(
    client: MlflowClient, experiment_id: str, study: str, number: int, state: str | None = None
):
    """The run of trial ``number`` of ``study`` (optionally only in ``state``), or None.

    A trial number names one trial of a study, and a trial has one run.
    """
    filter_string = f"tags.kind = 'trial' and tags.study = '{study}' "
    filter_string += f"and tags.trial_number = '{number}'"
    if state:
        filter_string += f" and tags.state = '{state}'"
    return _find_run(client, experiment_id, filter_string)


def search_runs_of(client: MlflowClient, experiment_id: str):
    """The parent runs of every search in an experiment (one per study)."""
    return client.search_runs([experiment_id], "tags.kind = 'search'", max_results=1000)


def trial_runs(client: MlflowClient, experiment_id: str, study: str, state: str | None = None):
    """All trial runs of a study (every page), optionally only those in ``state``."""
    filter_string = f"tags.kind = 'trial' and tags.study = '{study}'"
    if state:
        filter_string += f" and tags.state = '{state}'"
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=filter_string, max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def best_trial_run(client: MlflowClient, experiment_id: str, study: str):
    """The COMPLETE trial run with the highest ``best_val_acc``; ties: lowest trial number."""
    complete = [
        run
        for run in trial_runs(client, experiment_id, study, state="COMPLETE")
        if "best_val_acc" in run.data.metrics
    ]
    if not complete:
        return None
    return min(
        complete,
        key=lambda run: (-run.data.metrics["best_val_acc"], int(run.data.tags["trial_number"])),
    )


def best_summary(client: MlflowClient, run) -> dict:
    """What `best` prints: trial number, scores, searched params, full config, checkpoint
    and the student's constructor arguments (`mmkd.nets.load_student` takes both)."""
    tags = run.data.tags
    files = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
    with tempfile.TemporaryDirectory() as folder:
        config_path = client.download_artifacts(run.info.run_id, "config.yaml", folder)
        config = yaml.safe_load(Path(config_path).read_text())
        student = None  # runs of versions that did not record it
        if "student.yaml" in files:
            student_path = client.download_artifacts(run.info.run_id, "student.yaml", folder)
            student = yaml.safe_load(Path(student_path).read_text())
    return {
        "method": tags.get("method"),
        "dataset": tags.get("dataset"),
        "study": tags.get("study"),
        "trial": int(tags["trial_number"]),
        "best_val_acc": run.data.metrics["best_val_acc"],
        "test_acc": run.data.metrics.get("test_acc"),
        "params": json.loads(tags.get("searched_params", "{}")),
        "config": config,
        "checkpoint": f"{run.info.artifact_uri}/checkpoint.pt",
        "student": student,
        "mlflow_run_id": run.info.run_id,
    }
