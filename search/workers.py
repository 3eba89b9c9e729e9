"""Ray workers: the budget counter, teacher tasks and trial-running tasks.

Each search worker is one long-lived Ray task that runs trials one after another with
``study.optimize`` on the shared storage. Before each trial it claims a slot from the
`BudgetCounter` actor, so the study's total never exceeds ``--trials`` however many workers
ask at once. The `TrialTracker` actor writes every trial's MLflow run, so that workers
start without importing mlflow. Data arrays and the teachers' outputs arrive through Ray's
object store: the outputs are computed once per search and teacher snapshot
(`SharedTeacherOutputs`), and every worker maps the same copy.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import time
import traceback
import uuid
import warnings
from dataclasses import dataclass, fields

import numpy as np
import ray

logger = logging.getLogger(__name__)

# Consecutive failed trials after which a worker gives up (a bug, not bad luck).
MAX_CONSECUTIVE_FAILURES = 3
# A claim whose trial has not appeared by then belonged to a worker that died before asking.
CLAIM_EXPIRY_SECONDS = 120.0
STUDENT_SEED_OFFSET = 100_003
# How long a worker waits before asking again while other workers' trials may still fail.
WAIT_SECONDS = 0.25
# How often claims look for trials of dead workers: their heartbeats go stale only after
# tens of seconds, so looking at every claim (several a second) would only cost reads.
DEAD_TRIAL_CHECK_SECONDS = 2.0


# A helper actor whose process dies is started again this many times (its state is rebuilt
# from the storage), and a call that was under way is sent again, before the search fails.
ACTOR_RESTARTS = 3


@ray.remote(num_cpus=0, max_restarts=ACTOR_RESTARTS, max_task_retries=ACTOR_RESTARTS)
class BudgetCounter:
    """Hands out trial slots so that a study never exceeds its budget, with any number of
    workers and drivers.

    Each claim recounts from the storage: finished (COMPLETE, PRUNED) and RUNNING trials,
    plus claims handed out whose trial has not started yet. A failed trial therefore frees
    its slot by itself. Trials of dead workers are failed here by Optuna's heartbeat check
    (and queued again with the same parameters) before counting, at most every
    ``DEAD_TRIAL_CHECK_SECONDS``. Restarted after its process died, it recounts from the
    storage; only claims handed out in the last milliseconds, whose trials had not started
    yet, are forgotten.
    """

    def __init__(self, budget: int, storage_url: str, study: str, tracking_uri: str):
        import optuna

        from search.study import make_storage

        self.budget = budget
        self.tracking_uri = tracking_uri
        storage = make_storage(storage_url, tracking_uri)
        self.study = optuna.load_study(study_name=study, storage=storage)
        self.pending: dict[str, float] = {}
        self.checked_at = -DEAD_TRIAL_CHECK_SECONDS

    def _fail_trials_that_never_started(self) -> None:
        """A RUNNING trial that its worker never tagged (the worker died between asking and
        tagging) has no heartbeat either, so Optuna would leave it RUNNING for ever."""
        from optuna.trial import TrialState

        from search.study import fail_and_retry

        now = datetime.datetime.now()
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            started = trial.datetime_start
            if "worker_pid" in trial.user_attrs or started is None:
                continue
            if (now - started).total_seconds() > CLAIM_EXPIRY_SECONDS:
                fail_and_retry(self.study, trial, self.tracking_uri)

    def claim(self) -> tuple[str, str | None]:
        """("run", token) to start one trial; ("wait", None) while trials that may still
        fail are under way; ("done", None) once the budget is used up."""
        import optuna
        from optuna.trial import TrialState

        from search.study import FINISHED

        now = time.monotonic()
        if now - self.checked_at >= DEAD_TRIAL_CHECK_SECONDS:
            optuna.storages.fail_stale_trials(self.study)
            self._fail_trials_that_never_started()
            self.checked_at = now
        trials = self.study.get_trials(deepcopy=False)
        started = {trial.user_attrs.get("claim") for trial in trials}
        self.pending = {
            token: since
            for token, since in self.pending.items()
            if token not in started and now - since < CLAIM_EXPIRY_SECONDS
        }
        finished = sum(trial.state in FINISHED for trial in trials)
        running = sum(trial.state == TrialState.RUNNING for trial in trials)
        waiting = any(trial.state == TrialState.WAITING for trial in trials)
        if finished + running + len(self.pending) < self.budget:
            if waiting and self.pending:
                # Optuna takes a waiting trial (a retry) with a read and then a write, so two
                # workers starting at once could both run the same one: one at a time.
                return "wait", None
            token = uuid.uuid4().hex
            self.pending[token] = now
            return "run", token
        if running or self.pending:
            return "wait", None
        return "done", None


@ray.remote(num_cpus=0, max_restarts=ACTOR_RESTARTS, max_task_retries=ACTOR_RESTARTS)
class TrialTracker:
    """Writes the MLflow runs of one search's trials, for all its workers.

    Workers then start without importing mlflow (about 1.3 s of CPU and 170 MiB each; the
    driver and this actor import it once). A worker asks for its trial's run when the trial
    starts without waiting for it (`start`), and waits for `finish` or `fail` before it
    tells Optuna how the trial ended: a trial that Optuna counts as finished always has its
    complete run. Ray runs the calls of one worker in the order it sent them. Restarted
    after its process died, it gets the calls under way again: a rebuilt tracker first
    looks for what its predecessor may already have written, so that a trial never gets a
    second run or a second copy of its metrics.
    """

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str):
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri)
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.rebuilt = ray.get_runtime_context().was_current_actor_reconstructed

    def start(self, name: str, tags: dict) -> str:
        """A new run nested under the search's parent run; returns its id."""
        from search import tracking

        if self.rebuilt:
            run = tracking.find_trial_run(
                self.client, self.experiment_id, tags["study"], tags["trial_number"]
            )
            if run is not None:
                return run.info.run_id
        return tracking.start_child_run(
            self.client, self.experiment_id, self.parent_run_id, name, tags
        )

    def finish(
        self,
        run_id: str,
        params: dict,
        history: list[tuple[int, dict[str, float]]],
        summary: dict,
        tags: dict,
        files: dict[str, bytes],
    ) -> None:
        """Log a trial's params, metrics, final tags and files; end its run as FINISHED."""
        from search import tracking

        if self.rebuilt and self.client.get_run(run_id).info.status == "FINISHED":
            return
        tracking.log_trial_result(self.client, run_id, params, history, summary, tags)
        tracking.log_files(self.client, run_id, files)
        self.client.set_terminated(run_id, status="FINISHED")

    def fail(self, run_id: str, error: str, details: str) -> None:
        """End a trial's run as FAILED with its error and traceback."""
        from search import tracking

        tracking.close_failed_run(self.client, run_id, error, details=details)


@dataclass(frozen=True)
class TrialContext:
    """What every trial of one search shares; sent once to each worker."""

    method: str
    dataset: str
    study: str
    storage_url: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    space: dict
    teachers: tuple[str, ...]
    epochs: int
    patience: int
    pruner: str
    seed: int
    num_classes: int
    in_channels: int
    student_depth: int
    student_width: int
    image_depth: int
    threads: int
    search_id: str


def _as_tensors(arrays: dict) -> dict:
    """Wrap shared read-only arrays as tensors without copying them."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return {name: torch.from_numpy(np.asarray(array)) for name, array in arrays.items()}


@ray.remote(num_cpus=1)
def train_teacher_task(spec, windows, labels, split, num_classes: int, threads: int = 1):
    """Train one teacher in its own process; returns the record to cache."""
    import torch

    from mmkd.teachers import train_teacher

    torch.set_num_threads(threads)
    tensors = _as_tensors({"windows": windows, "labels": labels})
    return train_teacher(spec, tensors["windows"], tensors["labels"].long(), split, num_classes)


def teacher_snapshots(space: dict) -> tuple[float, ...]:
    """The teacher snapshots a space can choose: its ``snapshot`` entry's fixed value or
    categorical choices, else the best-validation checkpoint (1.0, `TrialConfig`'s default)."""
    entry = space.get("snapshot", {"value": 1.0})
    return tuple(float(s) for s in ([entry["value"]] if "value" in entry else entry["choices"]))


# One call per process: the pass leaves hundreds of MiB of freed batches in its process's
# heap, which an idle Ray worker would keep, or carry into a search worker started in it.
@ray.remote(num_cpus=1, max_calls=1)
def teacher_outputs_task(records: dict, snapshot: float, arrays: dict, train, teachers) -> dict:
    """Every teacher's outputs on the training windows for one snapshot, as float32 arrays.

    Returns ``{teacher: {field of TeacherOutputs: numpy array}}``: plain numpy arrays travel
    through the object store out of band, so each worker maps them instead of copying them.
    One thread, as a search worker runs by default: the outputs then do not depend on how
    many cores the task happens to get.
    """
    import torch

    from mmkd.teachers import TeacherOutputs, build_from_record, teacher_outputs

    torch.set_num_threads(1)
    inputs = _as_tensors({name: arrays[name] for name in teachers})
    shared = {}
    for name in teachers:
        outputs = teacher_outputs(build_from_record(records[name], snapshot), inputs[name][train])
        shared[name] = {
            field.name: getattr(outputs, field.name).numpy() for field in fields(TeacherOutputs)
        }
    return shared


@ray.remote(num_cpus=0)
class SharedTeacherOutputs:
    """One search's teacher outputs: one copy per teacher snapshot, shared by all workers.

    A snapshot's teacher pass (`teacher_outputs_task`) starts when a trial first asks for
    it; every request gets a reference to that one result. This actor starts the passes and
    so owns their outputs: they outlive any worker Ray kills and restarts.

    Passes start on demand, neither all before the workers start nor all at once beside
    them: with more snapshot choices than CPUs the first trials would then wait for passes
    of snapshots they do not use. On demand a trial waits for its own snapshot's pass only,
    and two workers asking for the same snapshot share one pass. A space that fixes the
    snapshot starts its pass at once, so that it overlaps the workers' start-up. It is not
    restarted if its process dies (Ray cannot promise to rebuild an actor from arguments in
    its object store, and warns at every start of one that asks for it): the search then
    fails, and the same command resumes it.
    """

    def __init__(self, records: dict, arrays: list, train, teachers, space: dict):
        # ``arrays`` holds the driver's reference in a list, so that Ray does not resolve it
        # here: each pass maps the one copy in the object store.
        (self.arrays_ref,) = arrays
        self.records_ref = ray.put(records)
        self.train, self.teachers = train, tuple(teachers)
        self.snapshots = teacher_snapshots(space)
        self.references: dict[float, ray.ObjectRef] = {}
        if len(self.snapshots) == 1:
            self.reference(self.snapshots[0])

    def reference(self, snapshot: float) -> ray.ObjectRef:
        """The reference to ``snapshot``'s outputs (`teacher_outputs_task`'s result)."""
        if snapshot not in self.snapshots:
            raise ValueError(
                f"teacher snapshot {snapshot} is not among the space's choices "
                f"({', '.join(map(str, self.snapshots))})"
            )
        if snapshot not in self.references:
            self.references[snapshot] = teacher_outputs_task.remote(
                self.records_ref, snapshot, self.arrays_ref, self.train, self.teachers
            )
        return self.references[snapshot]


def share_teacher_outputs(records: dict, arrays_ref, train, teachers, space: dict):
    """Start the `SharedTeacherOutputs` actor of one search, for every `search_worker`.

    ``arrays_ref`` is the reference the workers receive too; ``space`` decides which
    snapshots trials may ask for.
    """
    return SharedTeacherOutputs.remote(records, [arrays_ref], train, teachers, space)


def fetch_teacher_outputs(shared_outputs, snapshot: float) -> dict:
    """``snapshot``'s outputs from a `SharedTeacherOutputs` actor, as `TeacherOutputs` per
    teacher; waits for the pass if it is still running. The tensors are backed by the object
    store's read-only pages (no copy; nothing may write into them)."""
    from mmkd.teachers import TeacherOutputs

    reference = ray.get(shared_outputs.reference.remote(snapshot))
    return {
        name: TeacherOutputs(**_as_tensors(arrays)) for name, arrays in ray.get(reference).items()
    }


def _epoch_values(report) -> tuple[int, dict[str, float]]:
    """One `mmkd.train.EpochReport` as ``(epoch, {metric: value})`` for the tracker."""
    values = {"val_acc": report.val_acc, "train_loss": report.train_loss}
    values.update({f"loss_{name}": value for name, value in report.parts.items()})
    return report.epoch, values


class _TrialRun:
    """A trial's MLflow run while the tracker creates it; its id is stored on the trial
    (``mlflow_run_id``) as soon as it is known."""

    def __init__(self, trial, reference: ray.ObjectRef):
        self.trial = trial
        self.reference = reference
        self.run_id: str | None = None

    def link(self, wait: bool = False) -> str | None:
        """The run's id, or None while the tracker is still creating the run (``wait``:
        wait for it)."""
        if self.run_id is None and (wait or ray.wait([self.reference], timeout=0)[0]):
            self.run_id = ray.get(self.reference)
            self.trial.set_user_attr("mlflow_run_id", self.run_id)
        return self.run_id


class TrialRunner:
    """Runs trials inside one worker; each snapshot's teacher outputs are fetched once."""

    def __init__(
        self,
        worker: int,
        context: TrialContext,
        arrays: dict,
        labels,
        split,
        shared_outputs,
        tracker,
    ):
        import torch

        self.worker = worker
        self.context = context
        self.inputs = _as_tensors(arrays)
        self.labels = torch.from_numpy(np.asarray(labels)).long()
        self.split = split
        self.shared_outputs = shared_outputs
        self.tracker = tracker
        self._teacher_outputs: dict[float, dict] = {}

    def teacher_outputs(self, snapshot: float) -> dict:
        """Every teacher's outputs on the training windows for ``snapshot``, shared by all
        workers of the search; the first call per snapshot waits for its pass if needed."""
        if snapshot not in self._teacher_outputs:
            self._teacher_outputs[snapshot] = fetch_teacher_outputs(self.shared_outputs, snapshot)
        return self._teacher_outputs[snapshot]

    def objective(self, trial) -> float:
        """One trial: its MLflow run, config -> student + method -> fit() -> value.

        Whatever fails after the run was asked for (a space value the config refuses
        included) ends the run as FAILED before the trial fails.
        """
        import optuna

        ctx = self.context
        trial.set_user_attr("search_id", ctx.search_id)
        trial.set_user_attr("worker", self.worker)
        trial.set_user_attr("worker_pid", os.getpid())
        tags = {
            "kind": "trial",
            "study": ctx.study,
            "method": ctx.method,
            "dataset": ctx.dataset,
            "trial_number": trial.number,
            "search_id": ctx.search_id,
            "state": "RUNNING",
        }
        run = _TrialRun(trial, self.tracker.start.remote(f"trial-{trial.number}", tags))
        try:
            value, state, reason = self._train(trial, run)
        except Exception as error:
            self._fail(trial, run, error)
            raise
        if state == "PRUNED":
            raise optuna.TrialPruned(reason)
        return value

    def _train(self, trial, run: _TrialRun) -> tuple[float, str, str]:
        """Train the trial's student and record the result on both sides; returns its value,
        state (COMPLETE or PRUNED) and the reason it stopped."""
        import torch

        from mmkd.config import TrialConfig
        from mmkd.methods import build_method, method_class
        from mmkd.nets import Student
        from mmkd.train import STOP, fit
        from search.space import suggest

        ctx = self.context
        started = time.perf_counter()
        params = suggest(trial, ctx.space)
        config = TrialConfig.from_params(params)
        # Teachers are seeded with ctx.seed; an offset keeps trial 0's student from
        # starting with the Sig teacher's initial weights.
        seed = ctx.seed + STUDENT_SEED_OFFSET + trial.number
        torch.manual_seed(seed)
        kind = method_class(ctx.method)
        # Recorded with the checkpoint, so that `mmkd.nets.load_student` rebuilds it.
        student_arguments = {
            "in_channels": ctx.in_channels,
            "num_classes": ctx.num_classes,
            "branches": list(config.branch_names),
            "depth": ctx.student_depth,
            "width": ctx.student_width,
            "image_depth": ctx.image_depth,
            "fusion": kind.fusion,
            "heads": config.heads,
        }
        student = Student(**student_arguments)
        outputs = self.teacher_outputs(config.snapshot) if kind.uses_teachers else {}
        feature_dims = {"student": student.feature_dim}
        feature_dims.update({name: out.features.shape[1] for name, out in outputs.items()})
        method = build_method(ctx.method, config, ctx.teachers, feature_dims)
        targets = {}
        if outputs:
            targets = method.teacher_targets(outputs, self.labels[self.split.train])

        def report(epoch_report):
            run.link()
            trial.report(epoch_report.best_val_acc, epoch_report.epoch)
            return STOP if trial.should_prune() else None

        result = fit(
            student,
            method,
            {branch: self.inputs[branch] for branch in config.branch_names},
            self.labels,
            self.split,
            config,
            ctx.epochs,
            targets=targets,
            patience=ctx.patience,
            callback=report,
            seed=seed,
        )

        if result.stop_reason == "nonfinite":
            state, reason = "PRUNED", "loss became NaN or infinite"
        elif result.stop_reason == "callback":
            state, reason = "PRUNED", "pruned: best-so-far validation accuracy behind"
        else:
            state, reason = "COMPLETE", f"stopped after {result.stop_reason}"
        trial.set_user_attr("stop_reason", reason)
        trial.set_user_attr("epochs_run", result.epochs_run)
        summary = {
            "best_epoch": float(result.best_epoch),
            "epochs_run": float(result.epochs_run),
            "seconds": time.perf_counter() - started,
        }
        # A loss that went non-finite in the first epoch leaves no validated checkpoint:
        # no accuracy is recorded rather than a 0 that was never measured.
        if result.state is not None:
            trial.set_user_attr("test_acc", result.test_acc)
            summary.update(best_val_acc=result.best_val_acc, test_acc=result.test_acc)

        searched = {key: params[key] for key in trial.params}
        tags = {"state": state, "stop_reason": reason, "searched_params": json.dumps(searched)}
        history = [_epoch_values(report) for report in result.history]
        files = self._artifacts(config, student_arguments, result.state)
        self._finish(run, params, history, summary, tags, files)
        return result.best_val_acc, state, reason

    def _finish(self, run: _TrialRun, *record) -> None:
        """Wait until the tracker has logged the trial's ``record`` and ended its run."""
        ray.get(self.tracker.finish.remote(run.link(wait=True), *record))

    def _fail(self, trial, run: _TrialRun, error: Exception) -> None:
        """Record a trial's error on the trial and end its run as FAILED."""
        message = f"{type(error).__name__}: {error}"[:500]
        trial.set_user_attr("error", message)
        try:
            ray.get(self.tracker.fail.remote(run.link(wait=True), message, traceback.format_exc()))
        except ray.exceptions.RayError as tracking_error:
            logger.warning(
                "trial %d: its MLflow run was not closed: %s", trial.number, tracking_error
            )

    def _artifacts(self, config, student_arguments: dict, state: dict | None) -> dict[str, bytes]:
        """The run's files: the trial's config (the keys its method uses), the student's
        constructor arguments and, when a checkpoint was validated, the student's
        best-validation state dict."""
        import io

        import torch
        import yaml

        from search.space import allowed_keys

        used = set(allowed_keys(self.context.method)) | {"branches"}
        params = {k: v for k, v in config.as_params().items() if k in used}
        files = {
            "config.yaml": yaml.safe_dump(params, sort_keys=True).encode(),
            "student.yaml": yaml.safe_dump(student_arguments, sort_keys=True).encode(),
        }
        if state is not None:
            buffer = io.BytesIO()
            torch.save(state, buffer)
            files["checkpoint.pt"] = buffer.getvalue()
        return files


def _claim(counter) -> tuple[str, str | None]:
    """A verdict from the `BudgetCounter` (a round trip to its actor)."""
    return ray.get(counter.claim.remote())


# Ray starts a killed worker's task again this many times before the search fails.
WORKER_RESTARTS = 10


@ray.remote(max_retries=WORKER_RESTARTS)
def search_worker(
    worker: int,
    context: TrialContext,
    arrays: dict,
    labels,
    split,
    shared_outputs,
    counter,
    tracker,
) -> dict:
    """Run trials until the budget is used up; returns counts of what this worker ran.

    ``shared_outputs`` is the search's `SharedTeacherOutputs` actor (None for a method
    without teachers), ``counter`` its `BudgetCounter` and ``tracker`` its `TrialTracker`.
    """
    import optuna
    import torch

    from search.study import (
        fail_and_retry,
        make_pruner,
        make_sampler,
        make_storage,
        sampler_seed,
    )

    torch.set_num_threads(context.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    storage = make_storage(context.storage_url, context.tracking_uri)
    probe = optuna.load_study(study_name=context.study, storage=storage)
    seed = sampler_seed(context.seed, worker, len(probe.get_trials(deepcopy=False)))
    study = optuna.load_study(
        study_name=context.study,
        storage=storage,
        sampler=make_sampler(seed),
        pruner=make_pruner(context.pruner, context.epochs),
    )
    # A worker that Ray restarted after its process died finds its last trial RUNNING.
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        attrs = trial.user_attrs
        if attrs.get("search_id") == context.search_id and attrs.get("worker") == worker:
            fail_and_retry(study, trial, context.tracking_uri)
    runner = TrialRunner(worker, context, arrays, labels, split, shared_outputs, tracker)

    outcome: dict = {}

    def objective(trial):
        trial.set_user_attr("claim", outcome["claim"])
        try:
            value = runner.objective(trial)
        except optuna.TrialPruned:
            outcome["state"] = "PRUNED"
            raise
        except Exception as error:
            outcome["error"] = "".join(traceback.format_exception_only(error)).strip()
            raise
        outcome["state"] = "COMPLETE"
        return value

    ran, failed, consecutive_failures = 0, 0, 0
    while True:
        verdict, token = _claim(counter)
        if verdict == "done":
            break
        if verdict == "wait":
            time.sleep(WAIT_SECONDS)
            continue

        outcome.clear()
        outcome.update(claim=token, state="FAIL", error="the trial did not start")
        study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=False)
        if outcome["state"] != "FAIL":
            ran += 1
            consecutive_failures = 0
            continue

        failed += 1
        consecutive_failures += 1
        if consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
            raise RuntimeError(
                f"{consecutive_failures} trials failed in a row; last error: {outcome['error']}"
            )
    return {"worker": worker, "pid": os.getpid(), "ran": ran, "failed": failed}


@dataclass(frozen=True)
class RunningSearch:
    """The Ray side of a running search: its worker tasks and the actors they share."""

    tasks: list
    counter: object
    tracker: object
    shared_outputs: object | None

    def stop(self) -> None:
        """Stop the workers and the actors; no MLflow write lands after this returns."""
        for task in self.tasks:
            ray.cancel(task, force=True)
        for actor in (self.tracker, self.shared_outputs, self.counter):
            if actor is not None:
                ray.kill(actor)


def start_search(
    context: TrialContext,
    *,
    budget: int,
    workers: int,
    cpus: float,
    arrays: dict,
    labels,
    split,
    teacher_records: dict,
    task=None,
) -> RunningSearch:
    """Start the budget counter, the tracker, the shared teacher outputs (a method with
    teachers) and ``workers`` `search_worker` tasks of ``cpus`` CPUs each.

    ``task`` replaces `search_worker` by a Ray task with its signature (benchmarks use it
    to time a worker's calls).
    """
    from mmkd.methods import method_class

    counter = BudgetCounter.remote(
        budget, context.storage_url, context.study, context.tracking_uri
    )
    tracker = TrialTracker.remote(
        context.tracking_uri, context.experiment_id, context.parent_run_id
    )
    arrays_ref = ray.put({name: np.asarray(array) for name, array in arrays.items()})
    labels_ref = ray.put(labels)
    shared_outputs = None
    if method_class(context.method).uses_teachers:
        shared_outputs = share_teacher_outputs(
            teacher_records, arrays_ref, split.train, context.teachers, context.space
        )
    task = task or search_worker
    tasks = [
        task.options(num_cpus=cpus).remote(
            worker, context, arrays_ref, labels_ref, split, shared_outputs, counter, tracker
        )
        for worker in range(workers)
    ]
    return RunningSearch(tasks, counter, tracker, shared_outputs)
