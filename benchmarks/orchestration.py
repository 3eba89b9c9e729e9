"""Orchestration overhead: mmkd-search's machinery against Ray Tune on the same tiny trials.

Both systems run the same N trials of one fixed, tiny training function (the `student`
method's Sig student, `mmkd.train.fit` for a few epochs on a small synthetic data set),
two at a time on a 2-CPU Ray runtime, searching the same space (learning rate and weight
decay) with the same TPE sampler settings, and logging every trial to MLflow (sqlite):

- mmkd-search: Optuna RDB storage (sqlite) + `BudgetCounter` actor + two long-lived
  `search_worker` Ray tasks + one nested MLflow run per trial (params, per-epoch metrics,
  config and checkpoint artifacts), i.e. `search.workers` as the driver runs it;
- Ray Tune with `OptunaSearch` and `MLflowLoggerCallback`, with Tune's defaults (one new
  actor per trial) and with ``reuse_actors=True``.

Each run gets a fresh Ray runtime (its start-up is not timed); the systems alternate within
each repeat. The per-trial overhead is counted in worker-slot seconds,
``(2 x wall - N x training alone) / N``, with the training alone measured by running the
same fits one after another in one process. Each run's wall time is split at its first
trial's start and its last trial's end: start-up, trials, tail. Finally the same
mmkd-search runs once more with the calls in both workers timed by category (storage,
MLflow, training, budget claims, waits, worker start-up), to show where its time goes.

    python benchmarks/orchestration.py            # 40 trials, 3 repeats (about 10 minutes)
    python benchmarks/orchestration.py --quick    # 6 trials
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from dataclasses import dataclass

import harness

DATA = "synthetic:n=120,length=64,channels=6"
EPOCHS = 3
SEED = 0


@dataclass
class Timeline:
    """One run's wall time, split at its first trial's start and its last trial's end."""

    seconds: float
    first_start: float
    last_end: float
    trials: int

    @property
    def start_up(self) -> float:
        return self.first_start

    @property
    def per_trial(self) -> float:
        """Wall seconds per trial while trials run (2 at a time)."""
        return (self.last_end - self.first_start) / self.trials

    @property
    def tail(self) -> float:
        return self.seconds - self.last_end


def tune_space(space: dict) -> dict:
    """mmkd-search's space (`search.space` entries) as a Ray Tune ``param_space``."""
    from ray import tune

    converted = {}
    for key, entry in space.items():
        if "value" in entry:
            converted[key] = entry["value"]
        elif entry["type"] == "categorical":
            converted[key] = tune.choice(entry["choices"])
        elif entry["type"] == "int":
            sample = tune.lograndint if entry["log"] else tune.randint
            converted[key] = sample(entry["low"], entry["high"] + 1)
        else:
            sample = tune.loguniform if entry["log"] else tune.uniform
            converted[key] = sample(entry["low"], entry["high"])
    return converted


def tune_trial(config: dict, problem, epochs: int) -> None:
    """The Ray Tune trainable: exactly the training of an mmkd-search `student` trial."""
    import torch
    from ray import tune

    from mmkd.config import TrialConfig
    from mmkd.methods import build_method, method_class
    from mmkd.nets import Student
    from mmkd.train import fit

    started = time.time()
    torch.set_num_threads(1)
    trial_config = TrialConfig.from_params(config)
    seed = SEED
    torch.manual_seed(seed)
    student = Student(
        problem.in_channels,
        problem.num_classes,
        branches=trial_config.branch_names,
        fusion=method_class("student").fusion,
        heads=trial_config.heads,
    )
    method = build_method("student", trial_config, ())
    inputs = {
        branch: torch.from_numpy(problem.arrays[branch]) for branch in trial_config.branch_names
    }
    reported = []

    def report(epoch_report):
        reported.append(epoch_report.epoch)
        tune.report(
            {
                "val_acc": epoch_report.val_acc,
                "best_val_acc": epoch_report.best_val_acc,
                "started": started,
                "now": time.time(),
            }
        )

    result = fit(
        student,
        method,
        inputs,
        torch.from_numpy(problem.labels).long(),
        problem.split,
        trial_config,
        epochs,
        callback=report,
        seed=seed,
    )
    if not reported:
        tune.report(
            {
                "val_acc": 0.0,
                "best_val_acc": result.best_val_acc,
                "started": started,
                "now": time.time(),
            }
        )


def run_tune(folder, problem, space: dict, trials: int, epochs: int, reuse: bool) -> Timeline:
    """Ray Tune with OptunaSearch and the MLflow logger, 2 trials at a time."""
    import optuna
    from mlflow.tracking import MlflowClient
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.tune.search.optuna import OptunaSearch

    tracking_uri = f"sqlite:///{folder}/mlflow.db"
    experiment = "tune-bench"
    MlflowClient(tracking_uri).create_experiment(
        experiment, artifact_location=(folder / "mlruns").as_uri()
    )
    shared = {
        "problem": harness.Problem(
            name=problem.name,
            arrays={name: problem.arrays[name].copy() for name in problem.arrays},
            labels=problem.labels,
            split=problem.split,
            num_classes=problem.num_classes,
            in_channels=problem.in_channels,
        ),
        "epochs": epochs,
    }

    clock, started = time.time(), time.perf_counter()
    sampler = optuna.samplers.TPESampler(seed=SEED, n_startup_trials=5, multivariate=True)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(tune_trial, **shared), {"cpu": 1}),
        param_space=tune_space(space),
        tune_config=tune.TuneConfig(
            search_alg=OptunaSearch(metric="best_val_acc", mode="max", sampler=sampler),
            num_samples=trials,
            max_concurrent_trials=2,
            reuse_actors=reuse,
        ),
        run_config=tune.RunConfig(
            name="tune-bench",
            storage_path=str(folder / "ray_results"),
            callbacks=[MLflowLoggerCallback(tracking_uri, experiment_name=experiment)],
            verbose=0,
        ),
    )
    results = tuner.fit()
    seconds = time.perf_counter() - started
    if results.num_errors or len(results) != trials:
        raise RuntimeError(f"Ray Tune ran {len(results)} trials, {results.num_errors} errors")
    last = [result.metrics for result in results]
    return Timeline(
        seconds=seconds,
        first_start=min(metrics["started"] for metrics in last) - clock,
        last_end=max(metrics["now"] for metrics in last) - clock,
        trials=trials,
    )


def run_mmkd(folder, problem, space: dict, trials: int, epochs: int) -> Timeline:
    outcome = harness.run_search(
        folder,
        problem,
        space=space,
        trials=trials,
        epochs=epochs,
        workers=2,
        cpus_per_worker=1,
        threads=1,
    )
    finished = [t for t in outcome.trials if t.state.name == "COMPLETE"]
    if len(finished) != trials:
        raise RuntimeError(f"mmkd-search finished {outcome.states()} for a budget of {trials}")
    return Timeline(
        seconds=outcome.seconds,
        first_start=min(t.datetime_start.timestamp() for t in finished) - outcome.started_at,
        last_end=max(t.datetime_complete.timestamp() for t in finished) - outcome.started_at,
        trials=trials,
    )


def training_seconds(problem, space: dict, epochs: int, repeats: int) -> float:
    """Median seconds of one trial's training alone (same fit, one thread, no machinery)."""
    import torch

    from mmkd.config import TrialConfig
    from mmkd.methods import build_method
    from mmkd.nets import Student
    from mmkd.train import fit

    torch.set_num_threads(1)
    params = {key: entry.get("value", entry.get("low")) for key, entry in space.items()}
    config = TrialConfig.from_params(params)
    inputs = {"sig": torch.from_numpy(problem.arrays["sig"].copy())}
    labels = torch.from_numpy(problem.labels).long()
    samples = []
    for attempt in range(repeats + 1):
        torch.manual_seed(attempt)
        started = time.perf_counter()
        student = Student(problem.in_channels, problem.num_classes)
        fit(
            student,
            build_method("student", config, ()),
            inputs,
            labels,
            problem.split,
            config,
            epochs,
        )
        samples.append(time.perf_counter() - started)
    return harness.median(samples[1:])


class _Ledger:
    """Exclusive wall time per category on one thread: entering a category pauses the one
    it was entered from, so nested calls (a storage call inside fit's callback) count once.
    Calls that enter a category from outside it are also counted and timed by name."""

    def __init__(self):
        self.totals: dict[str, float] = {}
        self.calls: dict[str, list] = {}
        self.stack: list[str] = []
        self.since = time.perf_counter()
        self.thread = threading.get_ident()

    def switch(self) -> None:
        now = time.perf_counter()
        if self.stack:
            self.totals[self.stack[-1]] = self.totals.get(self.stack[-1], 0.0) + now - self.since
        self.since = now

    def wrap(self, owner, name: str, category: str) -> None:
        original = getattr(owner, name)
        ledger = self
        label = f"{owner.__name__}.{name}"

        @functools.wraps(original)
        def timed(*args, **kwargs):
            if threading.get_ident() != ledger.thread:
                return original(*args, **kwargs)
            outermost = category not in ledger.stack
            started = time.perf_counter()
            ledger.switch()
            ledger.stack.append(category)
            try:
                return original(*args, **kwargs)
            finally:
                ledger.switch()
                ledger.stack.pop()
                if outermost:
                    entry = ledger.calls.setdefault(label, [0, 0.0])
                    entry[0] += 1
                    entry[1] += time.perf_counter() - started

        setattr(owner, name, timed)


STORAGE = "Optuna storage calls (sqlite)"
MLFLOW = "waiting for the TrialTracker (MLflow run ids and writes)"
TRAINING = "training: fit() less its per-epoch report"
OTHER = "rest of study.optimize (sampler, suggest, student build, ...)"
CLAIM = "budget claims (round trip to the BudgetCounter actor)"
WAIT = "sleeping after a 'wait' claim (end of the search)"
START = "worker start-up (imports, storage client, arrays)"


def timed_search_worker(*args):
    """`search_worker` with its calls timed by category, in its own Ray worker process.

    Wraps, in this process only: `optuna.Study.optimize` (one trial each), every method of
    the RDB storage, `mmkd.train.fit`, the waits for the tracker (a run's id, the end of its
    writes), the budget claims and `time.sleep` (waits after a "wait" claim). What none of
    them covers is the worker's start-up.
    """
    started = time.perf_counter()
    import optuna
    from optuna.storages._rdb.storage import RDBStorage

    import mmkd.train
    from search import workers

    ledger = _Ledger()
    for name, value in list(vars(RDBStorage).items()):
        if inspect.isfunction(value) and not name.startswith("__"):
            ledger.wrap(RDBStorage, name, STORAGE)
    ledger.wrap(mmkd.train, "fit", TRAINING)
    ledger.wrap(optuna.Study, "optimize", OTHER)
    ledger.wrap(workers._TrialRun, "link", MLFLOW)
    ledger.wrap(workers.TrialRunner, "_finish", MLFLOW)
    ledger.wrap(workers, "_claim", CLAIM)
    ledger.wrap(time, "sleep", WAIT)
    result = workers.search_worker._function(*args)
    ledger.switch()
    seconds = time.perf_counter() - started
    totals = dict(ledger.totals)
    totals[START] = seconds - sum(totals.values())
    return {**result, "totals": totals, "calls": ledger.calls}


def where_time_goes(problem, space: dict, trials: int, epochs: int):
    """Worker-seconds per trial of a 2-worker mmkd-search by category; the storage and
    MLflow calls per trial with their mean milliseconds; and the search's wall time."""
    import ray

    with harness.scratch_folder("profile") as folder, harness.ray_runtime():
        outcome = harness.run_search(
            folder,
            problem,
            space=space,
            trials=trials,
            epochs=epochs,
            workers=2,
            cpus_per_worker=1,
            threads=1,
            worker_task=ray.remote(timed_search_worker),
        )
    ran = sum(worker["ran"] for worker in outcome.workers)
    parts = dict.fromkeys((START, CLAIM, STORAGE, MLFLOW, TRAINING, OTHER, WAIT), 0.0)
    calls: dict[str, list] = {}
    for worker in outcome.workers:
        for key, value in worker["totals"].items():
            parts[key] += value
        for label, (count, seconds) in worker["calls"].items():
            entry = calls.setdefault(label, [0, 0.0])
            entry[0] += count
            entry[1] += seconds
    per_trial = {key: value / ran for key, value in parts.items()}
    per_call = {
        label: (count / ran, seconds / count, seconds / ran)
        for label, (count, seconds) in calls.items()
        if label.startswith(("RDBStorage", "MlflowClient"))
    }
    return per_trial, per_call, outcome.seconds


def main() -> None:
    args = harness.arguments(__doc__.splitlines()[0]).parse_args()
    harness.say_load("start")
    harness.quiet()
    trials = 6 if args.quick else 40
    space = harness.load_space("student")
    problem = harness.make_problem(DATA)
    train = training_seconds(problem, space, EPOCHS, max(5, args.repeats))
    harness.say(
        f"{trials} trials of {EPOCHS} epochs of the Sig student on {DATA} "
        f"({len(problem.split.train)} training windows), 2 at a time, 2 CPUs; "
        f"training alone: {train:.3f} s per trial (median, 1 thread)"
    )

    systems = {
        "mmkd-search": lambda folder: run_mmkd(folder, problem, space, trials, EPOCHS),
        "Ray Tune, defaults": lambda folder: run_tune(
            folder, problem, space, trials, EPOCHS, reuse=False
        ),
        "Ray Tune, reuse_actors": lambda folder: run_tune(
            folder, problem, space, trials, EPOCHS, reuse=True
        ),
    }
    runs = {name: [] for name in systems}
    for repeat in range(args.repeats):
        for name, run in systems.items():
            with harness.scratch_folder("orch") as folder, harness.ray_runtime():
                runs[name].append(run(folder))
            last = runs[name][-1]
            harness.say(
                f"  repeat {repeat + 1}: {name:<22} {last.seconds:6.2f} s (start-up "
                f"{last.start_up:.2f} s, {last.per_trial:.3f} s per trial, tail {last.tail:.2f} s)"
            )

    def medians(name, field):
        return harness.median([getattr(run, field) for run in runs[name]])

    ours = medians("mmkd-search", "seconds")
    rows = []
    for name in systems:
        wall = medians(name, "seconds")
        per_trial = medians(name, "per_trial")
        rows.append(
            [
                name,
                harness.spread([run.seconds for run in runs[name]]),
                f"{ours / wall:.2f}",
                f"{medians(name, 'start_up'):.2f}",
                f"{per_trial:.3f}",
                f"{2 * per_trial - train:.3f}",
                f"{medians(name, 'tail'):.2f}",
            ]
        )
    harness.say()
    harness.say(
        harness.table(
            [
                "system",
                "wall s, median [min-max]",
                "mmkd / this",
                "start-up s",
                "s per trial",
                "overhead worker-s per trial",
                "tail s",
            ],
            rows,
        )
    )
    harness.say(
        "start-up: clock start to the first trial's start; s per trial: (last trial's end - "
        "first trial's start) / N, 2 trials at a time; overhead worker-s per trial: "
        "2 x that - training alone; tail: last trial's end to the end of the run."
    )
    for mine in [name for name in systems if name.startswith("mmkd-search")]:
        for name in ("Ray Tune, defaults", "Ray Tune, reuse_actors"):
            ratio = medians(mine, "seconds") / medians(name, "seconds")
            harness.say(
                f"target {mine} <= 0.5 x {name}: {ratio:.2f} -> {harness.verdict(ratio <= 0.5)}"
            )

    harness.say()
    harness.say(
        "Where an mmkd-search worker's time goes (the same search once more, calls timed by "
        "category inside both workers; worker-seconds divided by the trials run):"
    )
    per_trial, per_call, seconds = where_time_goes(problem, space, trials, EPOCHS)
    rows = [[key, f"{value * 1000:.0f}"] for key, value in per_trial.items()]
    rows.append(["total worker-seconds per trial", f"{sum(per_trial.values()) * 1000:.0f}"])
    harness.say(harness.table(["part", "ms per trial"], rows))
    harness.say(f"(that search: {seconds:.1f} s wall)")
    harness.say()
    harness.say("Its storage and MLflow calls (made in the workers), by total time per trial:")
    ranked = sorted(per_call.items(), key=lambda item: -item[1][2])
    harness.say(
        harness.table(
            ["call", "calls per trial", "ms per call", "ms per trial"],
            [
                [label, f"{count:.1f}", f"{each * 1000:.1f}", f"{total * 1000:.0f}"]
                for label, (count, each, total) in ranked
            ],
        )
    )

    harness.say_load("end")


if __name__ == "__main__":
    main()
