"""One search, driven from the command line: data, teachers, study, workers, progress.

The driver does everything that must happen once and in order (data and modalities,
the MLflow database, experiment and parent run, the Optuna study, the teachers) before
any worker starts; the workers then only run trials.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import signal
import subprocess
import threading
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

from mmkd.data import SplitSettings

logger = logging.getLogger(__name__)


class SearchFailed(RuntimeError):
    """A search stopped by an error in its workers (not by the user's input)."""


class StorageError(ValueError):
    """A storage or tracking URL that cannot be opened; the message says which."""


@contextlib.contextmanager
def _opening(option: str, url: str):
    """Turn a failure to open a database into a `StorageError` naming the option."""
    from search.study import StudyMismatch

    try:
        yield
    except StudyMismatch:
        raise
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StorageError(f"{option}: cannot open {url}: {reason}") from error


@dataclass(frozen=True)
class SearchRequest:
    """A validated search request (built by the command line, usable from Python too)."""

    method: str
    dataset: str
    source: str
    window: int | None
    step: int | None
    space: dict
    preset: object
    trials: int
    epochs: int
    workers: int
    patience: int
    pruner: str
    seed: int
    teachers: tuple[str, ...]
    teacher_epochs: int
    split: SplitSettings
    storage_url: str
    tracking_uri: str
    study: str
    cache_dir: Path
    cpus_per_trial: float | None
    ray_address: str | None


def _git_commit() -> str:
    """The project's commit when run from a git checkout; empty otherwise."""
    folder = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except OSError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def provenance(data_hash: str) -> dict:
    import mlflow
    import numpy
    import optuna
    import ray
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "optuna": optuna.__version__,
        "ray": ray.__version__,
        "mlflow": mlflow.__version__,
        "data_sha256": data_hash,
        "git_commit": _git_commit(),
    }


def _start_ray(address: str | None) -> bool:
    """Join a running Ray (``address`` or one already initialised) or start a local one.

    Returns True when this call started Ray, so that the caller shuts it down again.
    """
    import ray

    if ray.is_initialized():
        return False
    options = dict(log_to_driver=False, logging_level=logging.ERROR, include_dashboard=False)
    if address:
        ray.init(address=address, **options)
        return False
    ray.init(num_cpus=os.cpu_count(), **options)
    return True


@contextlib.contextmanager
def _uninterrupted():
    """Ignore Ctrl-C while a stopped search is cleaned up: a second Ctrl-C there would
    leave trials and runs RUNNING. Only the main thread can do so; elsewhere it is a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _print(text: str) -> None:
    print(text, flush=True)


class Progress:
    """Prints one line per trial that ends during this run, with the best value so far;
    trials that ended in earlier runs of the study count, but are not printed again."""

    def __init__(self, study, budget: int):
        self.study = study
        self.budget = budget
        self.seen: set[int] = set()
        self.best: tuple[float, int] | None = None
        self.done = 0
        self.poll(echo=False)

    def poll(self, echo: bool = True) -> None:
        from optuna.trial import TrialState

        finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        trials = self.study.get_trials(deepcopy=False, states=finished)
        for trial in sorted(trials, key=lambda t: t.number):
            if trial.number in self.seen:
                continue
            self.seen.add(trial.number)
            self.done += trial.state != TrialState.FAIL
            if trial.state == TrialState.COMPLETE and (
                self.best is None or (trial.value, -trial.number) > (self.best[0], -self.best[1])
            ):
                self.best = (trial.value, trial.number)
            value = "" if trial.value is None else f"val {trial.value:.3f}"
            # A trial that raised records its error; one whose worker died is retried.
            error = trial.user_attrs.get("error")
            if trial.state == TrialState.FAIL:
                value = "failed" if error else "worker lost; retried"
            best = "-" if self.best is None else f"{self.best[0]:.3f} (trial {self.best[1]})"
            if echo:
                _print(
                    f"[{self.done:>3}/{self.budget}] trial {trial.number:>3} "
                    f"{trial.state.name:<8} {value:<16} best {best}"
                    + (f"; {error}" if trial.state == TrialState.FAIL and error else "")
                )


def _teacher_specs(request: SearchRequest, data_hash: str, split_key: str, image_key: str):
    from mmkd.teachers import TeacherSpec

    preset = request.preset
    return {
        modality: TeacherSpec(
            modality=modality,
            dataset=f"{request.dataset}:{data_hash}",
            split=split_key,
            depth=preset.teacher_depth,
            width=preset.teacher_width,
            epochs=request.teacher_epochs,
            batch_size=preset.teacher_batch_size,
            seed=request.seed,
            image_settings="" if modality == "sig" else image_key,
            schedule="step" if preset.name == "paper" else "cosine",
        )
        for modality in request.teachers
    }


def _prepare_teachers(
    request, specs, arrays, labels, split, num_classes, client, experiment_id, parent_run_id
) -> dict:
    """Load cached teachers; train the missing ones in parallel Ray tasks and log them."""
    import ray

    from mmkd.teachers import load_teacher_record, save_teacher, teacher_path
    from search import tracking
    from search.workers import train_teacher_task

    records, pending = {}, {}
    for modality, spec in specs.items():
        record = load_teacher_record(teacher_path(request.cache_dir, spec), spec)
        if record is not None:
            records[modality] = record
            continue
        pending[modality] = train_teacher_task.remote(
            spec, arrays[modality], labels, split, num_classes
        )
    if pending:
        _print(f"training teachers: {', '.join(pending)} ({request.teacher_epochs} epochs each)")
    modality_of = {reference: modality for modality, reference in pending.items()}
    for reference in _as_completed(list(modality_of)):
        modality = modality_of[reference]
        record = ray.get(reference)
        _print(f"  teacher {modality} trained")
        path = teacher_path(request.cache_dir, specs[modality])
        save_teacher(record, path)
        records[modality] = record
        run_id = tracking.start_child_run(
            client,
            experiment_id,
            parent_run_id,
            f"teacher-{modality}",
            {"kind": "teacher", "modality": modality, "study": request.study},
        )
        summary = {k: record[k] for k in ("best_val_acc", "test_acc")}
        tracking.log_trial_result(client, run_id, record["spec"], [], summary, {})
        client.log_artifact(run_id, str(path))
        client.set_terminated(run_id, status="FINISHED")
    for modality, record in records.items():
        val, test = record["best_val_acc"], record["test_acc"]
        _print(f"teacher {modality:<3}: val {val:.3f}  test {test:.3f}")
    return records


def _views_needed(request: SearchRequest, uses_teachers: bool) -> tuple[str, ...]:
    """Sig, plus the views of the teachers taking part and of every student branch the
    space can choose; a Sig-only search then never pays for pyts' GAF compilation."""
    entry = request.space["branches"]
    branch_sets = [entry["value"]] if "value" in entry else entry["choices"]
    needed = {"sig", *(request.teachers if uses_teachers else ())}
    needed.update(name for branches in branch_sets for name in branches.split("+"))
    return tuple(name for name in ("sig", "gaf", "pi") if name in needed)


def _as_completed(references: list):
    """Ray object references in the order they finish."""
    import ray

    while references:
        ready, references = ray.wait(references, num_returns=1)
        yield from ready


def run_search(request: SearchRequest) -> dict:
    """Run (or resume) one search; returns a summary of the study at the end."""
    import optuna
    import ray
    from mlflow.tracking import MlflowClient

    from mmkd.data import DataError, load_dataset, split_dataset
    from mmkd.methods import method_class
    from mmkd.modalities import ModalitySettings, compute_modalities
    from search import tracking
    from search.sqlite import ensure_database, sqlite_file
    from search.study import FINISHED, lost_study, make_storage, open_study
    from search.workers import TrialContext, start_search

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    started = time.perf_counter()

    dataset = load_dataset(request.source, request.window, request.step)
    length, image_size = dataset.X.shape[2], request.preset.image_size
    if length < image_size:
        raise DataError(
            f"{request.dataset}: windows of {length} samples are shorter than the "
            f"{request.preset.name} preset's {image_size}x{image_size} images; use longer "
            "windows (--window) or another preset"
        )
    split = split_dataset(dataset, request.split, request.seed)
    # A server storage is checked before anything is computed or created; sqlite files are
    # created only once both URLs open, so that a URL that fails leaves nothing behind.
    if not request.storage_url.startswith("sqlite:"):
        with _opening("--storage", request.storage_url):
            make_storage(request.storage_url)
    if request.ray_address:
        # Joining a cluster fails fast; it is done before any database is created.
        with _opening("--ray-address", request.ray_address):
            _start_ray(request.ray_address)
    settings = ModalitySettings(image_size=image_size)
    uses_teachers = method_class(request.method).uses_teachers
    modalities = _views_needed(request, uses_teachers)
    arrays = compute_modalities(dataset.X, split.train, settings, request.cache_dir, modalities)
    data_hash = dataset.fingerprint()
    _print(
        f"{dataset.name}: {len(split.train)} train / {len(split.val)} val / "
        f"{len(split.test)} test windows ({request.split.label()}), {dataset.num_classes} classes "
        f"({time.perf_counter() - started:.1f}s)"
    )

    identity = {
        "method": request.method,
        "dataset": request.dataset,
        "preset": request.preset.name,
        "teachers": ",".join(request.teachers),
        "split": request.split.key(),
        "seed": request.seed,
        "epochs": request.epochs,
        "data_sha256": data_hash,
    }
    with _opening("--tracking-uri", request.tracking_uri):
        ensure_database(request.tracking_uri, lambda url: MlflowClient(url).search_experiments())
        client = MlflowClient(request.tracking_uri)
        artifact_root = Path.cwd() / "mlruns"
        experiment_id = tracking.ensure_experiment(client, request.dataset, artifact_root)
        parent = tracking.find_parent_run(client, experiment_id, request.study)
    # Both stores carry the study's uuid: a deleted or replaced Optuna database must not
    # start the study again beside the old trials' runs.
    recorded_uuid = parent.data.tags.get("study_uuid") if parent else None
    storage_file = sqlite_file(request.storage_url)
    if recorded_uuid and storage_file is not None and not storage_file.exists():
        raise lost_study(request.study)
    with _opening("--storage", request.storage_url):
        ensure_database(request.storage_url, make_storage)
        study = open_study(
            request.storage_url,
            request.study,
            identity,
            request.space,
            request.tracking_uri,
            recorded_uuid,
        )
    _check_tracking_holds(study, client, experiment_id, parent)
    parent_params = {**identity, "space": study.user_attrs["space"], "pruner": request.pruner}
    parent_tags = {**provenance(data_hash), "study_uuid": study.user_attrs["study_uuid"]}
    parent_run_id = tracking.open_parent_run(
        client, experiment_id, request.study, parent_params, parent_tags
    )

    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    if finished >= request.trials:
        _print(f"study {request.study} already has {finished} finished trials; nothing to run")
        client.set_terminated(parent_run_id, status="FINISHED")
        return summarise(study, time.perf_counter() - started)

    started_ray = False
    outcome = "FINISHED"
    try:
        started_ray = _start_ray(request.ray_address)
        split_key = f"{request.seed}:{request.split.key()}"
        specs = _teacher_specs(request, data_hash, split_key, settings.key())
        labels = dataset.y
        records = {}
        if uses_teachers:
            records = _prepare_teachers(
                request,
                specs,
                arrays,
                labels,
                split,
                dataset.num_classes,
                client,
                experiment_id,
                parent_run_id,
            )

        # Trials of a driver that was killed stay RUNNING until their heartbeat is
        # stale; the budget actor fails and retries them then, so RUNNING trials do not
        # end this run here: the workers wait for them (or for another live driver's).
        finished = len(study.get_trials(deepcopy=False, states=FINISHED))
        cpus = request.cpus_per_trial or max(
            0.25, ray.cluster_resources().get("CPU", 1) / request.workers
        )
        context = TrialContext(
            method=request.method,
            dataset=request.dataset,
            study=request.study,
            storage_url=request.storage_url,
            tracking_uri=request.tracking_uri,
            experiment_id=experiment_id,
            parent_run_id=parent_run_id,
            space=request.space,
            teachers=request.teachers,
            epochs=request.epochs,
            patience=request.patience,
            pruner=request.pruner,
            seed=request.seed,
            num_classes=dataset.num_classes,
            in_channels=dataset.in_channels,
            student_depth=request.preset.student_depth,
            student_width=request.preset.student_width,
            image_depth=request.preset.image_depth,
            # One torch thread per worker unless --cpus-per-trial asks for more: for
            # these small networks a second thread bought nothing on an idle machine
            # and tripled trial times on a busy one (benchmarks/parallel.py).
            threads=max(1, int(request.cpus_per_trial or 1)),
            search_id=uuid.uuid4().hex,
        )
        _print(
            f"study {request.study}: {finished} of {request.trials} trials done; "
            f"{request.workers} worker{'s' if request.workers > 1 else ''} x {cpus:g} CPU"
        )
        search = start_search(
            context,
            budget=request.trials,
            workers=request.workers,
            cpus=cpus,
            arrays=arrays,
            labels=labels,
            split=split,
            teacher_records=records,
        )
        progress = Progress(study, request.trials)
        try:
            remaining = list(search.tasks)
            while remaining:
                ready, remaining = ray.wait(remaining, timeout=1.0)
                try:
                    ray.get(ready)
                except ray.exceptions.RayTaskError as error:
                    progress.poll()
                    raise SearchFailed(str(error.cause)) from error
                except ray.exceptions.RayError as error:
                    raise SearchFailed(f"a worker was lost: {error}") from error
                progress.poll()
            progress.poll()
        except BaseException:
            with _uninterrupted():
                # Trials that ended since the last poll are printed before the clean-up.
                with contextlib.suppress(Exception):
                    progress.poll()
                search.stop()
                _fail_unfinished(study, client, experiment_id, context.search_id)
            raise
    except KeyboardInterrupt:
        outcome = "KILLED"
        raise
    except BaseException:
        outcome = "FAILED"
        raise
    finally:
        with _uninterrupted():
            client.set_terminated(parent_run_id, status=outcome)
            if started_ray:
                ray.shutdown()

    return summarise(study, time.perf_counter() - started)


def _check_tracking_holds(study, client, experiment_id: str, parent) -> None:
    """Refuse a study whose trials the MLflow store does not hold: the store was deleted or
    replaced (no search of that name, yet trials), or the Optuna database is an older copy
    (the store has runs of trial numbers the study does not have yet). Going on would leave
    trials without runs, or two runs for one trial number."""
    from search import tracking
    from search.study import StudyMismatch

    trials = study.get_trials(deepcopy=False)
    if parent is None:
        if trials:
            raise StudyMismatch(
                f"study {study.study_name!r} has {len(trials)} trials but the MLflow store "
                "has no search of that name (was its database deleted or replaced?); point "
                "--tracking-uri at the store that holds it, or pass --study NEW_NAME"
            )
        return
    numbers = [
        int(run.data.tags["trial_number"])
        for run in tracking.trial_runs(client, experiment_id, study.study_name)
    ]
    if numbers and max(numbers) >= len(trials):
        raise StudyMismatch(
            f"the MLflow store holds trial {max(numbers)} of study {study.study_name!r}, "
            f"which this Optuna storage does not have ({len(trials)} trials: an older copy "
            "of its database?); point --storage at the current one, or pass --study NEW_NAME"
        )


def _fail_unfinished(study, client, experiment_id: str, search_id: str) -> None:
    """Mark this search's RUNNING trials failed and close their MLflow runs as killed.

    Called after the workers and the tracker were stopped, so that nothing is left RUNNING;
    the budget does not count failed trials, so the next run of the same command fills
    their slots. A worker stopped between asking for a trial and tagging it leaves a trial
    without ``worker_pid``; such trials are failed too (another live search tags its trials
    within milliseconds of asking). A run that its tracker finished just before the worker
    could tell Optuna is closed as killed too, so that both sides agree.
    """
    from optuna.trial import Trial, TrialState

    from search import tracking

    runs = set()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = trial.user_attrs
        if attrs.get("search_id") != search_id and "worker_pid" in attrs:
            continue
        run_id = attrs.get("mlflow_run_id")
        if run_id is None:  # its worker was stopped before it stored the id
            run = tracking.find_trial_run(client, experiment_id, study.study_name, trial.number)
            if run is not None:
                run_id = run.info.run_id
                Trial(study, trial._trial_id).set_user_attr("mlflow_run_id", run_id)
        study.tell(trial.number, state=TrialState.FAIL)
        runs.add(run_id)
    for run in tracking.trial_runs(client, experiment_id, study.study_name, state="RUNNING"):
        if run.data.tags.get("search_id") == search_id:
            runs.add(run.info.run_id)
    for run_id in runs - {None}:
        tracking.close_failed_run(client, run_id, "search interrupted", "KILLED")


def summarise(study, seconds: float) -> dict:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counts = {state.name: sum(t.state == state for t in trials) for state in TrialState}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: (t.value, -t.number)) if complete else None
    return {
        "study": study.study_name,
        "counts": {name: n for name, n in counts.items() if n},
        "best_trial": None if best is None else best.number,
        "best_value": None if best is None else best.value,
        "best_params": None if best is None else best.params,
        "seconds": seconds,
    }
