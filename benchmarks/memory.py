"""Memory: where the data arrays live when 2 workers search a large data set.

Two synthetic data sets, 400 windows (the baseline) and 20,000 windows of 6 x 100, each with
its Sig, GAF and PI views (32 x 32, float16, from the disk cache), go through mmkd-search's
machinery (`search.workers`): 2 workers run one `ebkd` trial each (1 epoch) with three
untrained WRN16-1 teachers. While they run, psutil samples every second, for the driver and
each worker process: RSS, USS (memory only that process holds), PSS (shared pages split
between their users) and the resident part of its mappings of Ray's object store
(``/dev/shm/plasma...``). The task that computes the teacher outputs once for the search
(`search.workers.teacher_outputs_task`) is sampled too. Peaks are reported.

If each worker held private copies of the arrays or of the teacher outputs, its USS would
grow by at least their size; coming from the object store zero-copy, they are mapped by the
worker (resident object-store pages, shared, so PSS splits them) and its USS holds only
the model, the KD targets derived from the outputs and the batches.

    python benchmarks/memory.py            # 400 and 20,000 windows (the first run computes views)
    python benchmarks/memory.py --quick    # 400 and 4,000 windows
"""

from __future__ import annotations

import os
import time

import harness

MiB = 1024 * 1024
TEACHERS = ("sig", "gaf", "pi")
TEACHER_TASK = "ray::teacher_outputs_task"


def untrained_teachers(problem) -> dict:
    """Teacher records as `mmkd.teachers` stores them, with freshly initialised weights."""
    import torch

    from mmkd.nets import build_teacher

    records = {}
    for modality in TEACHERS:
        torch.manual_seed(0)
        net = build_teacher(modality, problem.in_channels, problem.num_classes, 16, 1)
        records[modality] = {
            "spec": {"modality": modality, "depth": 16, "width": 1, "epochs": 1},
            "state": net.state_dict(),
            "snapshots": {},
            "in_channels": problem.in_channels,
            "num_classes": problem.num_classes,
        }
    return records


def object_store_resident(process) -> int:
    """Bytes of ``process``'s object-store mappings that are resident in its address space."""
    total = 0
    for mapping in process.memory_maps(grouped=True):
        if "plasma" in mapping.path:
            total += mapping.rss
    return total


class MemorySampler:
    """Samples the driver and the worker processes until the worker tasks finish."""

    def __init__(self, interval: float = 1.0):
        self.interval = interval
        self.peaks: dict[str, dict[str, int]] = {}
        self.total_pss_peak = 0

    def _record(self, role: str, process) -> int:
        info = process.memory_full_info()
        values = {
            "rss": info.rss,
            "uss": info.uss,
            "pss": info.pss,
            "store": object_store_resident(process),
        }
        peak = self.peaks.setdefault(role, dict.fromkeys(values, 0))
        for key, value in values.items():
            peak[key] = max(peak[key], value)
        return info.pss

    def sample(self) -> None:
        import psutil

        total = self._record("driver", psutil.Process(os.getpid()))
        for title, role in (("ray::search_worker", "worker"), (TEACHER_TASK, "teacher pass")):
            for process in harness.own_ray_workers(title):
                try:
                    total += self._record(f"{role} pid {process.pid}", process)
                except psutil.Error:
                    continue
        self.total_pss_peak = max(self.total_pss_peak, total)

    def __call__(self, tasks) -> dict:
        import ray

        remaining = list(tasks)
        while remaining:
            self.sample()
            _, remaining = ray.wait(remaining, timeout=self.interval)
        return {"peaks": self.peaks, "total_pss_peak": self.total_pss_peak}


def teacher_output_bytes(problem, records) -> int:
    """Bytes of the float32 teacher outputs (logits, features, last feature map) on the
    training windows, for one teacher snapshot: computed once per search and shared through
    the object store (`search.workers.start_teacher_outputs`)."""
    import torch

    from mmkd.teachers import build_from_record, teacher_outputs

    total = 0
    first = problem.split.train[:1]
    for name, record in records.items():
        window = torch.from_numpy(problem.arrays[name][first].astype("float32"))
        outputs = teacher_outputs(build_from_record(record), window)
        per_window = sum(
            tensor[0].numel() for tensor in (outputs.logits, outputs.features, outputs.feature_map)
        )
        total += 4 * per_window * len(problem.split.train)
    return total


def measure(n: int) -> dict:
    """One 2-worker `ebkd` search on ``n`` synthetic windows, sampled for memory."""
    source = f"synthetic:n={n},length=100,channels=6"
    started = time.perf_counter()
    problem = harness.make_problem(source, modalities=TEACHERS, image_size=32)
    array_bytes = {name: array.nbytes for name, array in problem.arrays.items()}
    harness.say(
        f"{source}: views ready in {time.perf_counter() - started:.1f} s; "
        + ", ".join(f"{name} {size / MiB:.0f} MiB" for name, size in array_bytes.items())
        + f" (float16); {len(problem.split.train)} training windows"
    )
    records = untrained_teachers(problem)
    with harness.ray_runtime(2), harness.scratch_folder("memory") as folder:
        outcome = harness.run_search(
            folder,
            problem,
            method="ebkd",
            space=harness.load_space("ebkd"),
            trials=2,
            epochs=1,
            workers=2,
            cpus_per_worker=1,
            threads=1,
            teachers=TEACHERS,
            teacher_records=records,
            on_started=MemorySampler(),
        )
    peaks = outcome.extra["peaks"]
    workers = [values for role, values in peaks.items() if role.startswith("worker")]
    passes = [values for role, values in peaks.items() if role.startswith("teacher pass")]
    harness.say(f"  {outcome.seconds:.0f} s, trials {outcome.states()}")
    return {
        "n": n,
        "arrays": sum(array_bytes.values()),
        "teacher_outputs": teacher_output_bytes(problem, records),
        "driver_rss": peaks["driver"]["rss"],
        "worker_rss": max(w["rss"] for w in workers),
        "worker_uss": max(w["uss"] for w in workers),
        "worker_pss": max(w["pss"] for w in workers),
        "worker_store": min(w["store"] for w in workers),
        # A short pass can end between two samples; 0 then.
        "pass_uss": max((p["uss"] for p in passes), default=0),
        "total_pss": outcome.extra["total_pss_peak"],
        "workers": len(workers),
    }


def main() -> None:
    args = harness.arguments(__doc__.splitlines()[0], repeats=1).parse_args()
    harness.say_load("start")
    harness.quiet()
    sizes = (400, 4000) if args.quick else (400, 20000)
    results = [measure(n) for n in sizes]

    def mib(value):
        return f"{value / MiB:.0f}"

    harness.say()
    harness.say(
        harness.table(
            [
                "windows",
                "arrays MiB",
                "teacher outputs MiB",
                "worker peak RSS",
                "worker peak USS",
                "worker peak PSS",
                "object store resident per worker",
                "teacher pass task peak USS",
                "driver peak RSS",
                "sum of PSS (driver + workers + teacher pass)",
            ],
            [
                [
                    r["n"],
                    mib(r["arrays"]),
                    mib(r["teacher_outputs"]),
                    mib(r["worker_rss"]),
                    mib(r["worker_uss"]),
                    mib(r["worker_pss"]),
                    mib(r["worker_store"]),
                    mib(r["pass_uss"]),
                    mib(r["driver_rss"]),
                    mib(r["total_pss"]),
                ]
                for r in results
            ],
        )
    )
    small, large = results
    growth = large["worker_uss"] - small["worker_uss"]
    arrays = large["arrays"] - small["arrays"]
    outputs = large["teacher_outputs"] - small["teacher_outputs"]
    mapped = large["worker_store"]
    harness.say(
        f"From {small['n']} to {large['n']} windows the arrays grow by {mib(arrays)} MiB, the "
        f"teacher outputs of one snapshot by {mib(outputs)} MiB, and each worker's USS (private "
        f"memory) by {mib(growth)} MiB: the KD targets it derives and transient batches. A "
        f"private copy of the arrays or of the outputs would add at least its own size. Each "
        f"worker has {mib(mapped)} MiB of the object store resident: the views it trains on and "
        f"the outputs its method reads, shared."
    )
    zero_copy = growth < min(arrays, outputs) and mapped > 0
    harness.say(
        f"arrays and teacher outputs zero-copy from the object store, the outputs computed "
        f"once per search -> {harness.verdict(zero_copy)}"
    )
    harness.say_load("end")


if __name__ == "__main__":
    main()
