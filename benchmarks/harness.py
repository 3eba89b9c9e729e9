"""What the benchmark scripts share: arguments, timing, tables, a Ray runtime, and one search.

`run_search` drives mmkd-search's own pieces the way `search.runner.run_search` does after
its data and teachers are ready: the Optuna study (`search.study.open_study`), the MLflow
experiment and parent run (`search.tracking`), and `search.workers.start_search` (the
`BudgetCounter` and `TrialTracker` actors, the `SharedTeacherOutputs` actor for a method
with teachers, and the long-lived `search_worker` Ray tasks). It skips only what a benchmark
must control itself: loading data, computing images and training teachers.

Scripts import this file as a sibling module (``python benchmarks/<name>.py`` puts
``benchmarks/`` first on the import path).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


def arguments(description: str, repeats: int = 3) -> argparse.ArgumentParser:
    """A parser with the options every benchmark takes (``--quick``, ``--repeats``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (under 2 minutes)")
    parser.add_argument(
        "--repeats", type=int, default=repeats, help=f"repeats per measurement (default {repeats})"
    )
    return parser


def quiet() -> None:
    """Silence the libraries' progress chatter, so that the tables stay readable."""
    warnings.filterwarnings("ignore")
    for name in ("mlflow", "optuna", "ray", "alembic", "filelock"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def spread(values: Sequence[float]) -> str:
    """``median [min-max]`` of a few repeats, for tables."""
    return f"{median(values):.3g} [{min(values):.3g}-{max(values):.3g}]"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (it reads as plain text too)."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]

    def line(values):
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), rule, *(line(row) for row in cells)])


def verdict(ok: bool) -> str:
    return "yes" if ok else "NO"


def say(text: str = "") -> None:
    print(text, flush=True)


def say_load(when: str) -> None:
    """The machine's load average: other jobs running at the same time slow every timing."""
    one, five, fifteen = os.getloadavg()
    say(
        f"[{when}: load average {one:.1f} / {five:.1f} / {fifteen:.1f} (1 / 5 / 15 min) on "
        f"{os.cpu_count()} CPUs]"
    )


@contextlib.contextmanager
def ray_runtime(num_cpus: int = 2) -> Iterator[float]:
    """A fresh local Ray runtime as mmkd-search starts one; yields its start-up seconds."""
    import ray

    started = time.perf_counter()
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
    )
    try:
        yield time.perf_counter() - started
    finally:
        ray.shutdown()


def own_ray_workers(title: str) -> list:
    """This process's Ray worker processes whose title starts with ``title`` (Ray titles
    a worker ``ray::<task name>`` while it runs a task); another user's Ray is left out."""
    import psutil

    me = os.getpid()
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if not cmdline or not cmdline[0].startswith(title):
            continue
        try:
            if any(parent.pid == me for parent in process.parents()):
                found.append(process)
        except psutil.Error:
            continue
    return found


@contextlib.contextmanager
def scratch_folder(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=f"mmkd-bench-{prefix}-") as folder:
        yield Path(folder)


@dataclass
class Problem:
    """A data set ready for trials: windows as cached float16 views, labels and split."""

    name: str
    arrays: dict
    labels: np.ndarray
    split: object
    num_classes: int
    in_channels: int


def make_problem(
    source: str,
    modalities: Sequence[str] = ("sig",),
    image_size: int = 32,
    cache_dir: Path | None = None,
    seed: int = 0,
) -> Problem:
    """Load ``source`` (e.g. ``synthetic:n=600``), split it and compute its views (cached)."""
    from mmkd.data import SplitSettings, load_dataset, split_dataset
    from mmkd.modalities import ModalitySettings, compute_modalities

    dataset = load_dataset(source)
    split = split_dataset(dataset, SplitSettings(), seed)
    arrays = compute_modalities(
        dataset.X,
        split.train,
        ModalitySettings(image_size=image_size),
        cache_dir or ROOT / ".mmkd-cache",
        tuple(modalities),
    )
    return Problem(
        name=dataset.name,
        arrays=arrays,
        labels=dataset.y,
        split=split,
        num_classes=dataset.num_classes,
        in_channels=dataset.in_channels,
    )


@dataclass
class SearchOutcome:
    """What one search measured: its wall time (from ``started_at``, a Unix time) and its
    trials as Optuna stored them."""

    seconds: float
    started_at: float
    trials: list
    workers: list[dict]
    storage_url: str
    tracking_uri: str
    study: str
    extra: dict = field(default_factory=dict)

    def states(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for trial in self.trials:
            counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
        return counts


def run_search(
    folder: Path,
    problem: Problem,
    *,
    method: str = "student",
    space: dict,
    trials: int,
    epochs: int,
    workers: int,
    cpus_per_worker: float,
    threads: int,
    pruner: str = "none",
    patience: int | None = None,
    seed: int = 0,
    teachers: tuple[str, ...] = (),
    teacher_records: dict | None = None,
    student_depth: int = 16,
    student_width: int = 1,
    image_depth: int = 10,
    on_started=None,
    worker_task=None,
) -> SearchOutcome:
    """One search with mmkd-search's study, tracking, actors and worker tasks.

    The MLflow database and experiment are created before the clock starts (both systems
    compared in these benchmarks pay that once per folder); the clock covers the study,
    the parent run, the budget and tracker actors, shipping the arrays, the shared teacher
    passes (for a method with teachers) and every trial. Needs a running Ray runtime.
    ``patience`` None means no early stop by patience. ``on_started`` is called with the
    worker task references right after they are submitted (e.g. to sample the workers'
    memory) and may return a value that lands in ``outcome.extra``.
    ``worker_task`` replaces `search_worker` by a Ray task with its signature (e.g. one that
    profiles it).
    """
    import ray
    from mlflow.tracking import MlflowClient

    from search import tracking
    from search.study import open_study
    from search.workers import TrialContext, start_search

    storage_url = f"sqlite:///{folder}/optuna.db"
    tracking_uri = f"sqlite:///{folder}/mlflow.db"
    client = MlflowClient(tracking_uri)
    experiment_id = tracking.ensure_experiment(client, problem.name, folder / "mlruns")
    study_name = f"bench-{method}-{uuid.uuid4().hex[:8]}"
    identity = {"method": method, "dataset": problem.name, "epochs": epochs, "seed": seed}

    started_at, started = time.time(), time.perf_counter()
    study = open_study(storage_url, study_name, identity, space, tracking_uri)
    parent_run_id = tracking.open_parent_run(
        client, experiment_id, study_name, {**identity, "pruner": pruner}, {}
    )
    context = TrialContext(
        method=method,
        dataset=problem.name,
        study=study_name,
        storage_url=storage_url,
        tracking_uri=tracking_uri,
        experiment_id=experiment_id,
        parent_run_id=parent_run_id,
        space=space,
        teachers=teachers,
        epochs=epochs,
        patience=patience if patience is not None else epochs + 1,
        pruner=pruner,
        seed=seed,
        num_classes=problem.num_classes,
        in_channels=problem.in_channels,
        student_depth=student_depth,
        student_width=student_width,
        image_depth=image_depth,
        threads=threads,
        search_id=uuid.uuid4().hex,
    )
    search = start_search(
        context,
        budget=trials,
        workers=workers,
        cpus=cpus_per_worker,
        arrays=problem.arrays,
        labels=problem.labels,
        split=problem.split,
        teacher_records=teacher_records or {},
        task=worker_task,
    )
    extra = {}
    if on_started is not None:
        extra = on_started(search.tasks) or {}
    results = ray.get(search.tasks)
    seconds = time.perf_counter() - started

    client.set_terminated(parent_run_id, status="FINISHED")
    search.stop()
    return SearchOutcome(
        seconds=seconds,
        started_at=started_at,
        trials=study.get_trials(deepcopy=False),
        workers=results,
        storage_url=storage_url,
        tracking_uri=tracking_uri,
        study=study_name,
        extra=extra,
    )


def load_space(method: str, assignments: Sequence[str] = ()) -> dict:
    """The method's validated space (shared part + method file), with ``key=value`` fixes."""
    from search.space import load_space as load

    return load(method, None, None, list(assignments))
