"""Training loop: one epoch of `mmkd.train.fit` against a bare PyTorch loop doing the same.

The `ebkd` student (Sig + GAF branches, cross-attention) with its three teachers (Sig, GAF,
PI; WRN16-1, untrained: their outputs only have to exist) on synthetic windows, 32 x 32
images as in the `quick` preset, batch 16 as in the shared space, one thread (what a worker
gets with 2 workers on 2 CPUs). The teacher targets are computed once, outside every
timing, as a worker does. Then, alternating, each timed:

- fit: ``mmkd.train.fit(..., epochs=1)`` on the float16 views as a worker holds them;
- fit, float32 views: the same, with the views converted to float32 once beforehand;
- bare loop: the same student, loss (the EBKD module), SGD settings, gradient clipping and
  batch order, on float32 tensors indexed directly; then the same validation and test
  forward passes that fit makes.

    python benchmarks/training_loop.py            # 2000 windows, 5 repeats
    python benchmarks/training_loop.py --quick    # 600 windows, 3 repeats
"""

from __future__ import annotations

import time

import harness

SEED = 0
TEACHERS = ("sig", "gaf", "pi")


def prepare(problem):
    """Student factory, EBKD loss, its per-window targets, and the config of one trial."""
    import torch

    from mmkd.config import TrialConfig
    from mmkd.methods import build_method, method_class
    from mmkd.nets import Student, build_teacher
    from mmkd.teachers import teacher_outputs

    config = TrialConfig(
        lambda1=0.5, lambda2=1.0, lambda3=1.0, batch_size=16, branches="sig+gaf", beta=0.5
    )
    train = torch.as_tensor(problem.split.train)
    outputs = {}
    for modality in TEACHERS:
        torch.manual_seed(SEED)
        teacher = build_teacher(modality, problem.in_channels, problem.num_classes, 16, 1).eval()
        windows = torch.from_numpy(problem.arrays[modality][problem.split.train].astype("float32"))
        outputs[modality] = teacher_outputs(teacher, windows)

    def make_student():
        torch.manual_seed(SEED)
        return Student(
            problem.in_channels,
            problem.num_classes,
            branches=config.branch_names,
            fusion=method_class("ebkd").fusion,
            heads=config.heads,
        )

    feature_dims = {"student": make_student().feature_dim}
    feature_dims.update({name: out.features.shape[1] for name, out in outputs.items()})
    method = build_method("ebkd", config, TEACHERS, feature_dims)
    labels = torch.from_numpy(problem.labels).long()
    targets = method.teacher_targets(outputs, labels[train])
    return make_student, method, targets, config


def run_fit(problem, make_student, method, targets, config, inputs) -> float:
    import torch

    from mmkd.train import fit

    student = make_student()
    labels = torch.from_numpy(problem.labels).long()
    started = time.perf_counter()
    fit(student, method, inputs, labels, problem.split, config, 1, targets=targets, seed=SEED)
    return time.perf_counter() - started


def run_bare(problem, make_student, method, targets, config, inputs) -> float:
    """The same passes as one epoch of fit, written as a plain loop on float32 tensors."""
    import torch
    from torch import nn

    student = make_student()
    labels = torch.from_numpy(problem.labels).long()
    train = torch.as_tensor(problem.split.train)
    parameters = list(student.parameters()) + list(method.parameters())
    optimizer = torch.optim.SGD(
        parameters,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=True,
    )
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED)

    started = time.perf_counter()
    student.train()
    order = torch.randperm(len(train), generator=generator)
    for start in range(0, len(order), config.batch_size):
        position = order[start : start + config.batch_size]
        index = train[position]
        batch = {name: tensor[index] for name, tensor in inputs.items()}
        batch_targets = {name: value[position] for name, value in targets.items()}
        loss, _ = method(student(batch), batch_targets, labels[index], start / len(order))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(parameters, config.grad_clip)
        optimizer.step()

    student.eval()
    with torch.no_grad():
        for part in (problem.split.val, problem.split.test):
            part = torch.as_tensor(part)
            for start in range(0, len(part), 256):
                chunk = part[start : start + 256]
                student({name: tensor[chunk] for name, tensor in inputs.items()}).logits.argmax(1)
    return time.perf_counter() - started


def main() -> None:
    args = harness.arguments(__doc__.splitlines()[0], repeats=5).parse_args()
    harness.say_load("start")
    harness.quiet()
    import torch

    torch.set_num_threads(1)
    n = 600 if args.quick else 2000
    source = f"synthetic:n={n},length=100,channels=6"
    problem = harness.make_problem(source, modalities=("sig", "gaf", "pi"), image_size=32)
    make_student, method, targets, config = prepare(problem)
    half = {name: torch.from_numpy(problem.arrays[name]) for name in ("sig", "gaf")}
    full = {name: tensor.float() for name, tensor in half.items()}
    harness.say(
        f"ebkd student, one epoch of {len(problem.split.train)} training windows "
        f"(+ {len(problem.split.val)} val, {len(problem.split.test)} test), batch "
        f"{config.batch_size}, 1 thread; {source}, 32x32 images"
    )

    runs = {
        "fit (float16 views, as in a search)": lambda: run_fit(
            problem, make_student, method, targets, config, half
        ),
        "fit (float32 views)": lambda: run_fit(
            problem, make_student, method, targets, config, full
        ),
        "bare PyTorch loop (float32)": lambda: run_bare(
            problem, make_student, method, targets, config, full
        ),
    }
    for run in runs.values():
        run()  # warm-up: first-call costs of every kernel
    seconds = {name: [] for name in runs}
    for repeat in range(args.repeats):
        for name, run in runs.items():
            seconds[name].append(run())
        harness.say(
            f"  repeat {repeat + 1}: "
            + ", ".join(f"{name.split(' (')[0]} {v[-1]:.2f} s" for name, v in seconds.items())
        )

    bare = harness.median(seconds["bare PyTorch loop (float32)"])
    harness.say()
    harness.say(
        harness.table(
            ["loop", "seconds, median [min-max]", "/ bare loop"],
            [
                [name, harness.spread(values), f"{harness.median(values) / bare:.3f}"]
                for name, values in seconds.items()
            ],
        )
    )
    ratio = harness.median(seconds["fit (float16 views, as in a search)"]) / bare
    harness.say(f"target fit <= 1.15 x bare loop: {ratio:.3f} -> {harness.verdict(ratio <= 1.15)}")

    harness.say_load("end")


if __name__ == "__main__":
    main()
