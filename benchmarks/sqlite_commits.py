"""sqlite commits: what one Optuna or MLflow write costs, by sqlite journal mode.

Every Optuna storage write (a user attribute, an intermediate value, a parameter) and
every MLflow call is one sqlite transaction; in sqlite's default mode (rollback journal,
``synchronous=FULL``) each commit waits for the disk (fsync). This times the writes a
trial makes, in fresh databases, in three modes side by side:

- default: what mmkd-search uses now;
- WAL: ``PRAGMA journal_mode=WAL`` (stored in the database file);
- WAL + NORMAL: WAL plus ``PRAGMA synchronous=NORMAL`` (set per connection): commits no
  longer wait for the disk; a power cut can lose the last commits, never corrupt the file.

    python benchmarks/sqlite_commits.py            # 60 writes per kind, 3 repeats
    python benchmarks/sqlite_commits.py --quick    # 20 writes per kind
"""

from __future__ import annotations

import sqlite3
import time

import harness

MODES = {
    "default": (),
    "WAL": ("PRAGMA journal_mode=WAL",),
    "WAL + NORMAL": ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL"),
}
PRAGMAS: list[str] = []


def apply_pragmas(dbapi_connection, _record) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        for pragma in PRAGMAS:
            dbapi_connection.execute(pragma)


def time_writes(folder, writes: int) -> dict[str, float]:
    """Median milliseconds of each kind of write, in fresh databases under ``folder``."""
    import optuna
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    study = optuna.create_study(storage=f"sqlite:///{folder}/optuna.db", direction="maximize")
    trial = study.ask()
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    experiment = client.create_experiment("commits", artifact_location=folder.as_uri())
    samples: dict[str, list[float]] = {}

    def timed(name, call, *args):
        started = time.perf_counter()
        result = call(*args)
        samples.setdefault(name, []).append(1000 * (time.perf_counter() - started))
        return result

    metrics = [Metric("val_acc", 0.5, 0, step) for step in range(20)]
    for index in range(writes):
        timed("Optuna trial.set_user_attr", trial.set_user_attr, f"key{index}", index)
        timed("Optuna trial.report", trial.report, 0.5, index)
        run_id = timed("MLflow create_run", client.create_run, experiment).info.run_id
        timed("MLflow log_batch (20 metrics)", client.log_batch, run_id, metrics)
        timed("MLflow set_terminated", client.set_terminated, run_id)
    return {name: harness.median(values) for name, values in samples.items()}


def main() -> None:
    args = harness.arguments(__doc__.splitlines()[0]).parse_args()
    harness.say_load("start")
    harness.quiet()
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    event.listen(Engine, "connect", apply_pragmas)
    writes = 20 if args.quick else 60

    results: dict[str, dict[str, list[float]]] = {mode: {} for mode in MODES}
    for _ in range(args.repeats):
        for mode, pragmas in MODES.items():
            PRAGMAS[:] = pragmas
            with harness.scratch_folder("sqlite") as folder:
                for name, value in time_writes(folder, writes).items():
                    results[mode].setdefault(name, []).append(value)

    names = list(results["default"])
    rows = []
    for name in names:
        default = harness.median(results["default"][name])
        row = [name]
        for mode in MODES:
            value = harness.median(results[mode][name])
            row.append(
                f"{value:.2f}" + ("" if mode == "default" else f" ({value / default:.2f}x)")
            )
        rows.append(row)
    harness.say(f"median ms per write ({writes} writes of each kind, {args.repeats} repeats)")
    harness.say(harness.table(["write", *MODES], rows))
    harness.say_load("end")


if __name__ == "__main__":
    main()
