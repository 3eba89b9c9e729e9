"""Pruning pays: training epochs and best validation accuracy with and without a pruner.

Searches of the `student` method (Sig student, learning rate and weight decay searched)
on synthetic cylinder-bell-funnel data (`mmkd.synthetic`), through mmkd-search's machinery
(`search.workers`, 2 workers on a 2-CPU Ray runtime), 20 trials of up to 20 epochs with
the `quick` preset's patience (6 epochs without improvement end a trial as COMPLETE). For
each of 3 seeds (sampler and student seeds), the pruners ``none``, ``halving``, ``median``
and ``hyperband`` run one after another. Per search: the training epochs all trials used
(Optuna's intermediate values), the best validation accuracy of a COMPLETE trial (what
``mmkd-search best`` picks) and the wall time. Medians over the seeds are compared with
``none``.

    python benchmarks/pruning.py            # 20 trials x 20 epochs, 3 seeds (about 10 minutes)
    python benchmarks/pruning.py --quick    # 8 trials x 8 epochs, 3 seeds
"""

from __future__ import annotations

import harness

DATA = "synthetic:n=600,length=100,channels=6,noise=3"
PRUNERS = ("none", "halving", "median", "hyperband")
PATIENCE_SHARE = 6 / 20


def main() -> None:
    args = harness.arguments(__doc__.splitlines()[0]).parse_args()
    harness.say_load("start")
    harness.quiet()
    trials, epochs = (8, 8) if args.quick else (20, 20)
    patience = max(2, round(epochs * PATIENCE_SHARE))
    space = harness.load_space("student")
    problem = harness.make_problem(DATA)
    harness.say(
        f"{trials} trials of up to {epochs} epochs (patience {patience}) of the Sig student on "
        f"{DATA}: {len(problem.split.train)} train / {len(problem.split.val)} val windows "
        f"(one val window = {100 / len(problem.split.val):.2f} points); 2 workers x 1 CPU"
    )

    results = {pruner: [] for pruner in PRUNERS}
    with harness.ray_runtime(2):
        for seed in range(args.repeats):
            for pruner in PRUNERS:
                with harness.scratch_folder("pruning") as folder:
                    outcome = harness.run_search(
                        folder,
                        problem,
                        space=space,
                        trials=trials,
                        epochs=epochs,
                        workers=2,
                        cpus_per_worker=1,
                        threads=1,
                        pruner=pruner,
                        patience=patience,
                        seed=seed,
                    )
                finished = [t for t in outcome.trials if t.state.name in ("COMPLETE", "PRUNED")]
                complete = [t for t in finished if t.state.name == "COMPLETE"]
                sample = {
                    "epochs": sum(len(t.intermediate_values) for t in outcome.trials),
                    "best": max(t.value for t in complete),
                    "pruned": len(finished) - len(complete),
                    "seconds": outcome.seconds,
                }
                results[pruner].append(sample)
                harness.say(
                    f"  seed {seed}: {pruner:<9} {sample['epochs']:4d} epochs, "
                    f"{sample['pruned']:2d} pruned, best val {sample['best']:.4f}, "
                    f"{sample['seconds']:.0f} s"
                )

    def values(pruner, key):
        return [sample[key] for sample in results[pruner]]

    base_epochs = harness.median(values("none", "epochs"))
    base_best = harness.median(values("none", "best"))
    rows = []
    for pruner in PRUNERS:
        epochs_used = harness.median(values(pruner, "epochs"))
        best = harness.median(values(pruner, "best"))
        rows.append(
            [
                pruner,
                harness.spread(values(pruner, "epochs")),
                f"{epochs_used / base_epochs:.2f}",
                f"{epochs_used / (trials * epochs):.2f}",
                f"{harness.median(values(pruner, 'pruned')):.0f}",
                " ".join(f"{v:.3f}" for v in values(pruner, "best")),
                f"{100 * (best - base_best):+.2f}",
                f"{harness.median(values(pruner, 'seconds')):.0f}",
            ]
        )
    harness.say()
    harness.say(
        harness.table(
            [
                "pruner",
                "epochs, median [min-max]",
                "/ none",
                f"/ {trials}x{epochs}",
                "pruned",
                "best val per seed",
                "median best - none (points)",
                "wall s",
            ],
            rows,
        )
    )
    candidates = []
    for pruner in PRUNERS[1:]:
        ratio = harness.median(values(pruner, "epochs")) / base_epochs
        loss = 100 * (base_best - harness.median(values(pruner, "best")))
        met = ratio <= 0.4 and loss <= 1.0
        harness.say(
            f"target {pruner}: epochs <= 0.40 x none ({ratio:.2f}) and best val within 1 point "
            f"({-loss:+.2f}) -> {harness.verdict(met)}"
        )
        candidates.append((not (loss <= 1.0), ratio, pruner))
    harness.say(
        f"default by these numbers (keeps the accuracy, then fewest epochs): {min(candidates)[2]}"
    )

    harness.say_load("end")


if __name__ == "__main__":
    main()
