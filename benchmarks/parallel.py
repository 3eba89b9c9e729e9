"""Parallel efficiency: trials per minute with 2 workers on 2 cores against 1 worker.

Trials of about 5 s (the `student` method's Sig student, fixed number of epochs, no
pruning, no early stop) run through mmkd-search's machinery (`search.workers`) in three
set-ups, interleaved within each repeat, all in one local 2-CPU Ray runtime:

- 1 worker x 2 threads: what ``--workers 1`` does on 2 CPUs (torch pinned to 2 threads);
- 1 worker x 1 thread: the same worker with half the CPU;
- 2 workers x 1 thread each: what ``--workers 2`` does.

Throughput is measured in the steady state: trials finished per minute between the first
trial's start and the last trial's end (Optuna's timestamps), so the search's fixed start-up
(measured by orchestration.py) does not blur it; trials per minute over the whole wall time
are shown too. While each search runs, every worker process is sampled with psutil: the
CPU it used per second of wall time and how many of its threads did work (a thread that
used more than 10% of its process's CPU time), to check that no worker runs more compute
threads than its CPU share.

    python benchmarks/parallel.py            # 8 trials of ~5 s, 3 repeats (about 8 minutes)
    python benchmarks/parallel.py --quick    # 4 trials of ~1.5 s, 3 repeats
"""

from __future__ import annotations

import time

import harness

DATA = "synthetic:n=600,length=128,channels=6"
SETUPS = {
    "1 worker x 2 threads": (1, 2),
    "1 worker x 1 thread": (1, 1),
    "2 workers x 1 thread": (2, 1),
}


class ThreadSampler:
    """Samples the CPU times of the processes running ``search_worker`` until they finish."""

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.first: dict[int, dict[int, float]] = {}
        self.last: dict[int, dict[int, float]] = {}

    def __call__(self, tasks) -> dict:
        import psutil
        import ray

        started = time.perf_counter()
        remaining = list(tasks)
        while remaining:
            _, remaining = ray.wait(remaining, timeout=self.interval)
            for process in harness.own_ray_workers("ray::search_worker"):
                try:
                    threads = {t.id: t.user_time + t.system_time for t in process.threads()}
                except psutil.Error:
                    continue
                self.first.setdefault(process.pid, threads)
                self.last[process.pid] = threads
        seconds = time.perf_counter() - started
        return {"workers": self.summary(seconds)}

    def summary(self, seconds: float) -> list[dict]:
        rows = []
        for pid, last in self.last.items():
            first = self.first[pid]
            used = {tid: cpu - first.get(tid, 0.0) for tid, cpu in last.items()}
            total = sum(used.values())
            busy = sum(cpu > 0.1 * total for cpu in used.values()) if total > 0 else 0
            rows.append({"pid": pid, "cpu_per_second": total / seconds, "busy_threads": busy})
        return rows


def steady_rate(trials) -> float:
    """Trials finished per minute between the first start and the last end."""
    start = min(trial.datetime_start for trial in trials)
    end = max(trial.datetime_complete for trial in trials)
    return 60.0 * len(trials) / (end - start).total_seconds()


def trial_seconds(trials) -> float:
    return harness.median(
        [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials]
    )


def main() -> None:
    args = harness.arguments(__doc__.splitlines()[0]).parse_args()
    harness.say_load("start")
    harness.quiet()
    trials, epochs = (4, 8) if args.quick else (8, 25)
    space = harness.load_space("student")
    problem = harness.make_problem(DATA)
    harness.say(
        f"{trials} trials of {epochs} epochs of the Sig student on {DATA} "
        f"({len(problem.split.train)} training windows); one 2-CPU Ray runtime"
    )

    results = {name: [] for name in SETUPS}
    with harness.ray_runtime(2):
        # Untimed: starts and warms the worker processes that the measured runs reuse.
        with harness.scratch_folder("warm") as folder:
            harness.run_search(
                folder,
                problem,
                space=space,
                trials=2,
                epochs=1,
                workers=2,
                cpus_per_worker=1,
                threads=1,
            )
        for repeat in range(args.repeats):
            for name, (workers, threads) in SETUPS.items():
                with harness.scratch_folder("parallel") as folder:
                    outcome = harness.run_search(
                        folder,
                        problem,
                        space=space,
                        trials=trials,
                        epochs=epochs,
                        workers=workers,
                        cpus_per_worker=2 / workers,
                        threads=threads,
                        on_started=ThreadSampler(),
                    )
                done = [t for t in outcome.trials if t.state.name == "COMPLETE"]
                if len(done) != trials:
                    raise RuntimeError(f"{name}: {outcome.states()} for a budget of {trials}")
                sample = {
                    "rate": steady_rate(done),
                    "wall_rate": 60.0 * trials / outcome.seconds,
                    "trial_s": trial_seconds(done),
                    "workers": outcome.extra["workers"],
                }
                results[name].append(sample)
                harness.say(
                    f"  repeat {repeat + 1}: {name:<22} {sample['rate']:5.1f} trials/min "
                    f"(trial {sample['trial_s']:.2f} s, wall {outcome.seconds:.1f} s)"
                )

    def rates(name, key="rate"):
        return [sample[key] for sample in results[name]]

    both = harness.median(rates("2 workers x 1 thread"))
    both_wall = harness.median(rates("2 workers x 1 thread", "wall_rate"))
    rows = []
    for name in SETUPS:
        workers = [w for sample in results[name] for w in sample["workers"]]
        rows.append(
            [
                name,
                f"{harness.median([s['trial_s'] for s in results[name]]):.2f}",
                harness.spread(rates(name)),
                f"{both / harness.median(rates(name)):.2f}",
                f"{both_wall / harness.median(rates(name, 'wall_rate')):.2f}",
                f"{harness.median([w['cpu_per_second'] for w in workers]):.2f}",
                max(w["busy_threads"] for w in workers),
            ]
        )
    harness.say()
    harness.say(
        harness.table(
            [
                "set-up",
                "trial s",
                "trials/min (steady)",
                "2 workers / this",
                "same, whole wall",
                "CPU s/s per worker",
                "busy threads per worker (max)",
            ],
            rows,
        )
    )
    ratio = both / harness.median(rates("1 worker x 2 threads"))
    harness.say(
        f"target 2 workers >= 1.8 x 1 worker (--workers 1 on 2 CPUs, steady state): "
        f"{ratio:.2f} -> {harness.verdict(ratio >= 1.8)}"
    )

    harness.say_load("end")


if __name__ == "__main__":
    main()
