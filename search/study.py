"""The Optuna side of a search: storage, study identity and resume checks, sampler, pruner."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from search.space import describe_difference, space_json
from search.sqlite import use_write_ahead_log

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 30
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class StudyMismatch(ValueError):
    """An existing study was started with settings that differ from this command's."""


def absolute_sqlite_url(url: str, folder: Path | None = None) -> str:
    """Resolve a relative ``sqlite:///file`` URL against ``folder`` (default: the cwd).

    Every process resolves a relative sqlite path against its own working folder, and a
    Ray worker's is not the driver's; so the driver hands workers absolute URLs only.
    """
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return url
    path = url[len(prefix) :]
    if path.startswith("/") or path == ":memory:" or not path:
        return url
    return prefix + str(((folder or Path.cwd()) / path).resolve())


class RetryStaleTrial:
    """A trial whose process died: queue it again with the same parameters (up to 3 times)
    and close its MLflow run as failed, so neither side keeps a run that never ends."""

    def __init__(self, tracking_uri: str | None):
        self.tracking_uri = tracking_uri
        self.retry = RetryHeartbeatStaleTrialCallback(max_retry=3)

    def __call__(self, study: optuna.Study, trial) -> None:
        self.retry(study, trial)
        if not self.tracking_uri:
            return
        # Rare, and never in a worker's trial loop: mlflow is imported only here.
        from mlflow.tracking import MlflowClient

        from search import tracking

        # Found by its tags, not by ``mlflow_run_id``: a worker killed in its first epoch
        # may not have stored it yet, and a retried trial carries its predecessor's. In any
        # state: a worker killed after its run was finished but before it told Optuna
        # leaves a FINISHED run of a trial that is now FAIL.
        client = MlflowClient(self.tracking_uri)
        experiment = client.get_experiment_by_name(
            tracking.experiment_name(study.user_attrs.get("dataset", ""))
        )
        if experiment is None:
            return
        run = tracking.find_trial_run(
            client, experiment.experiment_id, study.study_name, trial.number
        )
        if run is not None:
            tracking.close_failed_run(
                client, run.info.run_id, "its worker stopped sending heartbeats (killed?)"
            )


def fail_and_retry(study: optuna.Study, trial, tracking_uri: str | None) -> None:
    """End a RUNNING trial whose worker is known to be dead as FAIL, and retry it as the
    heartbeat check would (same parameters, MLflow run closed as failed)."""
    study.tell(trial.number, state=TrialState.FAIL)
    RetryStaleTrial(tracking_uri)(study, trial)


def make_storage(url: str, tracking_uri: str | None = None) -> RDBStorage:
    """RDB storage with a heartbeat: a trial whose process died is failed and queued again."""
    use_write_ahead_log()
    return RDBStorage(
        url,
        heartbeat_interval=HEARTBEAT_SECONDS,
        grace_period=GRACE_SECONDS,
        heartbeat_stale_trial_callback=RetryStaleTrial(tracking_uri),
    )


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    """ESKD-style pruning: trials report their best-so-far validation accuracy each epoch
    (the best-validation checkpoint is what a trial keeps), and trials behind are stopped.

    ``halving`` (default): successive halving over epochs; at epochs r, 3r, 9r, ... (r a
    tenth of the epochs, at least 1) a trial goes on only if its best-so-far is among the
    top third of the trials that got that far. It used the fewest epochs at the same best
    accuracy (benchmarks/pruning.py).
    ``median``: stop a trial whose best-so-far is below the median of earlier trials at
    the same epoch, after 3 finished trials and a quarter of the epochs.
    ``hyperband``: several successive-halving brackets of different aggressiveness.
    ``none``: never prune (``--patience`` still ends trials that stopped improving).
    """
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=max(1, epochs // 10), reduction_factor=3
        )
    if name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=3, n_warmup_steps=max(1, epochs // 4), interval_steps=1
        )
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    return optuna.pruners.NopPruner()


def lost_study(name: str) -> StudyMismatch:
    """The tracking store holds a search ``name`` whose Optuna study the storage lacks."""
    return StudyMismatch(
        f"the MLflow store holds trials of a study {name!r} that this Optuna storage does not "
        "have (was its database deleted or replaced?); point --storage at the database that "
        "holds it, or pass --study NEW_NAME for a new study"
    )


def open_study(
    storage_url: str,
    name: str,
    identity: dict,
    space: dict,
    tracking_uri: str | None = None,
    recorded_uuid: str | None = None,
) -> optuna.Study:
    """Create the study, or resume it after checking that it was started the same way.

    ``identity`` holds what may not change on resume (method, dataset, preset, epochs, ...);
    it, the space and a new ``study_uuid`` are stored as study attributes. Raises
    `StudyMismatch` naming the first difference. ``recorded_uuid`` is the ``study_uuid``
    that the MLflow store's search of this name carries, if any: a study that is missing,
    or carries another one, is then refused rather than started again under an old name.
    """
    storage = make_storage(storage_url, tracking_uri)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        if recorded_uuid:
            raise lost_study(name) from None
        study = optuna.create_study(
            storage=storage, study_name=name, direction="maximize", load_if_exists=True
        )
    attrs = study.user_attrs
    if "space" not in attrs:
        if recorded_uuid:  # a study of that name that this tool did not start
            raise lost_study(name)
        for key, value in identity.items():
            study.set_user_attr(key, value)
        study.set_user_attr("space", space_json(space))
        study.set_user_attr("study_uuid", uuid.uuid4().hex)
        return study

    for key, value in identity.items():
        if key in attrs and attrs[key] != value:
            raise StudyMismatch(
                f"study {name!r} was started with {key}={attrs[key]}, this command has "
                f"{key}={value}; keep {key} or pass --study NEW_NAME for a new study"
            )
    difference = describe_difference(json.loads(attrs["space"]), json.loads(space_json(space)))
    if difference:
        raise StudyMismatch(
            f"study {name!r} was started with another space: {difference}; restore it or "
            "pass --study NEW_NAME for a new study"
        )
    if recorded_uuid and attrs.get("study_uuid", recorded_uuid) != recorded_uuid:
        raise lost_study(name)
    if "study_uuid" not in attrs:  # started by a version that did not record one
        study.set_user_attr("study_uuid", recorded_uuid or uuid.uuid4().hex)
    return study


def sampler_seed(base_seed: int, worker: int, trials_so_far: int) -> int:
    """A seed per worker and resume, so that no two samplers propose the same sequence."""
    return (base_seed * 1_000_003 + worker * 7_919 + trials_so_far * 104_729) % (2**31 - 1)


def make_sampler(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5, multivariate=True)
