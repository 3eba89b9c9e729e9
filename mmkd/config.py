"""The typed configuration of one training run of a student (one trial of a search)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "step", "constant")
AVER_MODES = ("logits", "kd")
SNAPSHOTS = (0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class TrialConfig:
    """Everything a student's training reads, with defaults for what a space leaves out.

    The loss of every method is ``lambda1 * CE + lambda2 * L_kd + lambda3 * L_aux``.
    Method-specific knobs are plain fields too; a method reads only its own.
    """

    lambda1: float = 1.0
    lambda2: float = 1.0
    lambda3: float = 0.0
    temperature: float = 4.0

    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    batch_size: int = 64
    # Largest gradient norm before a step (0 = no clipping); keeps large learning rates
    # and KD weights from diverging to NaN within a few steps.
    grad_clip: float = 5.0

    branches: str = "sig"
    heads: int = 4

    # ebkd: share of the Sig teacher's temporal attention in the teacher evidence
    beta: float = 0.5

    # aver: "logits" = KD towards the mean logits; "kd" = mean of per-teacher KD terms
    aver_mode: str = "logits"

    # eskd: which teacher weights, as a share of the teachers' epochs (1.0 = best checkpoint)
    snapshot: float = 1.0

    # pckd: stage 1 covers the first p1 of the epochs, stage 2 the next r * (1 - p1);
    # w1-w3 weigh each stage's feature term
    p1: float = 0.3
    r: float = 0.5
    w1: float = 1.0
    w2: float = 1.0
    w3: float = 1.0

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if self.aver_mode not in AVER_MODES:
            raise ValueError(f"aver_mode must be one of {', '.join(AVER_MODES)}")
        if self.snapshot not in SNAPSHOTS:
            raise ValueError(f"snapshot must be one of {', '.join(map(str, SNAPSHOTS))}")
        if not (0.0 <= self.p1 < 1.0 and 0.0 <= self.r < 1.0):
            raise ValueError("p1 and r must lie in [0, 1)")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum}")
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta must lie in [0, 1], got {self.beta}")
        if self.heads < 1:
            raise ValueError(f"heads must be at least 1, got {self.heads}")
        for name in (
            "weight_decay",
            "grad_clip",
            "lambda1",
            "lambda2",
            "lambda3",
            "w1",
            "w2",
            "w3",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")

    @property
    def branch_names(self) -> tuple[str, ...]:
        return tuple(self.branches.split("+"))

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_params(cls, params: dict) -> TrialConfig:
        """Build from a flat mapping of field names to values; an unknown key is an error."""
        unknown = sorted(set(params) - set(cls.field_names()))
        if unknown:
            raise ValueError(f"unknown configuration keys: {', '.join(unknown)}")
        return cls(**params)

    def as_params(self) -> dict:
        return dataclasses.asdict(self)
