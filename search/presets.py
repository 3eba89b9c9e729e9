"""Presets: the defaults of a search (sizes, epochs, budget) and values they fix.

A preset never decides what is searched; the space files do. It only supplies defaults
for the command-line options and, for ``paper``, fixes a few shared-space entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    image_size: int
    teacher_depth: int
    teacher_width: int
    teacher_epochs: int
    teacher_batch_size: int
    student_depth: int
    student_width: int
    image_depth: int
    epochs: int
    trials: int
    patience: int
    fixed: dict = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    "quick": Preset(
        name="quick",
        description="32x32 images, WRN16-1 teachers, sized for two CPU cores in minutes",
        image_size=32,
        teacher_depth=16,
        teacher_width=1,
        teacher_epochs=40,
        teacher_batch_size=16,
        student_depth=16,
        student_width=1,
        image_depth=10,
        epochs=20,
        trials=20,
        patience=6,
    ),
    "paper": Preset(
        name="paper",
        description="64x64 images, WRN16-3 teachers, SGD with step decay, 200 epochs",
        image_size=64,
        teacher_depth=16,
        teacher_width=3,
        teacher_epochs=200,
        teacher_batch_size=64,
        student_depth=16,
        student_width=1,
        image_depth=16,
        epochs=200,
        trials=50,
        patience=50,
        fixed={
            "optimizer": "sgd",
            "momentum": 0.9,
            "weight_decay": 1e-4,
            "schedule": "step",
            "batch_size": 64,
        },
    ),
}
